"""Claims (cfbc545, 2026-12-01): one row per (config_hash, seed) a worker is training now."""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
ADDITIVE = True
COLUMNS = {"run_id": sa.String(64), "token": sa.String(64), "host": sa.Text(),
           "pid": sa.BigInteger(), "claimed_at": sa.Text(), "expires_at": sa.Float()}
ADDS = {"claims": ("config_hash", "seed", *COLUMNS)}


def upgrade() -> None:
    op.create_table("claims", sa.Column("config_hash", sa.String(64), primary_key=True),
                    sa.Column("seed", sa.BigInteger, primary_key=True, autoincrement=False),
                    *(sa.Column(name, kind, nullable=False) for name, kind in COLUMNS.items()))
