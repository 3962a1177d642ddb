"""runs.precision, runs.channels_last: what trainer.precision/channels_last=auto resolved to."""

import sqlalchemy as sa

from dse.store.migrations import nullable_columns

revision = "0008"
down_revision = "0007"
ADDITIVE = True
ADDS, upgrade = nullable_columns("runs", {"precision": sa.Text, "channels_last": sa.Boolean})
