"""What a compression result becomes: its Table-2 Markdown, its files, its store rows.

Split from :mod:`dse.compress.pipeline` (which computes the result) so that the pipeline stays one
concept; the columns of the store's ``compressions`` table are defined here, once.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse.metrics import ACCURACY, REGISTRY
from dse.outputs import staged_dir
from dse.text import table

if TYPE_CHECKING:  # pragma: no cover - typing only
    from dse.checkpoint import Checkpoint
    from dse.store import ResultsStore

OUT = "--out"
METRICS = ACCURACY
TABLE = "compressions"
INT8_FILE = "int8.onnx"
LATENCY_COLUMN = "latency_ms"  # onnxruntime, batch 1, median (dse.metrics)
COLUMNS: dict[str, Any] = {
    "compression_id": str, "run_id": str | None, "study": str, "config_hash": str,
    "checkpoint": str, "overrides": str, "model": str, "data": str, "stage": str, "label": str,
    "bits": int | None,
    "density": str, "index_bits": str, "retrain_epochs": int, "finetune_epochs": int,
    "size_bytes": int, "size_mb": float, "ratio": float, LATENCY_COLUMN: float | None,
    "nonzero_weights": int, "params": int,
    **dict.fromkeys(METRICS, float | None), "file": str | None, "created_at": str,
    "dse_version": str, "git_commit": str,
}



def format_table(result: dict[str, Any]) -> str:
    """Table-2-style Markdown table of a :func:`compress` result (with ``latency_ms`` where the
    int8 stage measured it)."""
    accuracies = [REGISTRY[k] for k in METRICS]
    timed = any(r.get(LATENCY_COLUMN) is not None for r in result["rows"])
    lat = [REGISTRY[LATENCY_COLUMN]] if timed else []
    header = ["stage", "size (bytes)", "MB", "MiB", "ratio", "non-zero weights", "params",
              *(m.label for m in accuracies), *(f"{m.label} {m.unit}" for m in lat)]
    rows = [[r["label"], f"{r['size_bytes']:,}", f"{r['size_mb']:.3f}", f"{r['size_mib']:.3f}",
             f"{r['ratio']:.1f}x", f"{r['nonzero_weights']:,}", f"{r['params']:,}",
             *(m.show(r[m.name]) for m in accuracies), *(m.show(r.get(m.name)) for m in lat)]
            for r in result["rows"]]
    return table(header, rows, align=[None, *["right"] * (len(header) - 1)], markdown=True,
                 pad=False)


def write_outputs(out: Path, result: dict[str, Any], files: dict[str, bytes]) -> None:
    """Compressed files, ``model.json`` (to rebuild the template), JSON and Markdown tables: all of
    them or, when writing fails (a full disk), none and the previous ones untouched."""
    with staged_dir(out, OUT) as stage:
        for name, data in files.items():
            (stage / name).write_bytes(data)
        (stage / "model.json").write_text(json.dumps(result["model"], indent=1) + "\n")
        (stage / "compression.json").write_text(json.dumps(result, indent=1) + "\n")
        (stage / "compression.md").write_text(format_table(result) + "\n")


def store_rows(ckpt: Checkpoint, result: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``compressions`` rows of a result, linked to the training run by ``run_id``."""
    from dse.store import config_hash, provenance, utcnow_iso

    cfg, opts, prov = ckpt.cfg, result["options"], provenance()
    common = dict(run_id=ckpt.run_id, study=cfg.study.name, config_hash=config_hash(
        ckpt.original_cfg), checkpoint=str(ckpt.path.resolve()), model=cfg.model.name,
        overrides=" ".join(ckpt.overrides), data=cfg.data.name, density=opts["density"],
        index_bits=",".join(map(str, opts["index_bits"])), retrain_epochs=opts["retrain_epochs"],
        finetune_epochs=opts["finetune_epochs"], created_at=utcnow_iso(),
        dse_version=prov["dse_version"], git_commit=prov["git_commit"])
    return [{**common, "compression_id": uuid.uuid4().hex,
             **{k: r[k] for k in COLUMNS if k in r}} for r in result["rows"]]


def record(store: ResultsStore, ckpt: Checkpoint, result: dict[str, Any]) -> str:
    """Append the rows to the study's results store (finding ``run_id`` there if needed).

    The store is opened by the caller before the work, so a bad ``store.url`` costs nothing.
    """
    from dse.store import config_hash

    if ckpt.run_id is None:
        run = store.get(config_hash(ckpt.original_cfg), ckpt.seed, statuses=None)
        ckpt.run_id = run["run_id"] if run else None
    store.ensure_table(TABLE, COLUMNS)
    store.append(store_rows(ckpt, result), table=TABLE)
    return str(store)
