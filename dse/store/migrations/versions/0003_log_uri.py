"""runs.log_uri (1fdeab2, 2026-12-02): where the run's Lightning logger wrote."""

import sqlalchemy as sa

from dse.store.migrations import nullable_columns

revision = "0003"
down_revision = "0002"
ADDITIVE = True
ADDS, upgrade = nullable_columns("runs", {"log_uri": sa.Text})
