"""runs.training_semantics: which training semantics (dse.TRAINING_SEMANTICS) produced the row."""

from __future__ import annotations

import sqlalchemy as sa

from dse.store.migrations import add_nullable

revision = "0007"
down_revision = "0006"
ADDITIVE = True
COLUMNS = {"training_semantics": sa.BigInteger}
ADDS = {"runs": tuple(COLUMNS)}


def upgrade() -> None:
    add_nullable("runs", COLUMNS)
