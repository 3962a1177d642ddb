"""A compression result's Table-2 Markdown, files and store columns (``compressions``, owned here)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dse.metrics import ACCURACY, REGISTRY
from dse.outputs import staged_dir
from dse.text import table

OUT = "--out"
TABLE = "compressions"
INT8_FILE = "int8.onnx"
LATENCY_COLUMN = "latency_ms"  # what the int8 stage times: onnxruntime, batch 1, median
COLUMNS: dict[str, Any] = {
    "compression_id": str, "run_id": str | None, "study": str, "config_hash": str,
    "checkpoint": str, "overrides": str, "model": str, "data": str, "stage": str, "label": str,
    "bits": int | None,
    "density": str, "index_bits": str, "retrain_epochs": int, "finetune_epochs": int,
    "size_bytes": int, "size_mb": float, "ratio": float, LATENCY_COLUMN: float | None,
    "nonzero_weights": int, "params": int,
    **dict.fromkeys(ACCURACY, float | None), "file": str | None, "created_at": str,
    "dse_version": str, "git_commit": str,
}


def format_table(result: dict[str, Any]) -> str:
    """Table-2-style Markdown table of a :func:`compress` result."""
    accuracies = [REGISTRY[k] for k in ACCURACY]
    timed = any(r.get(LATENCY_COLUMN) is not None for r in result["rows"])
    lat = [REGISTRY[LATENCY_COLUMN]] if timed else []
    header = ["stage", "size (bytes)", "MB", "MiB", "ratio", "non-zero weights", "params",
              *(m.label for m in accuracies), *(f"{m.label} {m.unit}" for m in lat)]
    rows = [[r["label"], f"{r['size_bytes']:,}", f"{r['size_mb']:.3f}", f"{r['size_mib']:.3f}",
             f"{r['ratio']:.1f}x", f"{r['nonzero_weights']:,}", f"{r['params']:,}",
             *(m.show(r[m.name]) for m in accuracies), *(m.show(r.get(m.name)) for m in lat)]
            for r in result["rows"]]
    return table(header, rows, align=[None, *["right"] * (len(header) - 1)], markdown=True, pad=False)


def write_outputs(out: Path, result: dict[str, Any], files: dict[str, bytes]) -> None:
    """Compressed files, ``model.json``, JSON and Markdown tables: all of them or none."""
    with staged_dir(out, OUT) as stage:
        for name, data in files.items():
            (stage / name).write_bytes(data)
        (stage / "model.json").write_text(json.dumps(result["model"], indent=1) + "\n")
        (stage / "compression.json").write_text(json.dumps(result, indent=1) + "\n")
        (stage / "compression.md").write_text(format_table(result) + "\n")

