"""Measured CPU inference latency: the ``latency_*`` columns of dse.metrics.LATENCY.

For each runtime (onnxruntime on the network's ONNX file, torch eager on its inference copy) and
each batch size the registry names (1 and 64), one forward pass of random images is timed
repeatedly after a warm-up, and the median and p90 of those wall times are reported in ms.
Timing runs with ``threads`` intra-op threads in both runtimes (recorded as ``latency_threads``;
torch's own setting is restored afterwards), one inter-op thread, nothing else changed.

Repeats: :data:`WARMUP` untimed calls, then up to :data:`REPEATS` timed ones, stopping early after
:data:`BUDGET_S` seconds once :data:`MIN_REPEATS` are in, so an ImageNet-sized network at batch 64
does not take minutes. These are wall times on a machine other work may share: compare design
points measured on one machine, never absolute figures across machines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from dse.metrics import LATENCY, REGISTRY

WARMUP = 5
REPEATS = 100
MIN_REPEATS = 5
BUDGET_S = 2.0
THREADS_COLUMN = "latency_threads"
BATCHES: tuple[int, ...] = tuple(sorted({REGISTRY[n].batch for n in LATENCY}))
RUNTIMES: tuple[str, ...] = tuple(dict.fromkeys(REGISTRY[n].runtime for n in LATENCY))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timings(run: Callable[[torch.Tensor], Any], x: torch.Tensor, *, warmup: int = WARMUP,
            repeats: int = REPEATS, min_repeats: int = MIN_REPEATS,
            budget_s: float = BUDGET_S) -> np.ndarray:
    """Wall seconds of ``run(x)``, one per timed call (see the module docstring for how many)."""
    for _ in range(warmup):
        run(x)
    out: list[float] = []
    start = time.perf_counter()
    while len(out) < repeats and (len(out) < min_repeats or time.perf_counter() - start < budget_s):
        t0 = time.perf_counter()
        run(x)
        out.append(time.perf_counter() - t0)
    return np.asarray(out)


def profile(run: Callable[[torch.Tensor], Any], shape: Sequence[int], threads: int = 1,
            batches: Sequence[int] = BATCHES, **repeat: Any) -> dict[int, dict[float, float]]:
    """``{batch: {quantile: ms}}`` of one runner (quantiles 0.5 and 0.9) with ``threads``."""
    from dse.export.formats import example

    out: dict[int, dict[float, float]] = {}
    with torch_threads(threads):
        for b in batches:
            t = timings(run, example(shape, b), **repeat)
            out[b] = {q: 1e3 * float(np.quantile(t, q)) for q in (0.5, 0.9)}
    return out


def runners(model: nn.Module, shape: Sequence[int], threads: int = 1,
            onnx: bytes | None = None) -> dict[str, Callable[[torch.Tensor], Any]]:
    """One runner per runtime of :data:`RUNTIMES` for ``model`` (its ONNX file made if not given)."""
    from dse.export import formats, runtime

    copy = formats.inference_copy(model)
    out: dict[str, Callable[[torch.Tensor], Any]] = {}
    for name in RUNTIMES:
        if name == "torch":
            out[name] = runtime.torch_runner(copy)
        elif name == "onnxruntime":
            out[name] = runtime.onnx_runner(onnx or formats.to_onnx(copy, shape), threads)
        else:  # pragma: no cover - a runtime added to the registry needs its runner here
            raise ValueError(f"no runner for runtime {name!r}")
    return out


def columns(profiles: Mapping[str, Mapping[int, Mapping[float, float]]], threads: int
            ) -> dict[str, Any]:
    """The :data:`LATENCY` columns (and ``latency_threads``) from per-runtime profiles."""
    out: dict[str, Any] = {}
    for name in LATENCY:
        m = REGISTRY[name]
        if m.runtime in profiles:
            out[name] = profiles[m.runtime][m.batch][m.quantile]
    out[THREADS_COLUMN] = threads
    return out


def measure(model: nn.Module, shape: Sequence[int], threads: int = 1, onnx: bytes | None = None,
            **repeat: Any) -> dict[str, Any]:
    """Every :data:`LATENCY` column of ``model`` with inputs of ``shape`` (C, H, W)."""
    run = runners(model, shape, threads, onnx)
    return columns({name: profile(r, shape, threads, **repeat) for name, r in run.items()}, threads)


def latency_columns(model: nn.Module, cfg: Any, status: str) -> dict[str, Any]:
    """What a trained run adds to its row: its latency columns when ``trainer.latency`` is on and
    the run is ``ok``, else nothing. A measurement that fails raises, naming the step."""
    if not cfg.trainer.latency or status != "ok":
        return {}
    from dse.export.formats import input_shape

    try:
        return measure(model, input_shape(cfg), int(cfg.trainer.latency_threads))
    except Exception as e:
        from dse.errors import first_line

        raise RuntimeError(f"latency measurement (trainer.latency=true) failed: "
                           f"{first_line(e, typed=True)}") from e
