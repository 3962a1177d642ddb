"""How a results store reaches this dse's schema: Alembic revisions applied under a write lock. A writer's
first open applies pending ``ADDITIVE`` revisions in one transaction holding the write lock (one of several
workers upgrades, the others find it done); anything else waits for ``dse-store upgrade``. Readers never
migrate."""

from __future__ import annotations

import functools
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
from dse.store.schema import FIELD, META_TABLE, MIGRATIONS, RUNS, SCHEMA_VERSION, VERSION_TABLE
from dse.storefile import reader_uri

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
    """The revision a store written before migrations is at: the last whose ``ADDS`` it has."""
    insp = sa.inspect(conn)
    have = {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()}
    at = 0
    for rev in chain():
        if not all(set(cols) <= have.get(table, set()) for table, cols in rev.module.ADDS.items()):
            break
        at = int(rev.revision)
    if at == 0:  # a runs table that is not ours: refused before a query on it fails
        missing = [c for c in chain()[0].module.ADDS[RUNS] if c not in have.get(RUNS, set())]
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise ConfigError(FIELD, f"{where} has a runs table without dse's columns ({shown}): "
                                 "not a dse results store; pick another store.url")
    return at


def upgrade(conn: sa.Connection, at: int, where: str, *, all_kinds: bool = False) -> list[str]:
    """Apply the revisions after ``at`` in the caller's transaction and stamp the head; returns
    them. Without ``all_kinds`` one that is not additive is refused."""
    todo = [rev for rev in chain() if int(rev.revision) > at]
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
    # dse_meta too: older dse versions read only that, so they refuse an upgraded store
    conn.execute(META_TABLE.delete().where(META_TABLE.c.key == "schema_version"))
    conn.execute(META_TABLE.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
    return [rev.revision for rev in todo]


@contextmanager
def write_locked(engine: sa.Engine, sqlite_file: bool) -> Iterator[sa.Connection]:
    """A connection whose transaction holds the write lock from its first statement; the caller commits."""
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
    """Copy an SQLite store to ``<name>.backup-<UTC time>`` beside it (consistent while a run writes)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.backup-{stamp}")
    with closing(sqlite3.connect(reader_uri(path), uri=True)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return target
