"""Synthetic run records with known answers (for tests, docs and dse-report on a CPU): the paper's three
experiments with real sizes and hashes, made-up accuracies, a few runs not ok. No torch."""

from __future__ import annotations

import copy
import math
import random
import uuid
from pathlib import Path
from typing import Any

import yaml

from dse.analysis.paper import PRESETS
from dse.metrics import LATENCY, REGISTRY
from dse.model import analyze, build_spec
from dse.model.spec import BYPASS_KINDS
from dse.paths import CONF_DIR
from dse.store import ResultsStore, RunRecord

SR_VALUES = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
PCT_VALUES = (0.01, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 0.99)


def base_config(study: str = "demo", model: str = "fire_small", max_epochs: int = 30) -> dict:
    """A resolved config shaped like dse-train's (what records and hashes read), model from conf/."""
    return {
        "model": {**yaml.safe_load((CONF_DIR / "model" / f"{model}.yaml").read_text()), "in_channels": 1,
                  "num_classes": 10},
        "data": {"name": "fashion_mnist", "channels": 1, "image_size": 28, "num_classes": 10, "subset": None,
                 "val_size": 5000, "split_seed": 0, "augment": False, "root": None, "num_workers": 2},
        "trainer": {"name": "default", "max_epochs": max_epochs, "batch_size": 128, "optimizer": "sgd",
                    "lr": 0.04, "schedule": "poly", "weight_decay": 2e-4, "accelerator": "auto"},
        "study": {"name": study, "seeds": 3, "rerun": False, "note": "synthetic demo data"},
        "store": {"url": None}, "paths": {"runs": "runs"}, "seed": 0}


def record(cfg: dict, seed: int, overrides: str, status: str = "ok", accuracy: float | None = None,
           error: str | None = None, trial: int | None = None) -> dict[str, Any]:
    """One run record through :meth:`RunRecord.from_config`, as training's; ``accuracy``: val top-1."""
    cfg = copy.deepcopy(cfg)
    cfg["seed"] = seed
    rep = analyze(build_spec(cfg["model"]), cfg["data"]["image_size"])
    ok = status == "ok"
    acc = accuracy if accuracy is not None else 0.1
    return RunRecord.from_config(
        cfg, run_id=uuid.UUID(int=random.Random(f"{overrides}/{seed}/{status}").getrandbits(128)).hex,
        status=status, error=error, params=rep.params, size_bytes=rep.size_bytes_fp32, macs=rep.macs,
        val_top1=acc, val_top5=min(1.0, 0.985 + acc / 100) if ok else None,
        val_loss=-math.log(max(acc, 1e-3)), test_top1=acc - 0.004 if ok else None,
        test_top5=min(1.0, 0.984 + acc / 100) if ok else None,
        test_loss=-math.log(max(acc - 0.004, 1e-3)) if ok else None,
        epochs=cfg["trainer"]["max_epochs"] if ok else 2, train_seconds=60.0, images_per_s=9000.0,
        trial=trial, device="synthetic", torch_version="", dse_version="0.1.0",
        git_commit="synthetic", started_at=f"2026-01-01T00:{seed:02d}:00.000+00:00",
        finished_at=f"2026-01-01T01:{seed:02d}:00.000+00:00", overrides=overrides).to_dict()


def _accuracy(sr: float, pct3x3: float, bypass: str, rng: random.Random) -> float:
    """Made-up val top-1 with the paper's shapes (SR plateau, pct3x3 peak at 0.5, simple best)."""
    a = 0.905 + 0.02 * (1 - math.exp(-5 * (sr - 0.125)))
    a -= 0.012 * (pct3x3 - 0.5) ** 2 * 4
    a += {"none": 0.0, "simple": 0.004, "complex": 0.002}[bypass]
    return round(a + rng.gauss(0, 0.0015), 5)


def latency_columns(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """Made-up ``latency_*`` columns: 0.04 ms + 11 ms per GMAC, torch ~10x, batch 64 ~50x, p90 +15 %."""
    extra = {"none": 1.0, "simple": 1.08, "complex": 1.2}.get(row["bypass"], 1.0)
    base = (0.04 + 1.1e-8 * row["macs"]) * extra * (1 + rng.gauss(0, 0.02))
    out: dict[str, Any] = {"latency_threads": 1}
    for name in LATENCY:
        m = REGISTRY[name]
        factor = (10.0 if m.runtime == "torch" else 1.0) * (m.batch if m.batch <= 1 else 50.0)
        out[name] = round(base * factor * (1.15 if m.quantile > 0.5 else 1.0), 5)
    return out


def demo_records(study: str = "demo", seeds: int = 3, sr: bool = True, pct3x3: bool = True,
                 bypass: bool = True, presets: bool = True, failures: bool = True,
                 max_epochs: int = 30, latency: bool = False) -> list[dict[str, Any]]:
    """Rows of the paper's three experiments (shared points once); failures: SR 1.0 seed 0 diverged,
    pct3x3 0.99 seed 1 failed, a pruned run."""
    rng = random.Random(0)
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, int]] = set()

    def add(overrides: str, changes: dict[str, Any], model: str = "fire_small") -> None:
        cfg = base_config(study, model, max_epochs)
        cfg["model"].update(changes)
        for s in range(seeds):
            r = record(cfg, s, f"study={study} {overrides}".strip())
            if (r["config_hash"], s) in seen:
                continue
            seen.add((r["config_hash"], s))
            m = cfg["model"]
            r["val_top1"] = _accuracy(m["sr"], m["pct3x3"], m["bypass"], rng)
            r["test_top1"] = round(r["val_top1"] - 0.004 + rng.gauss(0, 0.001), 5)
            if model != "fire_small":  # no BatchNorm: a little worse
                r["val_top1"] -= 0.01
                r["test_top1"] -= 0.01
            if failures and overrides == "model.sr=1.0" and s == 0:
                r.update(status="diverged", error="accuracy at chance after 2 epochs (dead ReLUs)",
                         val_top1=0.1, test_top1=None, test_top5=None, val_top5=0.5, epochs=2)
            if failures and overrides == "model.sr=0.5 model.pct3x3=0.99" and s == 1:
                r.update(status="failed", error="RuntimeError: CUDA out of memory", val_top1=None,
                         val_top5=None, test_top1=None, test_top5=None, epochs=0)
            if latency and r["status"] == "ok":
                r.update(latency_columns(r, rng))
            rows.append(r)

    for overrides, changes in [*((f"model.sr={v}", {"sr": v}) for v in SR_VALUES if sr),
                               *((f"model.sr=0.5 model.pct3x3={v}", {"sr": 0.5, "pct3x3": v})
                                 for v in PCT_VALUES if pct3x3),
                               *((f"model.bypass={v}", {"bypass": v}) for v in BYPASS_KINDS if bypass)]:
        add(overrides, changes)
    if presets:
        for name in PRESETS:
            add(f"model={name}", {}, model=name)
    if failures:
        cfg = base_config(study, "fire_small", max_epochs)
        cfg["model"].update(sr=0.25, pct3x3=0.25, bypass="simple")
        rows.append(record(cfg, 0, f"study={study} model.sr=0.25 model.pct3x3=0.25 "
                                   "model.bypass=simple", status="pruned", accuracy=0.6,
                           error="pruned at epoch 2"))
    return rows


def write_store(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Append ``rows`` to a (new or existing) dse results store at ``path``; returns the path."""
    path = Path(path)
    with ResultsStore(path) as store:
        if rows:
            store.append(rows)
    return path
