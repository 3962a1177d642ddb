"""Rows that trained but could not be stored: kept as JSON lines beside the run, imported later.

A run can take hours and its store can fill its disk, vanish or turn read-only meanwhile; dying
with a traceback at the last step would lose the result. So the append is retried, then the row is
written to :data:`FALLBACK_NAME` in the run's folder, one line saying where and how to import it
(``dse-store import``, idempotent by ``run_id``), and the sweep goes on.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from dse.errors import ConfigError, first_line
from dse.store.record import RunRecord, checked_row
from dse.store.store import ResultsStore, native_row

log = logging.getLogger("dse.store")

FALLBACK_NAME = "unstored_rows.jsonl"
ATTEMPTS = 3
BACKOFF_S = 0.5  # doubled after each failed attempt: a full disk or a failover may pass


def append_or_keep(store: ResultsStore, record: RunRecord, run_dir: Path) -> Path | None:
    """Append ``record`` to ``store``; when it keeps refusing, keep the row in ``run_dir``.

    Returns the file the row went to, or None when the store took it.
    """
    for attempt in range(ATTEMPTS):
        try:
            store.append(record)
            return None
        except (SQLAlchemyError, OSError) as e:
            reason = first_line(getattr(e, "orig", e))
        if attempt + 1 < ATTEMPTS:
            time.sleep(BACKOFF_S * 2**attempt)
    line = json.dumps(native_row(record), sort_keys=True)
    path = run_dir / FALLBACK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line + "\n")
    except OSError as e:
        log.error("the store refused the result (%s) and %s cannot be written (%s); the row: %s",
                  reason, path, e, line)
        return None
    log.warning("the store refused the result (%s); result kept in %s; import with "
                "`dse-store import %s %s`", reason, path, shlex.quote(str(path)),
                shlex.quote(str(store)))
    return path


def read_kept(path: Path, field: str = "FILE") -> list[RunRecord]:
    """The rows of a kept-rows file, every one checked (:func:`checked_row`) before any is used:
    a file that is not one, or one bad row, is bad input naming ``field``, the line and column."""
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as e:
        raise ConfigError(field, f"cannot read {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ConfigError(field, f"{path} is not a kept-rows file (not UTF-8 text)") from None
    rows: list[RunRecord] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(checked_row(json.loads(line)))
        except json.JSONDecodeError as e:
            raise ConfigError(field, f"{path} line {number} is not a kept dse row (not JSON: "
                                     f"{e.msg})") from None
        except ValueError as e:
            col, why = e.args if len(e.args) == 2 else ("row", first_line(e))
            raise ConfigError(field, f"{path} line {number} is not a kept dse row ({col} "
                                     f"{why})") from None
    if not rows:
        raise ConfigError(field, f"{path} holds no rows")
    return rows
