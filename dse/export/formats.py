"""A network as files other runtimes load (ONNX, TorchScript), and the proof that they agree.

Every file is made from an *inference copy* of the network: on the CPU, fp32, eval mode (dropout
off, BatchNorm on its running statistics), contiguous memory, ``torch.compile`` unwrapped. ONNX
goes through ``torch.onnx.export(dynamo=True)`` (the exporter PyTorch maintains; the TorchScript
one is deprecated), with a dynamic batch dimension and BatchNorm folded into the convolutions;
TorchScript through ``torch.jit.trace`` (deprecated upstream in favour of torch.export, still
loadable by every libtorch). Input ``input`` [N, C, H, W], normalised as in training; output
``logits`` [N, classes].

:func:`max_differences` runs each file in its runtime and compares with PyTorch on the same
inputs; :func:`check_equal` refuses a file that differs by more than :data:`TOLERANCE`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from dse.export import ExportMismatch, runtime

FORMATS = ("onnx", "torchscript", "int8")  # int8: onnxruntime static quantization (dse.export.int8)
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "int8": ".int8.onnx"}
RUNTIMES = {"onnx": "onnxruntime", "torchscript": "torch", "int8": "onnxruntime"}
TOLERANCE = 1e-4  # largest |runtime - PyTorch| on a logit that an fp32 file may show
EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")
EXAMPLE_BATCH = 2  # torch.export specialises batch sizes 0 and 1, so the dynamic batch is traced at 2


def inference_copy(model: nn.Module) -> nn.Module:
    """A CPU, fp32, eval-mode copy of ``model`` without gradients (``torch.compile`` unwrapped)."""
    model = getattr(model, "_orig_mod", model)
    out = copy.deepcopy(model).cpu().float().eval().to(memory_format=torch.contiguous_format)
    for p in out.parameters():
        p.requires_grad_(False)
    return out


def input_shape(cfg: Any) -> tuple[int, int, int]:
    """(channels, height, width) of one input image of a resolved dse config."""
    size = int(cfg["data"]["image_size"])
    return int(cfg["model"]["in_channels"]), size, size


def example(shape: Sequence[int], batch: int = EXAMPLE_BATCH, seed: int = 0) -> torch.Tensor:
    """Standard-normal images (what normalised inputs look like), the same for a given seed."""
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed))


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's warnings and its optimiser's INFO lines (one per pass) kept out of the run
    log: under dse-train, Hydra's root logger would print every one of them."""
    loggers = [logging.getLogger(n) for n in EXPORTER_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)


def to_onnx(model: nn.Module, shape: Sequence[int]) -> bytes:
    """The ONNX file of an inference copy of ``model`` (opset of the installed exporter)."""
    model = inference_copy(model)
    with _quiet_exporter():
        program = torch.onnx.export(
            model, (example(shape),), None, dynamo=True, input_names=[runtime.INPUT],
            output_names=[runtime.OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
            verbose=False)
    return program.model_proto.SerializeToString()


def to_torchscript(model: nn.Module, shape: Sequence[int]) -> bytes:
    """The TorchScript file (``torch.jit.save`` of a trace) of an inference copy of ``model``."""
    model = inference_copy(model)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation (FutureWarning) on every call
        traced = torch.jit.trace(model, example(shape))
        torch.jit.save(traced, buf)
    return buf.getvalue()


def export(model: nn.Module, shape: Sequence[int], fmt: str) -> bytes:
    """The fp32 file of ``model`` in ``fmt`` (``onnx`` or ``torchscript``)."""
    if fmt == "onnx":
        return to_onnx(model, shape)
    if fmt == "torchscript":
        return to_torchscript(model, shape)
    raise ValueError(f"no fp32 exporter for {fmt!r}")


def max_differences(model: nn.Module, files: Mapping[str, bytes],
                    inputs: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Largest |file - PyTorch| over every logit, per format and per named input batch.

    ``files`` maps a format to its bytes; int8 files are left out (their answer is their accuracy,
    not equality).
    """
    model = inference_copy(model)
    out: dict[str, dict[str, float]] = {}
    for fmt, data in files.items():
        if fmt == "int8":
            continue
        run = runtime.runner(fmt, data)
        out[fmt] = {}
        for name, x in inputs.items():
            with torch.inference_mode():
                want = model(x).numpy()
            out[fmt][name] = float(abs(run(x) - want).max())
    return out


def check_equal(diffs: Mapping[str, Mapping[str, float]], tolerance: float = TOLERANCE) -> None:
    """Raise :class:`ExportMismatch` naming every (format, inputs) whose outputs differ too much."""
    bad = [f"{fmt} on {name}: {d:.3g}" for fmt, by in diffs.items() for name, d in by.items()
           if not d <= tolerance]
    if bad:
        raise ExportMismatch(f"outputs differ from PyTorch's by more than {tolerance:g}: "
                             + "; ".join(bad))
