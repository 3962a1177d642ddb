"""runs.slurm_job (7feb1a0, 2026-12-02): the Slurm job that trained the row."""

import sqlalchemy as sa

from dse.store.migrations import nullable_columns

revision = "0004"
down_revision = "0003"
ADDITIVE = True
ADDS, upgrade = nullable_columns("runs", {"slurm_job": sa.Text})
