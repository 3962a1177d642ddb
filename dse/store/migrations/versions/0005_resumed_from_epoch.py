"""runs.resumed_from_epoch (0fc79e8, 2026-12-02): the epoch a resumed run continued from."""

from __future__ import annotations

import sqlalchemy as sa

from dse.store.migrations import add_nullable

revision = "0005"
down_revision = "0004"
ADDITIVE = True
COLUMNS = {"resumed_from_epoch": sa.BigInteger}
ADDS = {"runs": tuple(COLUMNS)}


def upgrade() -> None:
    add_nullable("runs", COLUMNS)
