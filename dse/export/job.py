"""One ``dse-export`` job: the network as ONNX, TorchScript (``torch.jit.trace``) and int8 ONNX files,
checked against PyTorch within :data:`TOLERANCE` and timed in memory, so none that disagrees is written."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from dse import latency
from dse.compress import int8
from dse.export import ExportMismatch
from dse.metrics import REGISTRY
from dse.text import table

RANDOM_IMAGES = 16
REFERENCE = "pytorch"  # the reference row: the network itself, in torch eager mode
TEST_ACCURACY = ("test_top1", "test_top5")  # the int8 file's and the network's, side by side
# format -> (file suffix, runtime); int8: onnxruntime static quantization (dse.compress.int8)
FORMATS = {"onnx": (".onnx", "onnxruntime"), "torchscript": (".torchscript.pt", "torch"),
           "int8": (".int8.onnx", "onnxruntime")}
TOLERANCE = 1e-4  # largest |runtime - PyTorch| on a logit that an fp32 file may show


def to_torchscript(model: nn.Module, shape: Sequence[int]) -> bytes:
    """The TorchScript file (``torch.jit.save`` of a trace) of an inference copy of ``model``."""
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation (FutureWarning) on every call
        torch.jit.save(torch.jit.trace(latency.inference_copy(model), latency.example(shape)), buf)
    return buf.getvalue()


def file_runner(fmt: str, data: bytes, threads: int = 0) -> latency.Runner:
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit's deprecation warning
            return latency.torch_runner(torch.jit.load(io.BytesIO(data), map_location="cpu").eval())
    return latency.onnx_runner(data, threads)


def max_differences(model: nn.Module, files: Mapping[str, bytes],
                    inputs: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Largest |file - PyTorch| logit per format and input batch (int8 left out: its answer is its
    accuracy); :class:`ExportMismatch` naming every one above :data:`TOLERANCE`."""
    want = latency.torch_runner(latency.inference_copy(model))
    out: dict[str, dict[str, float]] = {}
    for fmt, data in files.items():
        if fmt != "int8":
            run = file_runner(fmt, data)
            out[fmt] = {name: float(abs(run(x) - want(x)).max()) for name, x in inputs.items()}
    bad = [f"{fmt} on {name}: {d:.3g}" for fmt, by in out.items() for name, d in by.items()
           if not d <= TOLERANCE]
    if bad:
        raise ExportMismatch(f"outputs differ from PyTorch's by more than {TOLERANCE:g}: " + "; ".join(bad))
    return out


@dataclass
class ExportOptions:
    """What to make and check (the command-line flags of ``dse-export``)."""

    formats: tuple[str, ...] = ("onnx", "torchscript")
    check_images: int = 64  # real test images the outputs are compared on (0: random ones only)
    calibration: int = int8.CALIBRATION_IMAGES  # train images that calibrate the int8 file
    latency: bool = False  # time every file's runtime (and PyTorch's) at batch 1 and 64
    threads: int = 1  # intra-op threads of those timings


def run(model: nn.Module, cfg: dict[str, Any], stem: str, opts: ExportOptions, dm: Any = None
        ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The JSON-ready result and the files of exporting ``model``; ExportMismatch if one disagrees."""
    model = latency.inference_copy(model)
    shape = latency.input_shape(cfg)
    if dm is None and (opts.check_images > 0 or "int8" in opts.formats):
        from dse.data import build_datamodule

        tc = cfg["trainer"]
        dm = build_datamodule(cfg, tc["batch_size"], tc["eval_batch_size"], int(cfg.get("seed", 0)))
    inputs = {"random": latency.example(shape, RANDOM_IMAGES, seed=1)}
    if opts.check_images > 0:
        inputs["test images"] = int8.first_images(dm, "test", opts.check_images)[0]
    made = {fmt: (latency.to_onnx if fmt == "onnx" else to_torchscript)(model, shape)
            for fmt in opts.formats if fmt != "int8"}
    if "int8" in opts.formats:
        fp32 = made.get("onnx") or latency.to_onnx(model, shape)
        made["int8"] = int8.quantize(fp32, int8.first_images(dm, "train", opts.calibration)[0].numpy())
    diffs = max_differences(model, made, inputs)

    rows: list[dict[str, Any]] = [{"file": None, "format": REFERENCE, "runtime": "torch"}, *(
        {"file": stem + FORMATS[fmt][0], "format": fmt, "runtime": FORMATS[fmt][1], "bytes": len(data),
         "max_diff": diffs.get(fmt)} for fmt, data in made.items())]

    def runner(fmt: str, threads: int = 0) -> latency.Runner:
        return latency.torch_runner(model) if fmt == REFERENCE else file_runner(fmt, made[fmt], threads)

    if "int8" in opts.formats:  # its answer is its accuracy: beside the network's own
        for row in (rows[0], rows[-1]):
            acc = int8.accuracy(runner(row["format"]), int8.batches(dm, "test"))
            row.update({m: acc[REGISTRY[m].topk] for m in TEST_ACCURACY})
    if opts.latency:
        for row in rows:
            row["latency"] = latency.profile(runner(row["format"], opts.threads), shape, opts.threads)
    result = dict(model=cfg["model"], input_shape=list(shape), stem=stem, options=asdict(opts),
                  tolerance=TOLERANCE, rows=rows, versions=versions())
    return result, {r["file"]: made[r["format"]] for r in rows[1:]}


def versions() -> dict[str, str]:
    """The runtimes' versions: latency and even equality depend on them."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": str(torch.__version__)}
    for name in latency.REQUIRES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of a :func:`run` result: one row per file, plus PyTorch's when measured."""
    rows = result["rows"]
    inputs = list(next((r["max_diff"] for r in rows if r.get("max_diff")), {}))
    acc = any(TEST_ACCURACY[0] in r for r in rows)
    lat = any("latency" in r for r in rows)
    header = ["file", "runtime", "bytes", *(f"max abs diff, {name}" for name in inputs),
              *([f"{REGISTRY[k].label} %" for k in TEST_ACCURACY] if acc else []),
              *([f"batch {b} {q} ms" for b in latency.BATCHES for q in ("median", "p90")] if lat else [])]
    body = []
    for r in rows[0 if acc or lat else 1:]:  # nothing measured on the network itself: no row
        diffs, prof = r.get("max_diff") or {}, r.get("latency") or {}
        body.append([r["file"] or f"({REFERENCE}, eager)",
                     r["runtime"] + (" int8" if r["format"] == "int8" else ""),
                     f"{r['bytes']:,}" if "bytes" in r else "-",
                     *(f"{diffs[n]:.2g}" if n in diffs else "-" for n in inputs),
                     *([REGISTRY[k].show(r.get(k)) for k in TEST_ACCURACY] if acc else []),
                     *([f"{prof[b][q]:.3f}" if b in prof else "-" for b in latency.BATCHES
                        for q in (0.5, 0.9)] if lat else [])])
    return table(header, body, align=[None, None, *["right"] * (len(header) - 2)], markdown=True, pad=False)

