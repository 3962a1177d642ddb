"""``dse-bench``: measure how fast dse trains on the device at hand, and how many trials to pack on it.

Four measurements, each answering a question a sweep planner has (see docs/BENCHMARKS.md):
the project's Lightning training step against a plain PyTorch loop (is the framework costing us?),
epoch time and time to a target accuracy (how long is one trial?), K concurrent trials on one device
(what should ``hydra.launcher.n_jobs`` be?), and optionally ``torch.compile`` (does it pay back?).

Nothing heavy is imported here, so ``dse-bench --help`` and option errors answer without loading
torch and Lightning.
"""

from __future__ import annotations

from typing import Any

from dse.bench.options import BenchOptions

__all__ = ["BenchOptions", "run_bench"]


def __getattr__(name: str) -> Any:
    if name == "run_bench":
        from dse.bench.run import run_bench

        return run_bench
    raise AttributeError(name)
