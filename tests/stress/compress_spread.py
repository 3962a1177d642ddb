"""The spread of Deep Compression's 6-bit accuracy drop over compression seeds, on one checkpoint.

Not collected by pytest (minutes of CPU). It justifies the 5-point bound of
tests/test_compress_cli.py::test_end_to_end_fire_small_keeps_accuracy (docs/COMPRESSION.md):
the seed changes k-means' initialisation and the retraining/fine-tuning data order, nothing else.

    dse-train trainer=smoke data.subset=4000 trainer.checkpoint=true
    python -m tests.stress.compress_spread runs/default/single/*/checkpoints/last.ckpt --seeds 6
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

from dse.checkpoint import load_checkpoint
from dse.compress.pipeline import Options, compress

OVERRIDES = ["data.subset=1000", "trainer.deterministic=true"]  # the test's settings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--seeds", type=int, default=6)
    args = ap.parse_args()
    drops = []
    for seed in range(args.seeds):
        ckpt = dataclasses.replace(load_checkpoint(args.checkpoint, OVERRIDES), seed=seed)
        rows = compress(ckpt, Options(bits=(6,), retrain_epochs=1, finetune_epochs=1,
                                      lr_scale=0.3))["rows"]
        dense, pruned, q6, _ = (r["test_top1"] for r in rows)
        drops.append(dense - q6)
        print(f"seed {seed}: dense {dense:.4f} pruned {pruned:.4f} 6-bit {q6:.4f} "
              f"drop {dense - q6:+.4f}", flush=True)
    print(f"drop mean {statistics.mean(drops):+.4f} sd {statistics.stdev(drops):.4f} "
          f"max {max(drops):+.4f}")


if __name__ == "__main__":
    main()
