"""A network as files other runtimes load (ONNX, TorchScript by ``torch.jit.trace``, int8 ONNX),
and the proof they agree with PyTorch within :data:`TOLERANCE`."""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dse import latency
from dse.export import ExportMismatch

FORMATS = ("onnx", "torchscript", "int8")  # int8: onnxruntime static quantization (dse.compress.int8)
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "int8": ".int8.onnx"}
RUNTIMES = {"onnx": "onnxruntime", "torchscript": "torch", "int8": "onnxruntime"}
TOLERANCE = 1e-4  # largest |runtime - PyTorch| on a logit that an fp32 file may show


def to_torchscript(model: nn.Module, shape: Sequence[int]) -> bytes:
    """The TorchScript file (``torch.jit.save`` of a trace) of an inference copy of ``model``."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation (FutureWarning) on every call
        torch.jit.save(torch.jit.trace(latency.inference_copy(model), latency.example(shape)), buf)
    return buf.getvalue()


def export(model: nn.Module, shape: Sequence[int], fmt: str) -> bytes:
    """The fp32 file of ``model`` in ``fmt`` (``onnx`` or ``torchscript``)."""
    return {"onnx": latency.to_onnx, "torchscript": to_torchscript}[fmt](model, shape)


def runner(fmt: str, data: bytes, threads: int = 0) -> latency.Runner:
    """The runner of a file in ``fmt`` (``onnx``, ``int8`` or ``torchscript``)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation warning
            return latency.torch_runner(torch.jit.load(io.BytesIO(data), map_location="cpu").eval())
    return latency.onnx_runner(data, threads)


def max_differences(model: nn.Module, files: Mapping[str, bytes],
                    inputs: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Largest |file - PyTorch| logit per format and input batch (int8 left out: its answer is its
    accuracy)."""
    want = latency.torch_runner(latency.inference_copy(model))
    out: dict[str, dict[str, float]] = {}
    for fmt, data in files.items():
        if fmt != "int8":
            run = runner(fmt, data)
            out[fmt] = {name: float(abs(run(x) - want(x)).max()) for name, x in inputs.items()}
    return out


def check_equal(diffs: Mapping[str, Mapping[str, float]], tolerance: float = TOLERANCE) -> None:
    """Raise :class:`ExportMismatch` naming every (format, inputs) whose outputs differ too much."""
    bad = [f"{fmt} on {name}: {d:.3g}" for fmt, by in diffs.items() for name, d in by.items()
           if not d <= tolerance]
    if bad:
        raise ExportMismatch(f"outputs differ from PyTorch's by more than {tolerance:g}: "
                             + "; ".join(bad))
