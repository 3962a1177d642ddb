"""Every number dse reports about a design point, described once (as pycls keeps ``metrics_info``):
training, the sweepers, compression and the report read them here. No torch, no pandas."""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover - typing only; dse.model imports this module
    from dse.model.spec import ModelReport

MB = 1e6
MIB = 2**20
DIRECTIONS = ("maximize", "minimize")


def to_mb(nbytes: Any) -> Any:
    """Bytes (a number, array or Series) in MB of 10^6 bytes: the paper's unit, shown beside MiB."""
    return nbytes / MB


def to_mib(nbytes: Any) -> Any:
    """Bytes (a number, array or Series) in MiB of 2^20 bytes: the unit objectives default to."""
    return nbytes / MIB


@dataclass(frozen=True)
class Metric:
    """One metric, a ``runs`` column or a key of dse-train's summary, and how to show it (``unit`` "%": a
    fraction shown times 100). ``key``: its Lightning key (``per_epoch``: logged at every validation);
    ``report_attr``: the ModelReport's, before training; ``runtime``/``batch``/``quantile``: dse.latency's."""

    name: str
    direction: Literal["maximize", "minimize"]
    label: str
    unit: str = ""
    fmt: str = ",.0f"
    key: str | None = None
    per_epoch: bool = False
    report_attr: str | None = None
    topk: int | None = None
    runtime: str | None = None
    batch: int | None = None
    quantile: float | None = None

    @property
    def analytic(self) -> bool:
        """Known from the model spec alone, so a budget on it is checked without training."""
        return self.report_attr is not None

    @property
    def latency(self) -> bool:
        """Measured by running the trained network (dse.latency), not by training it."""
        return self.runtime is not None

    @property
    def percent(self) -> bool:
        return self.unit == "%"

    def show(self, value: float | None, missing: str = "-") -> str:
        """``value`` in the metric's unit and format (a fraction as a percentage), no unit sign."""
        return missing if value is None else format(100 * value if self.percent else value, self.fmt)


def _accuracy(split: str, k: int) -> Metric:
    return Metric(f"{split}_top{k}", "maximize", f"{split} top-{k}", "%", ".2f", key=f"{split}/top{k}",
                  per_epoch=split == "val", topk=k)


def _loss(split: str) -> Metric:
    return Metric(f"{split}_loss", "minimize", f"{split} loss", "", ".4f", key=f"{split}/loss",
                  per_epoch=split == "val")


def _latency(runtime: str, batch: int, quantile: float) -> Metric:
    """``latency_ms`` (onnxruntime, batch 1, median), ``torch_latency_b64_p90_ms``, ...: ms a batch."""
    name = "_".join(["torch"] * (runtime == "torch") + ["latency"] + [f"b{batch}"] * (batch != 1)
                    + ["p90"] * (quantile == 0.9) + ["ms"])
    stat = "median" if quantile == 0.5 else f"p{round(100 * quantile)}"
    return Metric(name, "minimize", f"latency ({runtime}, batch {batch}, {stat})", "ms", ".3f",
                  runtime=runtime, batch=batch, quantile=quantile)


_ALL = (
    _accuracy("val", 1), _accuracy("val", 5), _loss("val"),
    _accuracy("test", 1), _accuracy("test", 5), _loss("test"),
    Metric("size_mib", "minimize", "model size", "MiB", ".3f", report_attr="size_mib"),
    Metric("size_mb", "minimize", "model size", "MB", ".3f", report_attr="size_mb"),
    Metric("size_bytes", "minimize", "model size", "bytes", report_attr="size_bytes_fp32"),
    Metric("params", "minimize", "parameters", report_attr="params"),
    Metric("macs", "minimize", "MACs", report_attr="macs"),
    Metric("epochs", "minimize", "epochs"),
    Metric("train_seconds", "minimize", "training time", "s", ".1f"),
    Metric("images_per_s", "maximize", "training throughput", "img/s"),
    # latency_ms (onnxruntime, batch 1, median) is the one to sweep on; the rest are its context
    *(_latency(runtime, batch, q) for runtime in ("onnxruntime", "torch") for batch in (1, 64)
      for q in (0.5, 0.9)),
)
REGISTRY: MappingProxyType[str, Metric] = MappingProxyType({m.name: m for m in _ALL})

# What dse-train's task returns (:func:`summarize`): the names objectives and budgets may use.
SWEEPABLE: tuple[str, ...] = tuple(REGISTRY)
# Known before training (dse.model.analyze): budgets on these reject a point without training it.
ANALYTIC: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.analytic)
# What training measures through Lightning: the record's metric columns.
LOGGED: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.key is not None)
# Measured by running the trained network on the CPU (trainer.latency=true): store columns too.
LATENCY: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.latency)
# Accuracies (fractions, shown in %), validation before test.
ACCURACY: tuple[str, ...] = tuple(n for n, m in REGISTRY.items() if m.percent)
# Means over a point's ok seeds in its summary: the measured metrics, the run's speed, its latency.
AVERAGED = (*LOGGED, "train_seconds", "images_per_s", *LATENCY)


def analytic_values(report: ModelReport) -> dict[str, float]:
    """The :data:`ANALYTIC` metrics of one network (what a budget is checked against)."""
    return {n: getattr(report, REGISTRY[n].report_attr) for n in ANALYTIC}


def summarize(rows: list[dict[str, Any]], report: ModelReport) -> dict[str, Any]:
    """What one design point's training returns to Hydra's sweepers: mean metrics over its ok seeds'
    rows, plus the analytic size (torch-free: a sweeper's stand-in app builds it too)."""
    ok = [r for r in rows if r["status"] == "ok"]
    out: dict[str, Any] = {
        "status": "ok" if ok else rows[0]["status"], "error": None if ok else rows[0].get("error"),
        **analytic_values(report),
        "seeds": len(rows), "run_ids": [r["run_id"] for r in rows],
        "epochs": max((int(r.get("epochs") or 0) for r in rows), default=0),
        "epochs_trained": sum(int(r.get("epochs") or 0) for r in rows),  # its cost: every seed's
    }
    for key in AVERAGED:
        vals = [float(v) for r in ok if (v := r.get(key)) is not None and not math.isnan(float(v))]
        out[key] = sum(vals) / len(vals) if vals else None
    return out
