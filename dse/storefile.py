"""What names a results-store file and how sqlite3 opens one, with the standard library only.

``dse-report`` answers a wrong path before pandas or SQLAlchemy are imported, and the store opens
its file through the same rules, so they live here once. Paths go into ``file:`` URIs
percent-quoted: SQLite reads ``?`` and ``#`` as the start of a query or fragment, so an unquoted
``runs/a#b/results.db`` opened (and created) ``runs/a``.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote, urlencode

DB_NAME = "results.db"
SUFFIXES = (".db", ".sqlite", ".sqlite3")


def store_file(path: Path) -> Path | None:
    """The SQLite file ``path`` names, or None when it cannot be meant as one.

    A folder means its ``results.db``; an existing file is checked later by its content; a new
    file must end in :data:`SUFFIXES`, so a mistyped URL (``store.url=garbage``) is refused rather
    than created as ``./garbage``.
    """
    if path.is_dir():
        return path / DB_NAME
    if path.is_file() or path.suffix.lower() in SUFFIXES:
        return path
    return None


def sqlite_url(path: Path) -> str:
    """The SQLAlchemy URL of an SQLite file (quoted the way :func:`sqlalchemy.make_url` unquotes)."""
    return "sqlite:///" + quote(str(path))


def writable(path: Path) -> bool:
    """Whether SQLite could write (or create) ``path`` and its ``-wal``/``-shm`` files beside it.

    ``os.access`` is the kernel's own answer: it says no on a read-only mount even to root.
    """
    return os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))


def _uri(path: Path, **params: str) -> str:
    return f"file:{quote(str(path))}?{urlencode(params)}"


def writer_uri(path: Path) -> str:
    """``file:`` URI that opens ``path`` for writing, creating it when missing."""
    return _uri(path, mode="rwc")


def reader_uri(path: Path) -> str:
    """``file:`` URI that reads an existing ``path`` without creating it or leaving files beside it.

    Where the file may be written the connection is read-write, because only a writer removes the
    ``-wal``/``-shm`` files when it closes: a read-only connection leaves them behind. On a
    read-only folder or mount SQLite cannot create ``-shm`` at all, so the file is opened
    ``immutable`` (nobody can be writing it through this mount); a WAL file already there holds
    rows the main file lacks, so then it is read through that WAL instead.
    """
    if writable(path):
        return _uri(path, mode="rw")
    wal = path.with_name(path.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        return _uri(path, mode="ro")
    return _uri(path, mode="ro", immutable="1")
