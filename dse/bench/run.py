"""Run every ``dse-bench`` section on one config, in a fixed order (trials in child processes last,
so they cannot disturb the others), and write ``bench.json`` + ``bench.md``."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import lightning
import torch
from omegaconf import DictConfig, OmegaConf

from dse.bench.packing import measure_fused, measure_packing, usable_cores
from dse.bench.report import markdown
from dse.bench.step import measure_compile, measure_precision, measure_step, time_to_target
from dse.compose import compose
from dse.outputs import check_writable, write_files
from dse.store import provenance
from dse.train.checks import device_settings
from dse.validate import validate

# Before the user's overrides (which win): no progress bar, and no resume checkpoints, whose writes
# would add to the timings and let K identical packed trials resume from each other's folder.
BENCH_DEFAULTS = ("trainer.progress_bar=false", "trainer.checkpoint_every=0")


def _cpu_name() -> str:
    """Linux names the model; ``platform.processor()`` often says only "x86_64"."""
    with suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine(cfg: DictConfig) -> dict[str, Any]:
    """What the numbers were measured on; ``cpu_count`` is the usable cores packing splits threads by."""
    accelerator, precision, channels_last = device_settings(cfg.trainer)
    dev = torch.cuda.get_device_name() if accelerator == "gpu" else f"cpu ({_cpu_name()})"
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "device": dev, "accelerator": accelerator, "precision": precision,
        "channels_last": channels_last, "cpu_count": usable_cores(),
        "torch_threads": torch.get_num_threads(), "load_avg_1m": load, "host": platform.node(),
        "python": platform.python_version(),
        "lightning_version": lightning.__version__, **provenance(),
    }


def run_bench(opts: argparse.Namespace, log: Any = print) -> dict[str, Any]:
    """Run the sections :func:`dse.bench.cli.check`ed ``opts`` ask for; returns the JSON document
    (also written to ``opts.out``)."""
    overrides = [*BENCH_DEFAULTS, *opts.overrides]
    cfg = compose(overrides)
    validate(cfg)  # bad input fails here, before any output folder exists
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d_%H-%M-%S")
    out = Path(opts.out) if opts.out else Path(cfg.paths.runs) / "bench" / stamp
    field = "--out" if opts.out else "paths.runs"
    check_writable(out, field, directory=True)
    out.mkdir(parents=True, exist_ok=True)
    tc, m = cfg.trainer, cfg.model
    doc: dict[str, Any] = {
        "version": 1, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "options": vars(opts), "machine": machine(cfg),
        "config": {"model": m.name, "data": cfg.data.name, "trainer": tc.name,
                   "batch_size": int(tc.batch_size), "max_epochs": int(tc.max_epochs),
                   "subset": cfg.data.subset, "augment": bool(cfg.data.augment),
                   "resolved": OmegaConf.to_container(cfg, resolve=True)},
        "step": None, "precision": None, "compile": None, "epochs": None, "packing": None, "fused": None,
    }
    t_all = time.perf_counter()

    def save() -> None:  # after each section, so a crash later still leaves the numbers so far
        write_files(out, {"bench.json": json.dumps(doc, indent=2, default=str)}, field)

    warmup = opts.warmup if opts.warmup is not None else max(2, min(20, opts.steps // 5))
    cpu = device_settings(tc)[0] == "cpu"
    pack = [*overrides, *([f"trainer.max_epochs={opts.pack_epochs}"] if opts.pack_epochs else [])]
    sections = (  # in this order (the module docstring says why)
        ("step", f"step ({warmup} warm-up + {opts.steps} timed steps, x{opts.repeats})",
         lambda: measure_step(cfg, warmup, opts.steps, out / "step", opts.repeats)),
        ("precision", f"fp32 vs bf16-mixed + channels_last ({opts.steps} timed steps, x{opts.repeats})",
         lambda: measure_precision(cfg, warmup, opts.steps, out / "precision", opts.repeats)),
        ("compile", "torch.compile variants", lambda: measure_compile(
            overrides, cfg, warmup, opts.steps, out / "compile", timeout=opts.timeout)),
        ("epochs", f"epochs (up to {tc.max_epochs}, target {opts.target})",
         lambda: time_to_target(cfg, opts.target, out / "epochs")),
        ("packing", f"packing K={','.join(map(str, opts.ks))}", lambda: measure_packing(
            pack, opts.ks, int(cfg.seed), out / "packing", cpu=cpu, timeout=opts.timeout)),
        ("fused", f"fused K={','.join(map(str, opts.fused_ks))}", lambda: measure_fused(
            overrides, opts.fused_ks, int(cfg.seed), out / "fused", cpu=cpu, timeout=opts.timeout)))
    wanted = {*opts.sections, *(["compile"] if opts.compile and "step" in opts.sections else [])}
    for name, what, measure in sections:
        if name in wanted:
            log(f"dse-bench: {what} ...")
            doc[name] = measure()
            save()
    doc["seconds"] = round(time.perf_counter() - t_all, 2)
    save()
    write_files(out, {"bench.md": markdown(doc)}, field)
    doc["out"] = str(out)
    return doc
