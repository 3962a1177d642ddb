"""Where results live (a study folder, an SQLite file or a URL) and whether a dse store or Optuna's,
told by its tables. The standard library only (until a server URL needs a driver), so dse-report
refuses a wrong path before pandas loads; a wrong path never creates a database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from dse.errors import ConfigError, first_line
from dse.storefile import DB_NAME, OPTUNA_DB, named_store, reader_uri, sqlite_url

ARG = "STUDY_DIR_OR_STORE_URL"


class LoadError(ConfigError):
    """The source holds no usable results (no store, empty store, unknown study)."""


@dataclass(frozen=True)
class Source:
    """A resolved results source: where it is and what kind it is."""

    url: str  # SQLAlchemy URL
    kind: str  # "dse" or "optuna"
    path: Path | None  # the SQLite file, when the source is one


def sqlite_tables(path: Path) -> set[str]:
    """The tables of an SQLite file, opened read-only (a wrong path never creates one)."""
    try:
        with closing(sqlite3.connect(reader_uri(path.resolve()), uri=True)) as con:
            return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as e:
        raise LoadError(ARG, f"{path} is not an SQLite store ({e})") from None


def url_tables(url: str) -> set[str]:
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
    """``"optuna"`` or ``"dse"`` from a database's tables; with both, the dse store's rows are richer."""
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
    """What ``source`` names (as for dse-store: :func:`dse.storefile.named_store`) and its kind."""
    named = named_store(source)
    path = named.file
    if named.url is not None:
        url = named.url
        if path is not None and not path.is_file():
            raise LoadError(ARG, f"no store at {url} ({path} does not exist)")
    else:
        assert path is not None  # a folder or file argument always names a file
        if not path.is_file() and named.folder is None:
            raise LoadError(ARG, f"no such file or folder: {path}")
        if not path.is_file():  # a folder without one; a hint when Optuna's file is there
            optuna = named.folder / OPTUNA_DB
            hint = f" (an Optuna storage is there: pass {sqlite_url(optuna)})" if optuna.is_file() else ""
            raise LoadError(ARG, f"no {DB_NAME} in {named.folder}{hint}")
        url = sqlite_url(path.resolve())
    tables = sqlite_tables(path) if path is not None else url_tables(url)
    return Source(url=url, kind=store_kind(tables, str(path or url)), path=path)


def unknown_study(study: str, where: str, known: Iterable[str]) -> LoadError:
    """The one wording of a ``--study`` the source does not hold (``known``: its study names)."""
    names = ", ".join(sorted(map(str, known))) or "none"
    return LoadError("--study", f"unknown study {study!r} in {where} (known: {names})")
