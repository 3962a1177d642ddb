"""The results store every training run appends to: SQLite per study by default (WAL), any
SQLAlchemy URL. A file that is not a dse store, or one from a newer dse, is refused before anything
is written. File connections are not pooled: one kept open would write into a file deleted meanwhile."""

from __future__ import annotations

import logging
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError
from sqlalchemy.pool import NullPool, StaticPool

from dse import storefile
from dse.errors import ConfigError
from dse.store import schema
from dse.store.record import FINISHED, FRAME_DTYPES, RUN_COLUMNS, RunRecord, run_dtypes
from dse.store.schema import FIELD, RUNS, RUNS_TABLE, SCHEMA_VERSION, Row, check_table_name

log = logging.getLogger("dse.store")
logging.getLogger("alembic").setLevel(logging.WARNING)  # set before migrate imports it: its plugins log
T = TypeVar("T")
_NA_DTYPES = run_dtypes(nullable=True)


def _transient(exc: BaseException) -> bool:
    """A lock, serialization failure, deadlock or dropped connection: trying again may succeed."""
    text = str(getattr(exc, "orig", exc)).lower()
    return bool(getattr(exc, "connection_invalidated", False)) or any(
        s in text for s in ("locked", "busy", "could not serialize", "deadlock"))


def _raced(exc: BaseException) -> bool:
    """Transient, or another worker created the same table or column first: retrying finds it."""
    return _transient(exc) or "already exists" in str(exc) or "duplicate column" in str(exc)


def _lost_race(exc: BaseException) -> bool:
    """:func:`_raced`, or another worker inserted the same row first (version stamp, import)."""
    return _raced(exc) or isinstance(exc, IntegrityError)


def _retry(fn: Callable[[], T], deadline_s: float,
           retryable: Callable[[BaseException], bool] = _transient) -> T:
    """The store's one retry loop (jittered backoff) for what SQLite's busy timeout cannot cover: a WAL
    lock upgrade refused at once, PostgreSQL serialization failures, failovers, racing DDL."""
    end, delay = time.monotonic() + deadline_s, 0.01
    while True:
        try:
            return fn()
        except DBAPIError as e:
            if not retryable(e) or time.monotonic() > end:
                raise
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 1.0)


class ResultsStore(AbstractContextManager):
    """Append-only table of :class:`RunRecord` rows (and other tables linked by ``run_id``).
    ``create=False`` opens an existing store read-only, as it is; a writer brings an older one to
    this schema (all of it with ``upgrade=True``; ``upgraded``: the revisions applied)."""

    def __init__(self, url_or_path: str | Path, *, create: bool = True, upgrade: bool = False,
                 timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.upgraded: list[str] = []
        self.revision = 0  # the schema revision the store is at once open
        self._legacy = False  # written before migrations: no version table yet
        self._runs = RUNS_TABLE
        self.url = self._parse(url_or_path)
        self.path: Path | None = None
        if self.url.get_backend_name() == "sqlite" and self.url.database not in (None, "", ":memory:"):
            self.path = Path(self.url.database).expanduser().resolve()  # a job may change directory
            self.url = self.url.set(database=str(self.path))
        self._check_file(create)
        try:
            self.engine: Engine = sa.create_engine(self.url, **self._engine_options(create))
        except (NoSuchModuleError, ModuleNotFoundError) as e:
            raise ConfigError(FIELD, f"no driver for {self}: {e} (PostgreSQL: "
                                     "pip install 'dse[postgres]')") from e
        try:
            _retry(lambda: self._open(create, upgrade), timeout_s, _lost_race)
        except (DBAPIError, ConfigError) as e:
            self.engine.dispose()
            if isinstance(e, ConfigError):
                raise
            if "not a database" in str(e.orig) or "malformed" in str(e.orig):  # its first read
                raise ConfigError(FIELD, f"{self} exists and is not a dse results store (not an SQLite "
                                         "database); pick another store.url") from None
            raise ConfigError(FIELD, f"cannot open results store {self}: {e.orig}") from e

    @staticmethod
    def _parse(url_or_path: str | Path) -> URL:
        text = str(url_or_path)
        if "://" in text:
            try:
                return sa.make_url(text)
            except ArgumentError as e:
                raise ConfigError(FIELD, f"not a SQLAlchemy URL: {text!r}") from e
        named = storefile.named_store(Path(text).expanduser())  # a new file needs a store's suffix,
        path = named.file  # so store.url=garbage is refused, not created
        if path is None or not (named.folder or path.is_file() or path.suffix.lower() in storefile.SUFFIXES):
            raise ConfigError(FIELD, f"{text!r} is neither a SQLAlchemy URL (dialect://...) nor a "
                                     "store path (an existing folder or file, or a new file "
                                     "ending in .db, .sqlite or .sqlite3)")
        return URL.create("sqlite", database=str(path.resolve()))

    def _engine_options(self, create: bool) -> dict[str, Any]:
        """Our own quoted ``file:`` URI for a file; one shared connection for in-memory SQLite."""
        if self.url.get_backend_name() != "sqlite":
            return {}
        if self.path is None:  # in-memory: one shared connection or every query sees a new db
            return {"poolclass": StaticPool,
                    "connect_args": {"timeout": self.timeout_s, "check_same_thread": False}}
        uri = storefile.file_uri(self.path, mode="rwc") if create else storefile.reader_uri(self.path)
        return {"poolclass": NullPool,  # the busy timeout makes each connection wait for the lock
                "creator": lambda: sqlite3.connect(uri, uri=True, timeout=self.timeout_s)}

    def _check_file(self, create: bool) -> None:
        """Refuse a directory, a store not there (or made where it cannot be), a file it cannot write."""
        if self.path is None:
            return
        if self.path.is_dir():
            raise ConfigError(FIELD, f"{self.path} is a directory, not a results store file")
        if not self.path.exists():
            if not create:
                raise ConfigError(FIELD, f"no results store at {self.path}")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(FIELD, f"cannot create {self.path.parent}: {e}") from e
        if create and not storefile.writable(self.path):  # fail now, not after hours of training
            raise ConfigError(FIELD, f"{self.path} is read-only (the file or its folder): "
                                     "results cannot be written there")

    def _open(self, create: bool, upgrade: bool) -> None:
        """Validate an existing store; a writer also migrates an older or empty one (race-safe)."""
        with self.engine.connect() as conn:
            self.revision = self._revision(conn, create)
            if not create:  # read as it is: the columns it has, the rest are NA
                have = {c["name"] for c in sa.inspect(conn).get_columns(RUNS)}
                if have < set(RUN_COLUMNS):
                    cols = (sa.Column(c.name, c.type) for c in RUNS_TABLE.columns if c.name in have)
                    self._runs = sa.Table(RUNS, sa.MetaData(), *cols)
                return
        if self.revision == SCHEMA_VERSION and not self._legacy:
            return
        from dse.store import migrate  # Alembic, imported only when a store needs it

        if self.revision == 0 and self.path is not None:
            with self.engine.connect() as conn:  # persistent; readers never block the writer
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
        with migrate.write_locked(self.engine, self.path is not None) as conn:
            at = self._revision(conn, create)  # another worker may have migrated meanwhile
            self.upgraded = migrate.upgrade(conn, at, str(self), all_kinds=upgrade)
            conn.commit()
        if at and self.upgraded:
            log.info("upgraded results store %s from schema %d to %d", self, at, SCHEMA_VERSION)
        self.revision = SCHEMA_VERSION

    def _revision(self, conn: sa.Connection, create: bool) -> int:
        """The schema revision the store is at (0: an empty database), or a one-line refusal."""
        tables = set(sa.inspect(conn).get_table_names())
        if schema.META not in tables:
            if RUNS in tables or (tables and self.url.get_backend_name() == "sqlite"):
                # a shared server database may hold other apps' tables (Optuna's); a file may not
                raise ConfigError(FIELD, f"{self} is a database but not a dse results store "
                                         f"(tables: {', '.join(sorted(tables))}); pick another store.url")
            if not create:
                raise ConfigError(FIELD, f"{self} is empty, not a dse results store")
            return 0
        at = schema.stored_version(conn, str(self), tables)
        self._legacy = at is None
        if at is not None:
            return at
        from dse.store import migrate

        return migrate.legacy_revision(conn, str(self))

    def __repr__(self) -> str:
        return f"ResultsStore({self})"

    def __str__(self) -> str:
        return str(self.path) if self.path else self.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Release pooled connections (SQLite then folds the WAL back into the file)."""
        self.engine.dispose()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def default_url(runs_dir: str | Path, study: str) -> str:
        """``sqlite:///<abs runs>/<study>/results.db``: one file per study, by its Hydra runs."""
        runs = Path(runs_dir).expanduser().resolve()
        return storefile.sqlite_url(storefile.study_file(runs, storefile.check_study_name(study)))

    @classmethod
    def config_url(cls, cfg: Any) -> str:
        """The store a run with this (DictConfig or dict) config appends to."""
        store, paths, study = ((cfg or {}).get(group) or {} for group in ("store", "paths", "study"))
        return store.get("url") or cls.default_url(paths.get("runs", "runs"), study.get("name", "default"))

    @classmethod
    def from_config(cls, cfg: Any, **kwargs: Any) -> ResultsStore:
        return cls(cls.config_url(cfg), **kwargs)

    def execute(self, stmt: sa.Executable, rows: Sequence[Mapping[str, Any]] | None = None,
                fetch: Callable[[sa.CursorResult], Any] = lambda r: r.rowcount) -> Any:
        """Run one statement (over ``rows``, if given) in its own transaction; ``fetch`` of its result
        (by default the rows it touched)."""
        def go() -> Any:
            with self.engine.begin() as conn:
                return fetch(conn.execute(stmt, rows))

        return _retry(go, self.timeout_s)

    def ensure_table(self, name: str, columns: Mapping[str, Any]) -> sa.Table:
        """Create table ``name`` (if missing) with explicit column types (``int``, ``Optional[float]``
        or SQLAlchemy types, where pandas would infer wrong); add the columns it lacks."""
        check_table_name(name)
        table = sa.Table(name, sa.MetaData(), *(schema.column(k, v) for k, v in columns.items()))
        _retry(lambda: table.create(self.engine, checkfirst=True), self.timeout_s, _raced)
        _retry(lambda: self._add_missing_columns(table), self.timeout_s, _raced)
        return table

    def _add_missing_columns(self, table: sa.Table) -> None:
        have = {c["name"] for c in sa.inspect(self.engine).get_columns(table.name)}
        quote = self.engine.dialect.identifier_preparer
        with self.engine.begin() as conn:
            for col in (c for c in table.columns if c.name not in have):
                kind = col.type.compile(dialect=self.engine.dialect)
                conn.execute(sa.text(f"ALTER TABLE {quote.format_table(table)} "
                                     f"ADD COLUMN {quote.format_column(col)} {kind}"))

    def append(self, record: Row | Sequence[Row] | pd.DataFrame, table: str = RUNS) -> int:
        """Append rows in one transaction; how many were new. ``runs`` rows through :class:`RunRecord`'s
        schema, a ``run_id`` stored already skipped (an import or a retried append is idempotent);
        another table as pandas creates it (unless :meth:`ensure_table` did)."""
        check_table_name(table, writing=True)
        if isinstance(record, pd.DataFrame):
            record = record.to_dict("records")
        rows: list[Row] = [record] if isinstance(record, (RunRecord, Mapping)) else list(record)
        if table != RUNS:
            frame = pd.DataFrame([r.to_dict() if isinstance(r, RunRecord) else r for r in rows])
            _retry(lambda: frame.to_sql(table, self.engine, if_exists="append", index=False),
                   self.timeout_s, _raced)
            return len(rows)
        values = list({v["run_id"]: v for v in map(schema.native_row, rows)}.values())
        t = RUNS_TABLE

        def insert() -> int:
            with self.engine.begin() as conn:
                have = set(conn.execute(sa.select(t.c.run_id).where(
                    t.c.run_id.in_([v["run_id"] for v in values]))).scalars())
                new = [v for v in values if v["run_id"] not in have]
                if new:
                    conn.execute(t.insert(), new)
            return len(new)

        return _retry(insert, self.timeout_s, _lost_race)  # a concurrent writer inserted one first

    def fill(self, run_id: str, values: Mapping[str, Any]) -> None:
        """Set columns of a stored run (what a later job measured without retraining, e.g. latency):
        the store owns its writes, so callers never build SQL against its table."""
        self.execute(RUNS_TABLE.update().where(RUNS_TABLE.c.run_id == run_id).values(**values))

    def first(self, stmt: sa.Executable) -> dict[str, Any] | None:
        return self.execute(stmt, fetch=lambda r: next(map(dict, r.mappings()), None))

    def _table(self, name: str) -> sa.Table | None:
        if name == RUNS:
            return self._runs
        check_table_name(name)
        if not sa.inspect(self.engine).has_table(name):
            return None
        return sa.Table(name, sa.MetaData(), autoload_with=self.engine)

    @staticmethod
    def _where(t: sa.Table, study: str | None, status: str | Iterable[str] | None) -> list[Any]:
        conds = []
        for col, val in (("study", study), ("status", status)):
            if val is not None:
                if col not in t.c:
                    raise ValueError(f"table {t.name!r} has no {col!r} column to filter on")
                conds.append(t.c[col].in_([val] if isinstance(val, str) else list(val)))
        return conds

    def frame(self, study: str | None = None, status: str | Iterable[str] | None = None,
              table: str = RUNS) -> pd.DataFrame:
        """Rows of ``table`` (oldest first), optionally of one study and some statuses; ``runs`` with
        :data:`RUN_COLUMNS` and their dtypes, a table not there yet as an empty frame."""
        t = self._table(table)
        if t is None:
            return pd.DataFrame()
        stmt = sa.select(t).where(*self._where(t, study, status))
        if table == RUNS:
            stmt = stmt.order_by(t.c.started_at, t.c.finished_at, t.c.run_id)
        df = _retry(lambda: pd.read_sql(stmt, self.engine), self.timeout_s)
        if table != RUNS:
            return df
        absent = {c: _NA_DTYPES[c] for c in RUN_COLUMNS if c not in df.columns}  # an older store
        return df.reindex(columns=list(RUN_COLUMNS)).astype({**FRAME_DTYPES, **absent})

    def get(self, config_hash: str, seed: int,
            statuses: Iterable[str] | None = FINISHED) -> dict[str, Any] | None:
        """The latest run of this design point and seed with one of ``statuses`` (None: any)."""
        t = self._runs
        return self.first(sa.select(t).where(t.c.config_hash == config_hash, t.c.seed == int(seed),
                                             *self._where(t, None, statuses))
                          .order_by(t.c.finished_at.desc(), t.c.started_at.desc()).limit(1))

    def run(self, run_id: str) -> dict[str, Any] | None:
        return self.first(sa.select(self._runs).where(self._runs.c.run_id == run_id))

    def studies(self) -> list[str]:
        stmt = sa.select(self._runs.c.study).distinct().order_by(self._runs.c.study)
        return self.execute(stmt, fetch=lambda r: list(r.scalars()))

    def count(self, study: str | None = None, status: str | Iterable[str] | None = None,
              table: str = RUNS) -> int:
        """Number of rows matching :meth:`frame`'s filters, without reading them."""
        t = self._table(table)
        if t is None:
            return 0
        stmt = sa.select(sa.func.count()).select_from(t).where(*self._where(t, study, status))
        return int(self.execute(stmt, fetch=lambda r: r.scalar_one()))
