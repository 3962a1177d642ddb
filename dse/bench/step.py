"""The step and epochs sections: dse's Lightning path (``train_once`` with a timing callback) against a
plain PyTorch loop on the same network, batches, solver and precision (the ratio is the framework's
cost), and time to a target accuracy. Clocks wait for the GPU only at a measured window's edges."""

from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from dse.bench.packing import RESULT, answer, answered, ratio, worker_command
from dse.compose import compose
from dse.data import build_datamodule
from dse.data.modules import TensorBatches
from dse.errors import first_line
from dse.logs import quiet_lightning
from dse.metrics import REGISTRY
from dse.model import build_model
from dse.train.checks import AUTO, device_settings, native_cpu_bf16
from dse.train.fused import EpochTimer, now
from dse.train.module import build_optimizer
from dse.train.run import train_once
from dse.validate import model_report, validate

VAL_TOP1 = REGISTRY["val_top1"].key  # what FireClassifier logs validation top-1 under


class StepClock(Callback):
    """Times ``steps`` optimizer steps after ``warmup`` untimed ones, validation cut out. ``warmup_s``
    carries one-off costs (compilation); ``cpu_seconds`` is far less noisy than wall time on a shared CPU."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.done_steps, self.images, self.seconds, self.cpu_seconds = 0, 0, 0.0, 0.0
        self.warmup_s: float | None = None
        self._fit_t0: float | None = None
        self._t0: float | None = None
        self._c0 = 0.0

    @property
    def finished(self) -> bool:
        return self.done_steps >= self.warmup + self.steps

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_t0 = now()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._t0 is None and self.warmup <= self.done_steps < self.warmup + self.steps:
            self._t0, self._c0 = now(), time.process_time()
            if self.warmup_s is None and self._fit_t0 is not None:
                self.warmup_s = self._t0 - self._fit_t0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.done_steps += 1
        if self._t0 is not None:
            self.images += len(batch[1])
            if self.finished:
                self._lap()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def _lap(self) -> None:  # resumed by the next on_train_batch_start
        if self._t0 is not None:
            self.seconds += now() - self._t0
            self.cpu_seconds += time.process_time() - self._c0
            self._t0 = None


class EpochClock(EpochTimer):
    """:class:`EpochTimer` and validation top-1 per epoch; stops at ``target``; ``reached``: the
    epoch, training seconds and wall seconds where it was first reached."""

    def __init__(self, target: float | None) -> None:
        super().__init__()
        self.target = target
        self.val_top1: list[tuple[int, float]] = []
        self.reached: tuple[int, float, float] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if trainer.sanity_checking or VAL_TOP1 not in trainer.callback_metrics:
            return
        top1 = float(trainer.callback_metrics[VAL_TOP1])
        self.val_top1.append((trainer.current_epoch, top1))
        if self.target is not None and self.reached is None and top1 >= self.target:
            self.reached = (trainer.current_epoch + 1, self.seconds, now() - self.fit_t0)
            trainer.should_stop = True


def _result(clock: StepClock, compiled: bool) -> dict[str, Any]:
    """The step numbers; ``compile_s``: the warm-up's time beyond as many steady steps."""
    steps, seconds = clock.steps, clock.seconds
    res = {
        "images_per_s": clock.images / seconds if seconds > 0 else None,
        "step_ms": 1000.0 * seconds / steps,
        "cpu_ms_per_step": round(1000.0 * clock.cpu_seconds / steps, 3),
        "timed_steps": steps, "timed_images": clock.images, "timed_seconds": round(seconds, 4),
        "warmup_s": None if clock.warmup_s is None else round(clock.warmup_s, 3),
    }
    if compiled and res["warmup_s"] is not None and res["step_ms"]:
        res["compile_s"] = round(max(0.0, res["warmup_s"] - clock.warmup * res["step_ms"] / 1000.0), 3)
    return res


def project_step(cfg: DictConfig, warmup: int, steps: int, out_dir: Path, compile: bool = False
                 ) -> dict[str, Any]:
    """Images/s of ``train_once`` (dse-train's path) over ``steps`` steps after ``warmup``."""
    c, total = copy.deepcopy(cfg), warmup + steps
    # max_steps is the binding cap; no validation inside the window, no test, no checkpoint
    c.trainer.merge_with({"max_steps": total, "max_epochs": max(int(c.trainer.max_epochs), total),
                          "test": False, "checkpoint": False, "compile": bool(compile),
                          "val_every": max(int(c.trainer.val_every), total + 1)})
    clock = StepClock(warmup, steps)
    validate(c)
    rec = train_once(c, model_report(c), int(c.seed), out_dir, "dse-bench step", (clock,))
    if not clock.finished:  # a "diverged" verdict after the window (e.g. at chance) still timed fine
        why = rec["error"] or f"stopped after {clock.done_steps} of {total} steps"
        raise RuntimeError(f"project training ({rec['status']}): {why} (see {out_dir})")
    return _result(clock, compile)


def plain_step(cfg: DictConfig, warmup: int, steps: int, compile_mode: str | None = None) -> dict[str, Any]:
    """The same steps as :func:`project_step` in a hand-written loop (the speed we should reach),
    timed by the same clock; ``compile_mode`` None (eager), ``"default"`` or ``"reduce-overhead"``."""
    tc = cfg.trainer
    accelerator, precision, channels_last = device_settings(tc)
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    seed = int(cfg.seed)
    L.seed_everything(seed, workers=True, verbose=False)
    model = build_model(cfg.model).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    dm = build_datamodule(cfg, tc.batch_size, tc.eval_batch_size, seed)
    dm.setup("fit")
    split = dm.splits["train"]
    if bool(cfg.data.get("device_resident", True)):
        split = split.to(device)
    batches = TensorBatches(split, tc.batch_size, dm.mean, dm.std, shuffle=True, drop_last=True,
                            augment=bool(cfg.data.augment), flip=bool(cfg.data.flip), seed=seed)
    total = warmup + steps
    opt, sched = build_optimizer(model.parameters(), tc, total, max(1, -(-total // len(batches))))
    net = torch.compile(model, mode=compile_mode) if compile_mode else model
    graphs = compile_mode == "reduce-overhead" and device.type == "cuda"
    scaler = torch.amp.GradScaler(device.type, enabled=precision.startswith("16"))
    smoothing = float(tc.label_smoothing)
    model.train()
    dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
    clock = StepClock(warmup, steps)
    clock.on_train_start(None, None)  # the callback's hooks use only the batch
    while not clock.finished:
        for batch in batches:
            clock.on_train_batch_start(None, None, batch, 0)
            x, y = batch
            if device.type != x.device.type:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with torch.autocast(device.type, dtype=dtype, enabled=precision.startswith(("bf16", "16"))):
                loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            clock.on_train_batch_end(None, None, None, batch, 0)
            if clock.finished:
                break
    return _result(clock, compile_mode is not None)


def best_of(repeats: int, runs: dict[str, Callable[[int], dict[str, Any]]]
            ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Each run (given the repeat's number) alternated ``repeats`` times; the fastest of each, and all:
    on a shared machine a neighbour's burst then slows one repeat, not the comparison."""
    every: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for r in range(repeats):
        for name, run in runs.items():
            every[name].append(run(r))
    return {name: max(v, key=lambda d: d["images_per_s"] or 0.0) for name, v in every.items()}, every


def measure_step(cfg: DictConfig, warmup: int, steps: int, out_dir: Path, repeats: int = 1) -> dict[str, Any]:
    """Project vs plain, the best of ``repeats`` each."""
    t0 = time.perf_counter()
    best, every = best_of(repeats, {
        "project": lambda r: project_step(cfg, warmup, steps, out_dir / f"project{r}"),
        "plain": lambda r: plain_step(cfg, warmup, steps)})
    return {
        "steps": steps, "warmup": warmup, "repeats": repeats, "batch_size": int(cfg.trainer.batch_size),
        **best, "ratio": ratio(best["project"], best["plain"], "images_per_s"),
        "cpu_ratio": ratio(best["plain"], best["project"], "cpu_ms_per_step"),
        **{f"{k}_all": [d["images_per_s"] for d in v] for k, v in every.items()},
        "seconds": round(time.perf_counter() - t0, 2),
    }


def measure_precision(cfg: DictConfig, warmup: int, steps: int, out_dir: Path, repeats: int = 1
                      ) -> dict[str, Any]:
    """fp32 against bf16-mixed + channels_last (what ``auto`` chooses between) on dse-train's path, the
    best of ``repeats`` each, and the one ``auto`` picks here: whether it pays is read off one report,
    on any CPU (an emulated bf16 shows as a ratio below 1)."""
    cfgs = {name: copy.deepcopy(cfg) for name in AUTO}
    for name, (precision, channels_last) in AUTO.items():
        cfgs[name].trainer.merge_with({"precision": precision, "channels_last": channels_last})
    best, _ = best_of(repeats, {n: lambda r, n=n: project_step(cfgs[n], warmup, steps, out_dir / f"{n}{r}")
                                for n in AUTO})
    auto = copy.deepcopy(cfg.trainer)
    auto.merge_with({"precision": "auto", "channels_last": "auto"})
    accelerator, precision, _ = device_settings(auto)
    return {**best, "auto": "bf16" if precision.startswith("bf16") else "fp32",
            "native_bf16": None if accelerator == "gpu" else native_cpu_bf16(),
            "ratio": ratio(best["bf16"], best["fp32"], "images_per_s"), "steps": steps, "warmup": warmup,
            "repeats": repeats, "batch_size": int(cfg.trainer.batch_size)}


COMPILE_MIN_WARMUP = 10  # compiled code (and CUDA-graph recording) needs a few calls to settle


def _compile_variant(overrides: list[str], variant: str, warmup: int, steps: int, out_dir: Path,
                     cache: Path, timeout: float) -> dict[str, Any]:
    """One variant in a fresh process (:func:`worker`) with its inductor cache at ``cache``."""
    spec = {"overrides": overrides, "variant": variant, "warmup": warmup, "steps": steps, "out": str(out_dir)}
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(worker_command(spec, "dse.bench.step"), env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    if (result := answered(out_dir, RESULT)) is not None:
        return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"error": f"worker exited {proc.returncode}: {tail}"}


def measure_compile(overrides: list[str], cfg: DictConfig, warmup: int, steps: int, out_dir: Path,
                    timeout: float = 1800.0) -> dict[str, Any]:
    """``torch.compile`` variants of both paths, each twice in fresh processes sharing a new inductor
    cache: ``compile_s`` cold (a worker's first trial) and warm; throughput the second run's."""
    gpu = device_settings(cfg.trainer)[0] == "gpu"
    warmup = max(warmup, COMPILE_MIN_WARMUP)
    variants = ["project", "plain"] + (["plain_reduce_overhead"] if gpu else [])  # CUDA graphs: GPU
    out: dict[str, Any] = {}
    for v in variants:
        with tempfile.TemporaryDirectory(prefix=f"inductor-{v}-", dir=out_dir.parent,
                                         ignore_cleanup_errors=True) as tmp:
            cache = Path(tmp)
            cold = _compile_variant(overrides, v, warmup, steps, out_dir / f"{v}-cold", cache, timeout)
            warm = (_compile_variant(overrides, v, warmup, steps, out_dir / f"{v}-warm", cache, timeout)
                    if "error" not in cold else cold)
        out[v] = warm if "error" in warm else {**warm, "compile_s": cold.get("compile_s"),
                                               "compile_s_warm": warm.get("compile_s"), "warmup": warmup}
    return out


def time_to_target(cfg: DictConfig, target: float | None, out_dir: Path) -> dict[str, Any]:
    """Epoch time and time to ``target`` validation top-1 on dse-train's own path: a preset is only
    fast if it gets accurate fast, so validation runs every epoch (off the training clock)."""
    c = copy.deepcopy(cfg)
    c.trainer.merge_with({"val_every": 1, "checkpoint": False})  # the preset may validate rarely
    clock, t0 = EpochClock(target), time.perf_counter()
    validate(c)
    rec = train_once(c, model_report(c), int(c.seed), out_dir, "dse-bench epochs", (clock,))
    wall = time.perf_counter() - t0
    if rec["status"] == "failed":
        raise RuntimeError(f"training failed: {rec['error']} (see {out_dir})")
    secs, train_s = clock.epoch_seconds, clock.seconds
    epoch, reached_s, reached_wall_s = clock.reached or (None, None, None)
    steady = secs[1:] or secs  # the first epoch carries one-off costs (allocator, cudnn autotune)
    return {
        "target": target, "max_epochs": int(c.trainer.max_epochs), "status": rec["status"],
        "epochs": len(secs), "epoch_seconds": [round(s, 4) for s in secs],
        "first_epoch_s": round(secs[0], 4) if secs else None,
        "epoch_s": round(statistics.median(steady), 4) if steady else None,
        "train_s": round(train_s, 3), "images_per_s": clock.images / train_s if train_s > 0 else None,
        "reached": epoch is not None, "epochs_to_target": epoch,
        "time_to_target_s": None if reached_s is None else round(reached_s, 3),
        "wall_to_target_s": None if reached_wall_s is None else round(reached_wall_s, 3),
        "val_top1_by_epoch": [[e + 1, round(v, 5)] for e, v in clock.val_top1],
        "val_top1": rec.get("val_top1"), "test_top1": rec.get("test_top1"), "wall_s": round(wall, 3),
    }


def worker(spec: dict[str, Any]) -> int:
    """One ``variant`` (project | plain | plain_reduce_overhead) with torch.compile, in a fresh process."""
    quiet_lightning()
    cfg = compose(spec["overrides"])
    warmup, steps, variant, out = int(spec["warmup"]), int(spec["steps"]), spec["variant"], Path(spec["out"])
    try:
        if variant == "project":
            res = project_step(cfg, warmup, steps, out, compile=True)
        else:
            mode = "reduce-overhead" if variant == "plain_reduce_overhead" else "default"
            res = plain_step(cfg, warmup, steps, mode)
    except Exception as e:  # noqa: BLE001 - a compiler failure is a result for the report
        res = {"error": first_line(e, typed=True)}
    answer(out, RESULT, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(worker(json.loads(sys.argv[1])))
