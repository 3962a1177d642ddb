"""The study's storage, from a URL: validated without touching it, opened the same way by the
sweeper and by each training job (which receives the URL the sweeper validated, dse.sweep.handoff)."""

from __future__ import annotations

import sqlite3
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dse.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

JOURNAL_PREFIX = "journal:"
STORAGE_FIELD = "hydra.sweeper.storage"


@dataclass(frozen=True)
class StorageSpec:
    """A validated storage: ``url`` is absolute, so jobs in other dirs open the same one."""

    kind: str  # "rdb" or "journal"
    url: str  # what jobs receive (dse.sweep.handoff) (password included, never logged)
    path: Path | None  # the file behind a SQLite or journal storage, else None
    display: str  # the URL with its password hidden, for logs and results files


def parse_storage(url: str | None) -> StorageSpec:
    """Validate a storage URL without creating anything; relative file paths become absolute.
    ``journal:PATH`` (or ``journal:///abs``) is Optuna's JournalStorage, else an SQLAlchemy URL."""
    if url is None or not str(url).strip():
        raise ConfigError(STORAGE_FIELD, "is required (an SQLAlchemy URL or journal:PATH)")
    url, cwd = str(url).strip(), Path.cwd()
    if url.startswith(JOURNAL_PREFIX):
        raw = url[len(JOURNAL_PREFIX):].removeprefix("//")
        if not raw:
            raise ConfigError(STORAGE_FIELD, f"{url!r} names no file (use journal:PATH)")
        path = cwd / Path(raw).expanduser()
        if path.is_dir():
            raise ConfigError(STORAGE_FIELD, f"{path} is a directory, not a journal file")
        return StorageSpec("journal", f"{JOURNAL_PREFIX}{path}", path, f"{JOURNAL_PREFIX}{path}")

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(STORAGE_FIELD, f"cannot parse {url!r} as a database URL or "
                                         f"journal:PATH ({e})") from None
    path: Path | None = None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if not db or db == ":memory:" or db.startswith("file::memory:"):
            raise ConfigError(STORAGE_FIELD, "an in-memory SQLite database cannot be shared with "
                                             "the jobs or resumed; give it a file")
        path = cwd / Path(db).expanduser()
        if path.is_dir():
            raise ConfigError(STORAGE_FIELD, f"{path} is a directory, not a database file")
        refuse_results_store(path)
        parsed = parsed.set(database=str(path))
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        raise ConfigError(STORAGE_FIELD, f"unknown database kind {parsed.drivername!r} in "
                                         f"{parsed.render_as_string()!r}") from None
    except ImportError as e:
        hint = " (pip install 'dse[postgres]')" if "postgres" in parsed.drivername else ""
        raise ConfigError(STORAGE_FIELD, f"the driver for {parsed.drivername!r} is not "
                                         f"installed: {e}{hint}") from None
    return StorageSpec("rdb", parsed.render_as_string(hide_password=False), path,
                       parsed.render_as_string(hide_password=True))


def refuse_results_store(path: Path) -> None:
    """A dse results store is no Optuna storage: Optuna's tables would make it a foreign database."""
    if not path.is_file():
        return
    from dse.store.schema import META, RUNS
    from dse.storefile import reader_uri

    try:
        with closing(sqlite3.connect(reader_uri(path), uri=True)) as db:
            tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError:
        return  # not SQLite at all: Optuna's own error says so when it opens it
    if {META, RUNS} <= tables:
        raise ConfigError(STORAGE_FIELD, f"{path} is a dse results store, not an Optuna storage "
                                         "(use another file, e.g. optuna.db beside it)")


def open_storage(spec: StorageSpec, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None) -> optuna.storages.BaseStorage:
    """Open (and, for a new database, create) the storage ``spec`` describes. A journal storage has
    no heartbeats: a killed worker's trials stay RUNNING there (docs/OPTUNA.md)."""
    import optuna

    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        assert spec.path is not None
        return JournalStorage(JournalFileBackend(str(spec.path)))
    # several workers share one SQLite file: wait for the write lock rather than fail at once
    sqlite = spec.url.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": 120}} if sqlite else {"pool_pre_ping": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            spec.url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period)
