"""Child processes of dse-bench (``python -m dse.bench.worker SPEC_JSON``), answering in files of their
``out`` folder. ``mode: "step"``: one compiled step measurement in a fresh process; otherwise one packed
trial, ready once imports, data and CUDA context are done, then released with the other K - 1: the
window holds K trials training."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from dse.bench.packing import READY, RESULT, answer
from dse.errors import first_line
from dse.logs import quiet_lightning


def step_main(spec: dict[str, Any]) -> int:
    """Measure one ``variant`` (project | plain | plain_reduce_overhead) with torch.compile."""
    quiet_lightning()
    from dse.bench.step import plain_step, project_step
    from dse.compose import compose

    cfg = compose(spec["overrides"])
    warmup, steps, variant = int(spec["warmup"]), int(spec["steps"]), spec["variant"]
    try:
        if variant == "project":
            res = project_step(cfg, warmup, steps, Path(spec["out"]), compile=True)
        else:
            res = plain_step(cfg, warmup, steps,
                             "reduce-overhead" if variant == "plain_reduce_overhead" else "default")
    except Exception as e:  # noqa: BLE001 - a compiler failure is a result for the report
        res = {"error": first_line(e, typed=True)}
    answer(spec["out"], RESULT, res)
    return 0


def main(argv: list[str] | None = None) -> int:
    spec = json.loads((argv if argv is not None else sys.argv[1:])[0])  # packing.worker_command's
    if spec.get("mode") == "step":
        return step_main(spec)
    threads = int(spec.get("threads") or 0)
    if threads > 0:  # before torch starts its pools; K workers x all cores would oversubscribe a CPU
        os.environ["OMP_NUM_THREADS"] = str(threads)
    t_spawn = time.time()
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    quiet_lightning()

    from dse.compose import compose
    from dse.data import InMemoryDataModule, build_datamodule
    from dse.train.fused import EpochTimer, now
    from dse.train.run import train_once
    from dse.validate import model_report, validate

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
    while not os.path.exists(spec["go"]):  # released together (dse.bench.packing.run_k)
        if time.time() - t_spawn > float(spec["timeout"]):
            return 1
        time.sleep(0.001)
    clock = EpochTimer()
    t_go = time.time()
    rec = train_once(cfg, report, int(spec["seed"]), Path(spec["out"]), "dse-bench packing", (clock,))
    now()  # the GPU's queued work belongs to the window
    result = {"status": rec["status"], "error": rec["error"], "t_go": t_go, "t_end": time.time(),
              "images": clock.images, "train_s": round(clock.seconds, 4), "val_top1": rec.get("val_top1"),
              "threads": torch.get_num_threads()}
    answer(spec["out"], RESULT, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
