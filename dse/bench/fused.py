"""``dse-bench --fused 1,4,8,16``: K design points fused vs one at a time vs K processes.

The same K members each way, an SR x seed grid as a sweep's batch looks: *fused* is one group
(:func:`dse.train.fused.train_group`, what ``hydra/launcher=dse_fused`` runs), *one at a time* is
:func:`dse.train.run.train_once` in turn (the basic launcher), *processes* a pool of K
(:func:`dse.bench.packing.run_k`). Throughput is per wall second of training, start-up excluded.
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


def trained(overrides: list[str], points: list[tuple[list[str], int]], out: Path, fused: bool) -> dict:
    """Train the points as one fused group or one at a time; their throughput, or why none."""
    from dse.train.fused import Member, train_group
    from dse.train.run import train_once

    group = []
    for i, (extra, seed) in enumerate(points):
        cfg = compose([*overrides, *extra])
        group.append(Member(cfg, model_report(cfg), seed, out / f"trial{i}"))
    t0 = time.perf_counter()
    rows = train_group(group) if fused else [train_once(m.cfg, m.report, m.seed, m.out_dir) for m in group]
    seconds = time.perf_counter() - t0
    if bad := [r for r in rows if r["status"] not in FINISHED]:
        return {"error": f"{len(bad)} of {len(rows)} trials failed: {bad[0].get('error')}"}
    images = sum((r.get("images_per_s") or 0) * (r.get("train_seconds") or 0) for r in rows)
    return {"span_s": round(seconds, 3), "trials_per_hour": len(rows) * 3600.0 / seconds,
            "images_per_s": int(images) / seconds, "val_top1": [r.get("val_top1") for r in rows]}


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
        r = {"k": k, "fused": trained(overrides, points, out / "fused", fused=True),
             "sequential": trained(overrides, points, out / "sequential", fused=False),
             "processes": run_k(overrides, k, seed, out / "processes", threads, timeout, points)}
        r["fused_vs_sequential"] = _ratio(r["fused"], r["sequential"])
        r["fused_vs_processes"] = _ratio(r["fused"], r["processes"])
        runs.append(r)
    best = {"trials_per_hour": max((r["processes"].get("trials_per_hour") or 0 for r in runs), default=0)}
    for r in runs:
        r["fused_vs_best_packing"] = _ratio(r["fused"], best)
    return {"ks": ks, "sr_grid": list(SR_GRID), "runs": runs, "overrides": overrides}
