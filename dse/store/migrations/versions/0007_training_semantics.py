"""runs.training_semantics: which training semantics (dse.TRAINING_SEMANTICS) produced the row."""

import sqlalchemy as sa

from dse.store.migrations import nullable_columns

revision = "0007"
down_revision = "0006"
ADDITIVE = True
ADDS, upgrade = nullable_columns("runs", {"training_semantics": sa.BigInteger})
