"""One ``dse-export`` job: a network's files, checked against PyTorch, optionally timed, written.

Everything is computed in memory first: the files, their outputs against PyTorch's on random and
on real test images (:data:`~dse.export.formats.TOLERANCE`), the int8 file's accuracy and every
latency. Only then are they written, together or not at all (:func:`dse.outputs.staged_dir`), so a
file that disagrees with PyTorch is never left behind.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dse.export import REQUIRES, formats, int8, latency, runtime
from dse.metrics import REGISTRY
from dse.outputs import staged_dir
from dse.text import table

RANDOM_IMAGES = 16
REFERENCE = "pytorch"  # the reference row: the network itself, in torch eager mode


@dataclass
class ExportOptions:
    """What to make and check (the command-line flags of ``dse-export``)."""

    formats: tuple[str, ...] = ("onnx", "torchscript")
    check_images: int = 64  # real test images the outputs are compared on (0: random ones only)
    calibration: int = int8.CALIBRATION_IMAGES  # train images that calibrate the int8 file
    latency: bool = False  # time every file's runtime (and PyTorch's) at batch 1 and 64
    threads: int = 1  # intra-op threads of those timings
    extra: dict[str, Any] = field(default_factory=dict)


def _needs_data(opts: ExportOptions) -> bool:
    return opts.check_images > 0 or "int8" in opts.formats


def run(model: nn.Module, cfg: Any, stem: str, opts: ExportOptions, dm: Any = None
        ) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The result (JSON-ready) and the files ``{name: bytes}`` of exporting ``model``.

    ``cfg`` is the resolved config the network was trained with (its input shape and data);
    ``dm`` its data module, built here from ``cfg`` when real images are needed and none is given.
    Raises :class:`~dse.export.ExportMismatch` when a file disagrees with PyTorch.
    """
    model = formats.inference_copy(model)
    shape = formats.input_shape(cfg)
    if dm is None and _needs_data(opts):
        from dse.data import build_datamodule

        tc = cfg["trainer"]
        dm = build_datamodule(cfg, tc["batch_size"], tc["eval_batch_size"], int(cfg.get("seed", 0)))
    inputs = {"random": formats.example(shape, RANDOM_IMAGES, seed=1)}
    if opts.check_images > 0:
        inputs["test images"] = runtime.first_images(dm, "test", opts.check_images)[0]
    made = {fmt: formats.export(model, shape, fmt) for fmt in opts.formats if fmt != "int8"}
    if "int8" in opts.formats:
        fp32 = made.get("onnx") or formats.to_onnx(model, shape)
        calibration = runtime.first_images(dm, "train", opts.calibration)[0].numpy()
        made["int8"] = int8.quantize(fp32, calibration)
    diffs = formats.max_differences(model, made, inputs)
    formats.check_equal(diffs)

    rows: list[dict[str, Any]] = [{"file": None, "format": REFERENCE, "runtime": "torch"}]
    files: dict[str, bytes] = {}
    for fmt, data in made.items():
        name = stem + formats.SUFFIXES[fmt]
        files[name] = data
        rows.append({"file": name, "format": fmt, "runtime": formats.RUNTIMES[fmt],
                     "bytes": len(data), "max_diff": diffs.get(fmt)})
    if "int8" in opts.formats:  # its answer is its accuracy: beside the network's own
        test = runtime.batches(dm, "test")
        for row in (rows[0], rows[-1]):
            run_ = (runtime.torch_runner(model) if row["format"] == REFERENCE
                    else runtime.runner("int8", made["int8"]))
            acc = runtime.accuracy(run_, test)
            row.update(test_top1=acc[1], test_top5=acc[5])
    if opts.latency:
        for row in rows:
            run_ = (runtime.torch_runner(model) if row["format"] == REFERENCE
                    else runtime.runner(row["format"], made[row["format"]], opts.threads))
            row["latency"] = latency.profile(run_, shape, opts.threads)
    options = {k: v for k, v in asdict(opts).items() if k != "extra"}
    result = dict(model=_plain(cfg["model"]), input_shape=list(shape), stem=stem, options=options,
                  tolerance=formats.TOLERANCE, rows=rows, versions=versions(), **opts.extra)
    return result, files


def _plain(node: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def versions() -> dict[str, str]:
    """The runtimes' versions: latency and even equality depend on them."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"torch": str(torch.__version__)}
    for name in REQUIRES:
        with contextlib.suppress(PackageNotFoundError):
            out[name] = version(name)
    return out


def format_table(result: dict[str, Any]) -> str:
    """The Markdown table of a :func:`run` result: one row per file, plus PyTorch's."""
    rows = result["rows"]
    inputs = list(next((r["max_diff"] for r in rows if r.get("max_diff")), {}))
    acc = any("test_top1" in r for r in rows)
    lat = any("latency" in r for r in rows)
    header = ["file", "runtime", "bytes", *(f"max abs diff, {name}" for name in inputs)]
    if acc:
        header += [REGISTRY["test_top1"].label + " %", REGISTRY["test_top5"].label + " %"]
    if lat:
        header += [f"batch {b} {q} ms" for b in latency.BATCHES for q in ("median", "p90")]
    body = []
    for r in rows:
        if r["format"] == REFERENCE and not (acc or lat):
            continue  # nothing measured on the network itself
        cells = [r["file"] or f"({REFERENCE}, eager)", r["runtime"] + (" int8" if r["format"] ==
                                                                      "int8" else ""),
                 f"{r['bytes']:,}" if "bytes" in r else "-"]
        diffs = r.get("max_diff") or {}
        cells += [f"{diffs[n]:.2g}" if n in diffs else "-" for n in inputs]
        if acc:
            cells += [REGISTRY[k].show(r.get(k)) for k in ("test_top1", "test_top5")]
        if lat:
            prof = r.get("latency") or {}
            cells += [f"{prof[b][q]:.3f}" if b in prof else "-" for b in latency.BATCHES
                      for q in (0.5, 0.9)]
        body.append(cells)
    return table(header, body, align=[None, None, *["right"] * (len(header) - 2)], markdown=True,
                 pad=False)


def write_outputs(out: Path, result: dict[str, Any], files: dict[str, bytes],
                  field_name: str = "--out") -> list[Path]:
    """The files, ``<stem>.export.json`` and ``<stem>.export.md``: all of them or none."""
    stem = result["stem"]
    with staged_dir(out, field_name) as stage:
        for name, data in files.items():
            (stage / name).write_bytes(data)
        (stage / f"{stem}.export.json").write_text(json.dumps(_jsonable(result), indent=1) + "\n")
        (stage / f"{stem}.export.md").write_text(format_table(result) + "\n")
    return [out / n for n in (*files, f"{stem}.export.json", f"{stem}.export.md")]


def _jsonable(x: Any) -> Any:
    """JSON keys must be strings: batch sizes and quantiles become "1", "0.5"."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"onnx,int8"`` -> ("onnx", "int8"), in the order given, each once; a ConfigError naming
    ``--format`` for anything else."""
    from dse.errors import ConfigError
    from dse.text import comma_list

    items = comma_list(text) if isinstance(text, str) else list(text)
    bad = [f for f in items if f not in formats.FORMATS]
    if bad or not items:
        raise ConfigError("--format", f"must be a comma list of {', '.join(formats.FORMATS)} "
                                      f"(got {','.join(items) if items else repr(text)})")
    return tuple(dict.fromkeys(items))
