"""``dse-bench --fused 1,4,8,16``: K design points fused vs one at a time vs K processes.

The same K members each way: an SR x seed grid (:data:`SR_GRID` cycled, then the next seed), the
way a sweep's batch looks. *Fused* trains them as one group (:func:`dse.train.fused.train_group`,
what ``hydra/launcher=dse_fused`` runs); *one at a time* trains each with
:func:`dse.train.run.train_once` in turn (the basic launcher); *processes* is
:func:`dse.bench.packing.run_k` with those members (a joblib pool of K). Throughput is per wall
second of training (the start-up of processes is excluded, as in the packing section).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dse.bench.packing import run_k, usable_cores
from dse.compose import compose
from dse.store import FINISHED
from dse.validate import model_report

SR_GRID = (0.125, 0.25, 0.5, 0.75)


def members(k: int, seed: int) -> list[tuple[list[str], int]]:
    """Member i: SR ``SR_GRID[i % 4]``, seed ``seed + i // 4`` (16 members: 4 SR x 4 seeds)."""
    return [([f"model.sr={SR_GRID[i % len(SR_GRID)]}"], seed + i // len(SR_GRID)) for i in range(k)]


def _throughput(k: int, seconds: float, images: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    bad = [r for r in rows if r["status"] not in FINISHED]
    if bad:
        return {"error": f"{len(bad)} of {k} trials failed: {bad[0].get('error')}"}
    return {"span_s": round(seconds, 3), "trials_per_hour": k * 3600.0 / seconds,
            "images_per_s": images / seconds, "val_top1": [r.get("val_top1") for r in rows]}


def _images(rows: list[dict[str, Any]]) -> int:
    return int(sum((r.get("images_per_s") or 0) * (r.get("train_seconds") or 0) for r in rows))


def fused_once(overrides: list[str], points: list[tuple[list[str], int]], out: Path) -> dict:
    from dse.train.fused import Member, train_group

    group = []
    for i, (extra, seed) in enumerate(points):
        cfg = compose([*overrides, *extra])
        group.append(Member(cfg, model_report(cfg), seed, out / f"trial{i}"))
    t0 = time.perf_counter()
    rows = train_group(group)
    seconds = time.perf_counter() - t0
    return _throughput(len(points), seconds, _images(rows), rows)


def sequential(overrides: list[str], points: list[tuple[list[str], int]], out: Path) -> dict:
    from dse.train.run import train_once

    rows, t0 = [], time.perf_counter()
    for i, (extra, seed) in enumerate(points):
        cfg = compose([*overrides, *extra])
        rows.append(train_once(cfg, model_report(cfg), seed, out / f"trial{i}"))
    seconds = time.perf_counter() - t0
    return _throughput(len(points), seconds, _images(rows), rows)


def _ratio(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    x, y = a.get("trials_per_hour"), b.get("trials_per_hour")
    return x / y if x and y else None


def measure_fused(overrides: list[str], ks: list[int], seed: int, out_dir: Path, cpu: bool,
                  timeout: float = 3600.0) -> dict[str, Any]:
    """Every K of ``ks`` three ways; the ratios the issue's targets are stated in."""
    runs = []
    for k in ks:
        points, out = members(k, seed), out_dir / f"k{k}"
        threads = max(1, usable_cores() // k) if cpu else 0
        r = {"k": k, "fused": fused_once(overrides, points, out / "fused"),
             "sequential": sequential(overrides, points, out / "sequential"),
             "processes": run_k(overrides, k, seed, out / "processes", threads, timeout, points)}
        r["fused_vs_sequential"] = _ratio(r["fused"], r["sequential"])
        r["fused_vs_processes"] = _ratio(r["fused"], r["processes"])
        runs.append(r)
    best = max((r["processes"].get("trials_per_hour") or 0 for r in runs), default=0)
    for r in runs:
        r["fused_vs_best_packing"] = (r["fused"]["trials_per_hour"] / best
                                      if best and r["fused"].get("trials_per_hour") else None)
    return {"ks": ks, "sr_grid": list(SR_GRID), "runs": runs, "overrides": overrides}
