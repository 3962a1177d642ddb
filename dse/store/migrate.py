"""How a results store reaches this dse's schema: Alembic revisions applied under a write lock.

A store outlives the code that wrote it (a week of sweeps, then ``git pull``), so each schema change
is one revision file in ``migrations/versions/`` and the store records the revision it is at, as
Optuna's RDB storage does. Alembic rather than a smaller mechanism: Optuna already depends on it,
its version table is what database tools know, and its operations speak SQLite and PostgreSQL alike.

A writer's first open applies the pending revisions when all are ``ADDITIVE`` (new nullable columns
or tables, which no reader of the old schema notices), inside one transaction that holds the
database's write lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL transaction-scoped advisory lock):
of several workers opening the same old store at once, one upgrades and the others find it done.
Anything else waits for ``dse-store upgrade``, which backs a file up first. Readers never migrate.

A store from before migrations (no version table, ``dse_meta.schema_version = 1``) is placed in the
chain by its tables and columns: the last revision whose ``ADDS`` it has entirely.
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import Script, ScriptDirectory

from dse.errors import ConfigError
from dse.store.schema import FIELD, MIGRATIONS, RUNS, VERSION_TABLE, missing_columns, record_version
from dse.storefile import reader_uri

logging.getLogger("alembic").setLevel(logging.WARNING)  # dse's own line says what was upgraded
# pg_advisory_xact_lock's key for "this database's dse store is being migrated" ('dsestore')
PG_LOCK_KEY = 0x64736573746F7265


@functools.cache
def scripts() -> ScriptDirectory:
    """Alembic's view of ``migrations/versions/`` (read once a process)."""
    return ScriptDirectory(str(MIGRATIONS.parent))


@functools.cache
def chain() -> tuple[Script, ...]:
    """The revisions from the first to the head, in the order they apply."""
    return tuple(reversed(list(scripts().walk_revisions())))


def legacy_revision(conn: sa.Connection, where: str) -> int:
    """The revision a store written before migrations is at, by the tables and columns it has."""
    insp = sa.inspect(conn)
    have = {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    at = 0
    for rev in chain():
        adds = rev.module.ADDS
        if not all(set(cols) <= have.get(table, set()) for table, cols in adds.items()):
            break
        at = int(rev.revision)
    if at == 0:
        base = chain()[0].module.ADDS[RUNS]
        raise missing_columns(where, [c for c in base if c not in have.get(RUNS, set())])
    return at


def pending(at: int) -> list[Script]:
    """The revisions a store at ``at`` lacks."""
    return [rev for rev in chain() if int(rev.revision) > at]


def upgrade(conn: sa.Connection, at: int, where: str, *, all_kinds: bool = False) -> list[str]:
    """Apply the revisions after ``at`` on ``conn`` (inside the caller's transaction) and stamp
    the head (also on a store from before migrations that needs no change).

    Without ``all_kinds`` a revision that is not additive is refused, naming the command that
    applies it. Returns the revisions applied.
    """
    todo = pending(at)
    held = [rev for rev in todo if not rev.module.ADDITIVE]
    if held and not all_kinds:
        raise ConfigError(FIELD, f"{where} needs schema change {held[0].revision} "
                                 f"({held[0].doc}), which rewrites data: back it up and run "
                                 f"`dse-store upgrade {where}`")
    ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
    with Operations.context(ctx):
        for rev in todo:
            rev.module.upgrade()
    ctx.stamp(scripts(), chain()[-1].revision)
    record_version(conn)
    return [rev.revision for rev in todo]


@contextmanager
def write_locked(engine: sa.Engine, sqlite_file: bool) -> Iterator[sa.Connection]:
    """A connection whose transaction holds the store's write lock from its first statement.

    SQLite: ``BEGIN IMMEDIATE`` on the driver connection (its default would run DDL outside any
    transaction); the connection is not pooled, so its changed isolation level dies with it.
    PostgreSQL: an advisory lock released at commit. The caller commits.
    """
    with engine.connect() as conn:
        if sqlite_file:
            raw = conn.connection.driver_connection
            assert isinstance(raw, sqlite3.Connection)
            raw.isolation_level = None
            raw.execute("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_LOCK_KEY})
        yield conn


def backup(path: Path) -> Path:
    """Copy an SQLite store beside itself as ``<name>.backup-<UTC time>`` (SQLite's online backup:
    consistent even while a run writes) and return where."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.backup-{stamp}")
    with closing(sqlite3.connect(reader_uri(path), uri=True)) as src, \
            closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target
