"""Where results live: a study folder, an SQLite file or a database URL; a dse store or Optuna's.

Kept free of pandas, SQLAlchemy (for SQLite) and matplotlib so that ``dse-report`` refuses a wrong
path before importing them: everything here is the standard library until a server URL needs a
driver. Stores are told apart by their tables (Optuna: ``studies``/``trials``; dse: ``dse_meta``/
``runs``), never by file names, and are opened so that a wrong path never creates a database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from dse.errors import ConfigError, first_line
from dse.storefile import DB_NAME, OPTUNA_DB, named_store, reader_uri, sqlite_url

ARG = "STUDY_DIR_OR_STORE_URL"


class LoadError(ConfigError):
    """The source holds no usable results (no store, empty store, unknown study)."""


@dataclass(frozen=True)
class Source:
    """A resolved results source: where it is, what kind it is, where its report goes."""

    url: str  # SQLAlchemy URL
    kind: str  # "dse" or "optuna"
    path: Path | None  # the SQLite file, when the source is one
    report_dir: Path  # default output folder: <study dir>/report


def sqlite_tables(path: Path) -> set[str]:
    """Table names of an SQLite file, opened so that a wrong path never creates a database."""
    try:
        con = sqlite3.connect(reader_uri(path.resolve()), uri=True)
        try:
            rows = con.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall()
        finally:
            con.close()
    except sqlite3.Error as e:
        raise LoadError(ARG, f"{path} is not an SQLite store ({e})") from None
    return {r[0] for r in rows}


def url_tables(url: str) -> set[str]:
    """Table names behind a non-SQLite URL (PostgreSQL etc.)."""
    from sqlalchemy import create_engine, inspect

    try:
        engine = create_engine(url)
        try:
            return set(inspect(engine).get_table_names())
        finally:
            engine.dispose()
    except Exception as e:  # noqa: BLE001 - driver errors vary; all mean "cannot read this"
        raise LoadError(ARG, f"cannot open {url}: {first_line(e)}") from None


def store_kind(tables: set[str], where: str) -> str:
    """``"optuna"`` or ``"dse"`` from a database's tables; anything else is not a results source.

    A shared server database may hold both (dse's store allows other apps' tables); the dse store
    wins there, as its per-seed rows are the richer record of the same runs.
    """
    if {"dse_meta", "runs"} <= tables:
        return "dse"
    if {"studies", "trials"} <= tables:
        return "optuna"
    if "runs" in tables:
        return "dse"
    found = ", ".join(sorted(tables)) or "no tables"
    raise LoadError(ARG, f"{where} holds neither a dse store (dse_meta/runs) nor an Optuna "
                         f"storage (studies/trials); found {found}")


def resolve(source: str | Path) -> Source:
    """Decide what ``source`` is (study folder, SQLite file or URL) and which kind of store.

    Which file an argument names is :func:`dse.storefile.named_store`'s rule, shared with
    ``dse-store``; the wording of a missing store is this tool's own.
    """
    named = named_store(source)
    path = named.file
    if named.url is not None:
        url = named.url
        if path is not None and not path.is_file():
            raise LoadError(ARG, f"no store at {url} ({path} does not exist)")
    else:
        assert path is not None  # a folder or file argument always names a file
        if not path.is_file():
            raise LoadError(ARG, _missing(named.folder, path))
        url = sqlite_url(path.resolve())
    if path is not None:
        kind = store_kind(sqlite_tables(path), str(path))
        report_dir = path.resolve().parent / "report"
    else:
        kind = store_kind(url_tables(url), url)
        report_dir = Path("runs") / "report"
    return Source(url=url, kind=kind, path=path, report_dir=report_dir)


def _missing(folder: Path | None, path: Path) -> str:
    """Why a folder or file argument is no source; a folder with only Optuna's file says so."""
    if folder is None:
        return f"no such file or folder: {path}"
    hint = ""
    if (folder / OPTUNA_DB).is_file():
        hint = f" (an Optuna storage is there: pass {sqlite_url(folder / OPTUNA_DB)})"
    return f"no {DB_NAME} in {folder}{hint}"


def sqlite_studies(src: Source) -> dict[str, int] | None:
    """Study name -> number of runs (dse) or trials (Optuna) of an SQLite source; None otherwise.

    Read with the standard library so that an empty store or a mistyped ``--study`` is reported
    before pandas is imported.
    """
    if src.path is None:
        return None
    query = ("SELECT study, COUNT(*) FROM runs GROUP BY study" if src.kind == "dse" else
             "SELECT s.study_name, COUNT(t.trial_id) FROM studies s "
             "LEFT JOIN trials t ON t.study_id = s.study_id GROUP BY s.study_name")
    try:
        con = sqlite3.connect(reader_uri(src.path.resolve()), uri=True)
        try:
            return {str(name): int(n) for name, n in con.execute(query).fetchall()}
        finally:
            con.close()
    except sqlite3.Error:
        return None  # an unexpected schema: let the full loader decide


def check_study(src: Source, study: str | None) -> None:
    """Fail fast on an empty SQLite source or a study it does not hold (see :func:`load`)."""
    counts = sqlite_studies(src)
    if counts is None:
        return
    if study is not None and study not in counts:
        raise LoadError("--study", f"unknown study {study!r} in {src.url} "
                                   f"(known: {', '.join(sorted(counts)) or 'none'})")
    runs = sum(counts.values()) if study is None else counts[study]
    if runs == 0:
        raise LoadError(ARG, f"{src.url} holds no runs yet")
