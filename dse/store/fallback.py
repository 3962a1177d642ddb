"""Rows that trained but could not be stored (the store's disk full, gone or read-only): kept as
JSON lines in :data:`FALLBACK_NAME` beside the run, for ``dse-store import`` (idempotent by
``run_id``), and the sweep goes on."""

from __future__ import annotations

import json
import logging
import shlex
from enum import Enum
from pathlib import Path

from sqlalchemy.exc import SQLAlchemyError

from dse.errors import ConfigError, first_line
from dse.store.record import RunRecord, checked_row
from dse.store.schema import native_row
from dse.store.store import ResultsStore

log = logging.getLogger("dse.store")

FALLBACK_NAME = "unstored_rows.jsonl"


class Kept(Enum):
    """Where :func:`append_or_keep` put a row (``NOWHERE``: its checkpoints are all there is)."""

    STORE = "store"
    FILE = "file"  # run_dir / FALLBACK_NAME
    NOWHERE = "nowhere"  # logged, with the row, as an error


def append_or_keep(store: ResultsStore, record: RunRecord, run_dir: Path) -> Kept:
    """Append ``record`` to ``store``; when it refuses, keep the row in ``run_dir``."""
    try:
        store.append(record)
        return Kept.STORE
    except (SQLAlchemyError, OSError) as e:
        reason = first_line(getattr(e, "orig", e))
    line = json.dumps(native_row(record), sort_keys=True)
    path = run_dir / FALLBACK_NAME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with path.open("a") as f:
            f.write(line + "\n")
    except OSError as e:
        log.error("the store refused the result (%s) and %s cannot be written (%s); the row: %s",
                  reason, path, e, line)
        return Kept.NOWHERE
    log.warning("the store refused the result (%s); result kept in %s; import with "
                "`dse-store import %s %s`", reason, path, shlex.quote(str(path)),
                shlex.quote(str(store)))
    return Kept.FILE


def read_kept(path: Path, field: str = "FILE") -> list[RunRecord]:
    """The rows of a kept-rows file, every one checked (:func:`checked_row`) before any is used."""
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
            raise ConfigError(field, f"{path} line {number} is not a kept dse row ({col} {why})") from None
    if not rows:
        raise ConfigError(field, f"{path} holds no rows")
    return rows
