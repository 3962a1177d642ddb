"""What a dse results store is: its tables (derived from :class:`~dse.store.record.RunRecord`;
the migration chain builds the same, a test checks) and the schema version it carries."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union, get_type_hints

import pandas as pd
import sqlalchemy as sa

from dse.errors import ConfigError
from dse.store.record import RunRecord, split_optional

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


METADATA = sa.MetaData()
META_TABLE = sa.Table(META, METADATA, sa.Column("key", sa.String(64), primary_key=True),
                      sa.Column("value", sa.Text, nullable=False))
RUNS_TABLE = sa.Table(RUNS, METADATA, sa.Column("run_id", sa.String(64), primary_key=True),
                      *(column(name, hint) for name, hint in get_type_hints(RunRecord).items()
                        if name != "run_id"))
# who trains which (config_hash, seed) now: the primary key lets one worker at a time have it
CLAIMS_TABLE = sa.Table(
    CLAIMS, METADATA, sa.Column("config_hash", sa.String(64), primary_key=True),
    sa.Column("seed", sa.BigInteger, primary_key=True, autoincrement=False),
    *(sa.Column(name, kind, nullable=False) for name, kind in (
        ("run_id", sa.String(64)), ("token", sa.String(64)), ("host", sa.Text),
        ("pid", sa.BigInteger), ("claimed_at", sa.Text), ("expires_at", sa.Float))))


def check_table_name(name: str, writing: bool = False) -> None:
    """Refuse ``dse_meta`` as results, and ``claims`` and SQLite's own tables to write."""
    if not name or name == META or (writing and (name == CLAIMS or name.startswith("sqlite_"))):
        raise ValueError(f"{name!r} is not a results table name")


def _native(v: Any) -> Any:
    """Plain Python for the DB driver: numpy scalars unwrapped, NaN / pd.NA as NULL."""
    v = v.item() if hasattr(v, "item") else v
    return None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v


def native_row(record: Row) -> dict[str, Any]:
    """A ``runs`` row as the driver (and JSON) takes it, through :class:`RunRecord`."""
    row = record if isinstance(record, RunRecord) else RunRecord(**record)
    return {k: _native(v) for k, v in row.to_dict().items()}


def stored_version(conn: sa.Connection, where: str, tables: set[str]) -> Optional[int]:
    """The revision a store is at (None: from before migrations); a newer one is refused."""
    meta = conn.execute(sa.select(META_TABLE.c.value).where(META_TABLE.c.key == "schema_version")).scalar()
    revision = (conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
                if VERSION_TABLE in tables else None)
    for version in (meta, revision):
        if version is not None and (not str(version).isdigit() or int(version) > SCHEMA_VERSION):
            shown = int(version) if str(version).isdigit() else version  # revision "0008" is 8
            raise ConfigError(FIELD, f"{where} has results-store schema version {shown}, "
                                     f"newer than this dse's {SCHEMA_VERSION}: upgrade dse")
    return int(revision) if revision is not None else None
