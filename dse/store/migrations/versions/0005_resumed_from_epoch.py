"""runs.resumed_from_epoch (0fc79e8, 2026-12-02): the epoch a resumed run continued from."""

import sqlalchemy as sa

from dse.store.migrations import nullable_columns

revision = "0005"
down_revision = "0004"
ADDITIVE = True
ADDS, upgrade = nullable_columns("runs", {"resumed_from_epoch": sa.BigInteger})
