"""The first results store (f24b56c, 2026-11-26): ``dse_meta`` and ``runs`` with 47 columns."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
ADDITIVE = True

_TEXT, _INT, _FLOAT, _BOOL = sa.Text, sa.BigInteger, sa.Float, sa.Boolean
# name -> (type, nullable), in the order the release created them
RUNS: dict[str, tuple[type[sa.types.TypeEngine], bool]] = {
    "study": (_TEXT, False), "config_hash": (_TEXT, False), "seed": (_INT, False),
    "status": (_TEXT, False), "error": (_TEXT, True), "model": (_TEXT, False),
    "data": (_TEXT, False), "trainer": (_TEXT, False), "base_e": (_INT, False),
    "incr_e": (_INT, False), "freq": (_INT, False), "n_fire": (_INT, False), "sr": (_FLOAT, False),
    "pct3x3": (_FLOAT, False), "dropout": (_FLOAT, False), "bypass": (_TEXT, False),
    "batch_norm": (_BOOL, False), "stem_channels": (_INT, False), "stem_kernel": (_INT, False),
    "stem_stride": (_INT, False), "pool_after": (_TEXT, False), "params": (_INT, False),
    "size_bytes": (_INT, False), "macs": (_INT, False), "image_size": (_INT, False),
    "num_classes": (_INT, False), "subset": (_INT, True), "max_epochs": (_INT, False),
    **{m: (_FLOAT, True) for m in ("val_top1", "val_top5", "val_loss", "test_top1", "test_top5",
                                   "test_loss")},
    "epochs": (_INT, False), "train_seconds": (_FLOAT, False), "images_per_s": (_FLOAT, True),
    "trial": (_INT, True), **{p: (_TEXT, False) for p in (
        "device", "torch_version", "dse_version", "git_commit", "started_at", "finished_at",
        "overrides", "config")},
}
ADDS = {"dse_meta": ("key", "value"), "runs": ("run_id", *RUNS)}


def upgrade() -> None:
    op.create_table("dse_meta", sa.Column("key", sa.String(64), primary_key=True),
                    sa.Column("value", sa.Text, nullable=False))
    op.create_table("runs", sa.Column("run_id", sa.String(64), primary_key=True),
                    *(sa.Column(name, kind(), nullable=null) for name, (kind, null) in RUNS.items()))
