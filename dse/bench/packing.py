"""K trials at once on one device: a Fire network leaves most of a GPU idle. Real ``train_once``
trials run in ``python -m dse.bench.packing SPEC_JSON`` processes (:func:`worker`) released together,
answering in JSON files of their folder; the smallest K within :data:`TOLERANCE` of the best is
recommended. ``--fused`` trains K members (an SR x seed grid) fused, one at a time and as K
processes; throughput is per wall second of training, start-up excluded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dse.compose import compose
from dse.logs import quiet_lightning
from dse.outputs import write_files
from dse.store import FINISHED
from dse.validate import model_report

TOLERANCE = 0.05  # a K within 5% of the best trials/hour counts as "as good"
READY, RESULT, GO = "ready.json", "result.json", "go"  # a worker's answers in its folder; its release
SR_GRID = (0.125, 0.25, 0.5, 0.75)  # --fused members' SRs


def worker_command(spec: dict[str, Any], module: str = "dse.bench.packing") -> list[str]:
    """A child process running ``module``'s worker on ``spec`` (:func:`worker`, or step.py's compile one)."""
    return [sys.executable, "-m", module, json.dumps(spec)]


def answer(folder: str | Path, name: str, payload: dict[str, Any]) -> None:
    """A worker's :data:`READY` or :data:`RESULT` file, written whole: the parent polls for it."""
    write_files(folder, {name: json.dumps(payload)}, "worker")


def answered(folder: Path, name: str) -> dict[str, Any] | None:
    return json.loads((folder / name).read_text()) if (folder / name).is_file() else None


def usable_cores() -> int:
    """The cores this process may run on (its affinity): ``os.cpu_count()`` counts every core of
    the machine even under a cpuset or ``taskset``, and splitting threads by it would oversubscribe."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _window(trials: list[Path], k: int, out_dir: Path, spawn_to_ready_s: float) -> dict[str, Any]:
    """The concurrent window's throughput from the workers' results, or why it has none."""
    results = [answered(t, RESULT) for t in trials]
    bad = [i for i, r in enumerate(results) if r is None or r["status"] not in FINISHED]
    if bad:
        first = results[bad[0]]
        why = first["error"] if first else f"no result (see {out_dir}/trial{bad[0]}.log)"
        return {"k": k, "error": f"{len(bad)} of {k} trials failed: {why}"}
    ok = [r for r in results if r is not None]
    span = max(r["t_end"] for r in ok) - min(r["t_go"] for r in ok)
    images = sum(int(r["images"]) for r in ok)
    return {
        "k": k, "span_s": round(span, 3),
        "trials_per_hour": k * 3600.0 / span if span > 0 else None,
        "images_per_s": images / span if span > 0 else None,
        "trial_s": round(sum(r["t_end"] - r["t_go"] for r in ok) / k, 3),
        "train_s": round(sum(r["train_s"] for r in ok) / k, 3),
        "startup_s": round(max(answered(t, READY)["startup_s"] for t in trials), 3),
        "spawn_to_ready_s": round(spawn_to_ready_s, 3),
        "threads_per_trial": ok[0].get("threads"),
        "val_top1": [r.get("val_top1") for r in ok],
    }


def run_k(overrides: list[str], k: int, seed: int, out_dir: Path, threads: int = 0,
          timeout: float = 3600.0, points: list[tuple[list[str], int]] | None = None) -> dict[str, Any]:
    """Start ``k`` workers, release them together once all are ready (the file :data:`GO`), and
    measure the concurrent window; ``points``: each worker's extra overrides and seed (default none
    and ``seed + i``; ``--fused`` passes its own)."""
    points = points or [([], seed + i) for i in range(k)]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / GO).unlink(missing_ok=True)
    trials = [out_dir / f"trial{i}" for i in range(k)]
    env, deadline = {**os.environ, "PYTHONUNBUFFERED": "1"}, time.monotonic() + timeout
    procs: list[subprocess.Popen] = []
    t_spawn = time.time()
    try:
        for i, (extra, own_seed) in enumerate(points[:k]):
            spec = {"overrides": [*overrides, *extra], "seed": own_seed, "out": str(trials[i]),
                    "threads": threads, "go": str(out_dir / GO), "timeout": timeout}
            with open(out_dir / f"trial{i}.log", "w") as log:
                procs.append(subprocess.Popen(worker_command(spec), stdout=log, stderr=subprocess.STDOUT,
                                              env=env))
        for i, proc in enumerate(procs):
            while answered(trials[i], READY) is None:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"worker {i} of K={k} did not start (see {out_dir}/trial{i}.log)")
                time.sleep(0.01)
        t_ready = time.time()
        (out_dir / GO).touch()  # release all K together
        for proc in procs:
            proc.wait(max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"K={k} ran past {timeout:.0f}s (see {out_dir})") from None
    finally:
        for proc in procs:  # only the processes started here
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return _window(trials, k, out_dir, t_ready - t_spawn)


def recommend(runs: list[dict[str, Any]], tolerance: float = TOLERANCE) -> int | None:
    """The smallest K whose trials/hour is within ``tolerance`` of the best K's."""
    good = [r for r in runs if r.get("trials_per_hour")]
    if not good:
        return None
    best = max(r["trials_per_hour"] for r in good)
    return min(r["k"] for r in good if r["trials_per_hour"] >= (1.0 - tolerance) * best)


def measure_packing(overrides: list[str], ks: list[int], seed: int, out_dir: Path, cpu: bool,
                    timeout: float = 3600.0) -> dict[str, Any]:
    """Every K in ``ks``; on CPU each trial gets ``cores // K`` threads, capped by ``OMP_NUM_THREADS``
    when set (on a shared CPU, 1 thread keeps OpenMP from spinning against other people's jobs)."""
    cores = usable_cores()
    cap = int(os.environ.get("OMP_NUM_THREADS") or 0) or cores
    runs = [run_k(overrides, k, seed, out_dir / f"k{k}", max(1, min(cap, cores // k)) if cpu else 0, timeout)
            for k in ks]
    base = next((r["trials_per_hour"] for r in runs if r["k"] == 1 and r.get("trials_per_hour")), None)
    for r in runs:
        if base and r.get("trials_per_hour"):
            r["speedup_vs_k1"] = r["trials_per_hour"] / base
    return {"ks": ks, "tolerance": TOLERANCE, "runs": runs, "recommended_k": recommend(runs),
            "best_k": recommend(runs, tolerance=0.0), "overrides": overrides}


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


def ratio(a: dict[str, Any], b: dict[str, Any], key: str = "trials_per_hour") -> float | None:
    x, y = a.get(key), b.get(key)
    return x / y if x and y else None


def measure_fused(overrides: list[str], ks: list[int], seed: int, out_dir: Path, cpu: bool,
                  timeout: float = 3600.0) -> dict[str, Any]:
    """Every K of ``ks`` three ways; the ratios the issue's targets are stated in."""
    runs = []
    for k in ks:
        # member i: SR SR_GRID[i % 4], seed seed + i // 4 (16 members: 4 SR x 4 seeds)
        points = [([f"model.sr={SR_GRID[i % len(SR_GRID)]}"], seed + i // len(SR_GRID)) for i in range(k)]
        out = out_dir / f"k{k}"
        threads = max(1, usable_cores() // k) if cpu else 0
        r = {"k": k, "fused": trained(overrides, points, out / "fused", fused=True),
             "sequential": trained(overrides, points, out / "sequential", fused=False),
             "processes": run_k(overrides, k, seed, out / "processes", threads, timeout, points)}
        r["fused_vs_sequential"] = ratio(r["fused"], r["sequential"])
        r["fused_vs_processes"] = ratio(r["fused"], r["processes"])
        runs.append(r)
    best = {"trials_per_hour": max((r["processes"].get("trials_per_hour") or 0 for r in runs), default=0)}
    for r in runs:
        r["fused_vs_best_packing"] = ratio(r["fused"], best)
    return {"ks": ks, "sr_grid": list(SR_GRID), "runs": runs, "overrides": overrides}


def worker(spec: dict[str, Any]) -> int:
    """One packed trial: ready once imports, data and CUDA context are done, then released with the
    other K - 1, so the window holds K trials training."""
    threads = int(spec.get("threads") or 0)
    if threads > 0:  # before torch starts its pools; K workers x all cores would oversubscribe a CPU
        os.environ["OMP_NUM_THREADS"] = str(threads)
    t_spawn = time.time()
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    quiet_lightning()

    from dse.data import InMemoryDataModule, build_datamodule
    from dse.train.fused import EpochTimer, now
    from dse.train.run import train_once
    from dse.validate import validate

    cfg = compose(spec["overrides"])
    validate(cfg)
    report = model_report(cfg)
    dm = build_datamodule(cfg, cfg.trainer.batch_size, cfg.trainer.eval_batch_size)
    if isinstance(dm, InMemoryDataModule):  # parse and split now (cached per process), not in the window
        dm.setup("fit")
    if torch.cuda.is_available():
        torch.zeros(1, device="cuda")  # create the CUDA context now too
        now()
    answer(spec["out"], READY, {"pid": os.getpid(), "startup_s": round(time.time() - t_spawn, 3)})
    while not os.path.exists(spec["go"]):  # released together (run_k)
        if time.time() - t_spawn > float(spec["timeout"]):
            return 1
        time.sleep(0.001)
    clock = EpochTimer()
    t_go = time.time()
    rec = train_once(cfg, report, int(spec["seed"]), Path(spec["out"]), "dse-bench packing", (clock,))
    now()  # the GPU's queued work belongs to the window
    answer(spec["out"], RESULT, {"status": rec["status"], "error": rec["error"], "t_go": t_go,
                                 "t_end": time.time(), "images": clock.images,
                                 "train_s": round(clock.seconds, 4), "val_top1": rec.get("val_top1"),
                                 "threads": torch.get_num_threads()})
    return 0


if __name__ == "__main__":
    raise SystemExit(worker(json.loads(sys.argv[1])))
