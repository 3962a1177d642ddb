"""What names a results-store file and how sqlite3 opens one, standard library only (dse-report
answers a wrong path before importing pandas)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlencode

from dse.errors import ConfigError

DB_NAME = "results.db"
OPTUNA_DB = "optuna.db"  # the dse_optuna sweeper's default storage, beside DB_NAME
SUFFIXES = (".db", ".sqlite", ".sqlite3")
NAME_MAX = 255  # bytes in one file name (Linux file systems): study.name is a folder's


@dataclass(frozen=True)
class NamedStore:
    """What a store argument (a folder, a file or a database URL) names."""

    url: str | None  # the argument itself, when it is a database URL
    file: Path | None  # the SQLite file it names; None for a server database or in-memory SQLite
    folder: Path | None  # the folder given, whose results.db ``file`` is


def named_store(arg: str | Path) -> NamedStore:
    """Which store ``arg`` names: a URL, a folder's ``results.db``, or a file."""
    text = str(arg)
    if "://" in text:  # SQLAlchemy's rule; no file for a server or in-memory SQLite
        db = (_sqlite_db(text) or "").split("?")[0]
        return NamedStore(text, None if db in ("", ":memory:") or db.startswith("file:") else Path(db), None)
    path = Path(text)
    return NamedStore(None, path / DB_NAME, path) if path.is_dir() else NamedStore(None, path, None)


def _sqlite_db(url: str) -> str | None:
    """The database part of an ``sqlite://`` URL, unquoted (query kept); None for other URLs."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] != "sqlite":
        return None
    return unquote(rest[1:] if rest.startswith("/") else rest)


def in_memory(url: str) -> bool:
    """Whether ``url`` is an in-memory SQLite database (gone when its last connection closes)."""
    db = _sqlite_db(url)
    return db is not None and (db.split("?")[0] in ("", ":memory:") or db.startswith("file::memory:")
                               or "mode=memory" in db)


def check_study_name(name: Any, field: str = "study.name") -> str:
    """A study name is one folder under ``paths.runs``: never a path that leads elsewhere."""
    text = "" if name is None else str(name)
    if not text.strip() or Path(text).name != text or text in (".", ".."):
        raise ConfigError(field, f"{text!r} is not usable as a folder name (one name, no '/')")
    if len(text.encode()) > NAME_MAX:
        raise ConfigError(field, f"is {len(text.encode())} bytes long: a folder name has at most {NAME_MAX}")
    return text


def study_file(runs: Path, study: str, name: str = DB_NAME) -> Path:
    """``<runs>/<study>/results.db`` (or the study's file ``name``, such as the Optuna storage)."""
    return runs / study / name


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file (quoted the way :func:`sqlalchemy.make_url` unquotes)."""
    return "sqlite:///" + quote(str(path))


def writable(path: Path) -> bool:
    """Whether SQLite could write ``path`` and its ``-wal``/``-shm`` files (no on a read-only mount)."""
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def file_uri(path: Path, **params: str) -> str:
    """Percent-quoted: SQLite reads ``?`` and ``#`` in a ``file:`` URI as a query or fragment."""
    return f"file:{quote(str(path))}?{urlencode(params)}"


def reader_uri(path: Path) -> str:
    """``file:`` URI that reads ``path`` without creating it or leaving files beside it: read-write
    where writable (only a writer removes ``-wal``), else immutable unless a WAL holds rows."""
    if writable(path):
        return file_uri(path, mode="rw")
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        return file_uri(path, mode="ro")
    return file_uri(path, mode="ro", immutable="1")
