"""Where a grid sweep is: one line per finished point (done / total, failures, ETA). Jobs may finish in
other processes, so each appends a JSON line (one ``O_APPEND`` write lands whole) to
``<sweep dir>/.dse_progress.jsonl`` and reports from the file; Optuna sweeps report their own."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from dse.compose import grid_sweep, sweep_points
from dse.store import FINISHED
from dse.text import duration

log = logging.getLogger("dse.train")
PROGRESS_FILE = ".dse_progress.jsonl"


def progress_line(events: list[dict[str, Any]], last: dict[str, Any], now: float) -> str:
    """``[3/10] ok model.sr=0.25 (12s) · 1 failed · ETA 1m30s`` for the point ``last``; ``events``:
    the file's lines, the header first. ETA: wall time per finished point times the points left."""
    head, done = events[0], events[1:]
    total = int(head["total"])
    failed = sum(e["status"] not in FINISHED for e in done)
    left = max(0, total - len(done))
    eta = (now - float(head["start"])) / len(done) * left
    parts = [f"[{len(done)}/{total}] {last['status']}", last["point"] or "(no overrides)",
             f"({duration(last['seconds'])})"]
    return " ".join(parts) + f" · {failed} failed" + (f" · ETA {duration(eta)}" if left else "")


class SweepProgress(Callback):
    """Counts a grid's points as they finish (see the module docstring)."""

    _t0: float | None = None  # the running job's start

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not grid_sweep(config):
            return
        points = sweep_points(config)
        swept = sorted({ov.split("=", 1)[0] for p in points for ov in p
                        if sum(ov in q for q in points) < len(points)})
        head = {"total": len(points), "start": time.time(), "swept": swept}
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / PROGRESS_FILE).write_text(json.dumps(head) + "\n")
        log.info("sweep: %d point%s", len(points), "s" if len(points) != 1 else "")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._t0 = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        hc = HydraConfig.get()
        path = Path(str(hc.sweep.dir)) / PROGRESS_FILE
        if hc.mode != RunMode.MULTIRUN or not path.is_file():
            return
        with path.open() as f:
            swept = set(json.loads(f.readline()).get("swept", []))
        point = [ov for ov in hc.overrides.task if ov.split("=", 1)[0] in swept]
        try:  # the summary's status (ok, failed, diverged, pruned)
            value = job_return.return_value
            status = str(value.get("status", "ok")) if isinstance(value, dict) else "ok"
        except Exception:  # the task raised: Hydra stored the exception in the JobReturn
            status = "failed"
        event = {"status": status, "point": " ".join(point),
                 "seconds": time.time() - (self._t0 or time.time())}
        with path.open("a") as f:
            f.write(json.dumps(event) + "\n")
        events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        log.info("%s", progress_line(events, event, time.time()))
