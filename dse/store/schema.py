"""What a dse results store is: its tables, their column types and the schema version it carries.

The store refuses any database that is not one of these before writing to it (someone else's
SQLite file, a ``runs`` table with other columns, a store from a newer dse), so the definition and
the checks against it live together. The tables a store *has* are built by the migration chain
(:mod:`dse.store.migrate`); the tables here are what this dse reads and writes, derived from
:class:`~dse.store.record.RunRecord` (a test checks that the chain ends at these columns).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, Optional, Union, get_type_hints

import pandas as pd
import sqlalchemy as sa

from dse.errors import ConfigError
from dse.store.record import RUN_DTYPES, RunRecord, split_optional

MIGRATIONS = Path(__file__).with_name("migrations") / "versions"
# the newest revision file (NNNN_what.py, revision "NNNN") is this dse's schema version
SCHEMA_VERSION = max(int(p.name[:4]) for p in MIGRATIONS.glob("[0-9][0-9][0-9][0-9]_*.py"))
# never Alembic's default alembic_version: Optuna's storage may share the PostgreSQL database
VERSION_TABLE = "dse_alembic_version"
RUNS = "runs"
META = "dse_meta"
CLAIMS = "claims"
FIELD = "store.url"  # the setting every refusal of a store names
Row = Union[RunRecord, Mapping[str, Any]]
_PY_TYPES: dict[type, type[sa.types.TypeEngine]] = {
    str: sa.Text, int: sa.BigInteger, float: sa.Float, bool: sa.Boolean}


def column(name: str, spec: Any) -> sa.Column:
    """A column from a Python annotation (``int``, ``Optional[float]``...) or a SQLAlchemy type."""
    spec, nullable = split_optional(spec)
    return sa.Column(name, _PY_TYPES.get(spec, spec), nullable=nullable or spec not in _PY_TYPES)


_RUN_TYPES = get_type_hints(RunRecord)
METADATA = sa.MetaData()
META_TABLE = sa.Table(META, METADATA, sa.Column("key", sa.String(64), primary_key=True),
                      sa.Column("value", sa.Text, nullable=False))
RUNS_TABLE = sa.Table(RUNS, METADATA, sa.Column("run_id", sa.String(64), primary_key=True),
                      *(column(f.name, _RUN_TYPES[f.name]) for f in fields(RunRecord)
                        if f.name != "run_id"))
# who trains which (config_hash, seed) now: the primary key lets one worker at a time have it
CLAIMS_TABLE = sa.Table(
    CLAIMS, METADATA, sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("seed", sa.BigInteger, primary_key=True, autoincrement=False),
    *(sa.Column(name, kind, nullable=False) for name, kind in (
        ("run_id", sa.String(64)), ("token", sa.String(64)), ("host", sa.Text),
        ("pid", sa.BigInteger), ("claimed_at", sa.Text), ("expires_at", sa.Float))))
# frame()'s dtypes: text columns stay as the driver returns them
FRAME_DTYPES = {col: dtype for col, dtype in RUN_DTYPES.items() if dtype != "object"}


def check_table_name(name: str, writing: bool = False) -> None:
    """Refuse the tables a caller must not read as results (``dse_meta``) or write (``claims``,
    SQLite's own): they hold the store's bookkeeping, not rows linked by ``run_id``."""
    if not name or name == META or (writing and (name == CLAIMS or name.startswith("sqlite_"))):
        raise ValueError(f"{name!r} is not a results table name")


def _native(v: Any) -> Any:
    """Plain Python for the DB driver: numpy scalars unwrapped, NaN / pd.NA as NULL."""
    v = v.item() if hasattr(v, "item") else v
    return None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v


def native_row(record: Row) -> dict[str, Any]:
    """A ``runs`` row as the driver (and JSON) takes it: checked by :class:`RunRecord` (unknown
    columns raise, missing ones take their defaults), numpy scalars unwrapped, NaN as NULL."""
    row = record if isinstance(record, RunRecord) else RunRecord(**record)
    return {k: _native(v) for k, v in row.to_dict().items()}


def _newer(version: Any) -> bool:
    return version is not None and (not str(version).isdigit() or int(version) > SCHEMA_VERSION)


def stored_version(conn: sa.Connection, where: str, tables: set[str]) -> Optional[int]:
    """The revision a store is at (None: written before migrations, by ``dse_meta`` version 1).

    A newer one, by the version table or by ``dse_meta`` (which older dse versions read), is
    refused in one line: this code cannot know what the newer columns mean.
    """
    meta = conn.execute(sa.select(META_TABLE.c.value)
                        .where(META_TABLE.c.key == "schema_version")).scalar()
    revision = (conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
                if VERSION_TABLE in tables else None)
    for version in (meta, revision):
        if _newer(version):
            shown = int(version) if str(version).isdigit() else version  # revision "0008" is 8
            raise ConfigError(FIELD, f"{where} has results-store schema version {shown}, "
                                     f"newer than this dse's {SCHEMA_VERSION}: upgrade dse")
    return int(revision) if revision is not None else None


def missing_columns(where: str, missing: list[str]) -> ConfigError:
    """The refusal of a ``runs`` table that is not ours, before a query on it fails."""
    shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
    return ConfigError(FIELD, f"{where} has a runs table without dse's columns ({shown}): "
                              "not a dse results store; pick another store.url")


def record_version(conn: sa.Connection) -> None:
    """Write the schema version into ``dse_meta`` too: older dse versions read only that, and so
    refuse a store this dse has upgraded instead of writing rows without its new columns."""
    conn.execute(META_TABLE.delete().where(META_TABLE.c.key == "schema_version"))
    conn.execute(META_TABLE.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)}])
