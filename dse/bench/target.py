"""Epoch time and time to a target validation accuracy, on dse-train's own path: a preset is only
fast if it gets *accurate* fast, so validation runs every epoch (off the training clock) and the
run stops as soon as validation top-1 reaches the target."""

from __future__ import annotations

import copy
import statistics
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dse.bench.timing import EpochClock
from dse.train.run import train_once
from dse.validate import model_report, validate


def time_to_target(cfg: DictConfig, target: float | None, out_dir: Path) -> dict[str, Any]:
    """Train ``cfg`` for up to ``trainer.max_epochs``, validating each epoch; stop at ``target``."""
    c = copy.deepcopy(cfg)
    c.trainer.val_every = 1  # the target is checked each epoch (the preset may validate rarely)
    c.trainer.checkpoint = False
    clock = EpochClock(target)
    t0 = time.perf_counter()
    validate(c)
    rec = train_once(c, model_report(c), int(c.seed), out_dir, "dse-bench epochs", (clock,))
    wall = time.perf_counter() - t0
    if rec["status"] == "failed":
        raise RuntimeError(f"training failed: {rec['error']} (see {out_dir})")
    secs = clock.epoch_seconds
    steady = secs[1:] or secs  # the first epoch carries one-off costs (allocator, cudnn autotune)
    train_s = sum(secs)
    return {
        "target": target, "max_epochs": int(c.trainer.max_epochs), "status": rec["status"],
        "epochs": len(secs), "epoch_seconds": [round(s, 4) for s in secs],
        "first_epoch_s": round(secs[0], 4) if secs else None,
        "epoch_s": round(statistics.median(steady), 4) if steady else None,
        "train_s": round(train_s, 3),
        "images_per_s": clock.images / train_s if train_s > 0 else None,
        "reached": clock.reached_epoch is not None,
        "epochs_to_target": clock.reached_epoch,
        "time_to_target_s": None if clock.reached_train_s is None else round(clock.reached_train_s, 3),
        "wall_to_target_s": None if clock.reached_wall_s is None else round(clock.reached_wall_s, 3),
        "val_top1_by_epoch": [[e + 1, round(v, 5)] for e, v in clock.val_top1],
        "val_top1": rec.get("val_top1"), "test_top1": rec.get("test_top1"),
        "wall_s": round(wall, 3),
    }
