"""Measured CPU inference latency (the ``latency_*`` columns of dse.metrics.LATENCY), below training,
dse-compress and dse-export: per runtime and batch, :data:`WARMUP` untimed calls, then up to
:data:`REPEATS` timed ones within :data:`BUDGET_S`; wall times, comparable on one machine only."""

from __future__ import annotations

import copy
import importlib.util
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from dse.errors import ConfigError, first_line
from dse.metrics import LATENCY, REGISTRY

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import torch
    from torch import nn

    Runner = Callable[[torch.Tensor], np.ndarray]

REQUIRES = ("onnx", "onnxruntime", "onnxscript")  # beyond dse's own dependencies: the export extra
INPUT, OUTPUT = "input", "logits"  # the names of the exported graph's input and output
EXAMPLE_BATCH = 2  # torch.export specialises batch sizes 0 and 1, so the dynamic batch is traced at 2
WARMUP, REPEATS, MIN_REPEATS, BUDGET_S = 5, 100, 5, 2.0  # untimed calls, timed calls (at most, at least), s
BATCHES: tuple[int, ...] = tuple(sorted({REGISTRY[n].batch for n in LATENCY}))
RUNTIMES: tuple[str, ...] = tuple(dict.fromkeys(REGISTRY[n].runtime for n in LATENCY))


def missing() -> list[str]:
    """The packages of :data:`REQUIRES` that are not installed (found without importing them)."""
    return [name for name in REQUIRES if importlib.util.find_spec(name) is None]


def require(field: str, prefix: str = "") -> None:
    """Refuse ``field`` (a ConfigError) where :data:`REQUIRES` is not all installed."""
    if lacking := missing():
        raise ConfigError(field, f"{prefix}needs {', '.join(lacking)} (pip install 'dse[export]')")


def inference_copy(model: nn.Module) -> nn.Module:
    """A CPU, fp32, eval-mode, contiguous copy without gradients (``torch.compile`` unwrapped)."""
    import torch

    model = getattr(model, "_orig_mod", model)
    out = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def input_shape(cfg: Any) -> tuple[int, int, int]:
    size = int(cfg["data"]["image_size"])
    return int(cfg["model"]["in_channels"]), size, size


def example(shape: Sequence[int], batch: int = EXAMPLE_BATCH, seed: int = 0) -> torch.Tensor:
    """Standard-normal images (what normalised inputs look like), the same for a given seed."""
    import torch

    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))


def to_onnx(model: nn.Module, shape: Sequence[int]) -> bytes:
    """The ONNX file of an inference copy of ``model`` (dynamo exporter, dynamic batch)."""
    import torch

    model = inference_copy(model)
    with warnings.catch_warnings():  # the exporter's warnings and per-pass INFO lines out of the log
        warnings.simplefilter("ignore")
        logging.disable(logging.INFO)
        try:
            program = torch.onnx.export(
                model, (example(shape),), None, dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
        finally:
            logging.disable(logging.NOTSET)
    return program.model_proto.SerializeToString()


def onnx_runner(data: bytes, threads: int = 0) -> Runner:
    """An onnxruntime CPU session of an ONNX file behind one call (``threads`` 0: one per core)."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: no "removing initializer" chatter
    sess = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    return lambda x: sess.run([OUTPUT], {INPUT: np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]


def torch_runner(model: nn.Module) -> Runner:
    """``model`` (an inference copy or a TorchScript module) without autograd, numpy out."""
    import torch

    def run(x: torch.Tensor) -> np.ndarray:
        with torch.inference_mode():
            return model(x).numpy()

    return run


def profile(run: Callable[[torch.Tensor], Any], shape: Sequence[int], threads: int = 1,
            batches: Sequence[int] = BATCHES, *, warmup: int = WARMUP, repeats: int = REPEATS,
            min_repeats: int = MIN_REPEATS, budget_s: float = BUDGET_S) -> dict[int, dict[float, float]]:
    """``{batch: {quantile: ms}}`` of one runner with ``threads`` (quantiles 0.5 and 0.9 of its calls)."""
    import numpy as np
    import torch

    out: dict[int, dict[float, float]] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for b in batches:
            x = example(shape, b)
            for _ in range(warmup):
                run(x)
            t: list[float] = []
            start = time.perf_counter()
            while len(t) < repeats and (len(t) < min_repeats or time.perf_counter() - start < budget_s):
                t0 = time.perf_counter()
                run(x)
                t.append(time.perf_counter() - t0)
            out[b] = {q: 1e3 * float(np.quantile(t, q)) for q in (0.5, 0.9)}
    finally:
        torch.set_num_threads(before)
    return out


def runners(model: nn.Module, shape: Sequence[int], threads: int = 1) -> dict[str, Runner]:
    model = inference_copy(model)
    made = {"torch": lambda: torch_runner(model),
            "onnxruntime": lambda: onnx_runner(to_onnx(model, shape), threads)}
    return {name: made[name]() for name in RUNTIMES}  # a new registry runtime needs its runner here


def latency_columns(model: nn.Module, cfg: Any, status: str) -> dict[str, Any]:
    """A run's :data:`LATENCY` columns and ``latency_threads``, when ``trainer.latency`` and ``ok``."""
    if not cfg.trainer.latency or status != "ok":
        return {}
    shape, threads = input_shape(cfg), int(cfg.trainer.latency_threads)
    try:
        prof = {name: profile(run, shape, threads) for name, run in runners(model, shape, threads).items()}
    except Exception as e:
        raise RuntimeError(f"latency measurement (trainer.latency=true) failed: "
                           f"{first_line(e, typed=True)}") from e
    return {**{n: prof[m.runtime][m.batch][m.quantile] for n, m in REGISTRY.items() if n in LATENCY},
            "latency_threads": threads}
