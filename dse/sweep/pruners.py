"""The sweep's pruner: validated from the sweeper's settings, rebuilt identically in every job.

A job's pruning callback compares its trial with every other worker's trials in the shared
storage, so it must build exactly the pruner the sweeper was configured with: the settings travel as
the JSON of :func:`pruner_spec` and :func:`make_pruner` turns them back into a pruner, here once.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from dse.errors import ConfigError
from dse.metrics import REGISTRY
from dse.validate import int_at_least

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

PRUNERS = ("median", "hyperband", "threshold", "none")


def _monitor(value: Any) -> str | None:
    """``pruner.monitor``: a metric logged at every validation, by its Lightning key (``val/top1``)
    or registry name (``val_top1``); None lets the objective decide. Anything else would never be
    reported, so the pruner would silently never prune."""
    if value is None:
        return None
    keys = {m.name: m.key for m in REGISTRY.values() if m.per_epoch and m.key}
    if str(value) in keys.values():
        return str(value)
    if str(value) in keys:
        return keys[str(value)]
    raise ConfigError("hydra.sweeper.pruner.monitor", f"{value!r} is not logged every epoch "
                                                      f"(one of {', '.join(keys.values())})")


def pruner_spec(conf: Any) -> dict[str, Any]:
    """Validate pruner settings into the JSON-able dict that jobs receive (dse.sweep.handoff)."""
    get = conf.get if hasattr(conf, "get") else (lambda k, d=None: getattr(conf, k, d))
    name = str(get("name", "median") or "none").lower()
    if name not in PRUNERS:
        raise ConfigError("hydra.sweeper.pruner.name",
                          f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
    spec: dict[str, Any] = {"name": name, "monitor": _monitor(get("monitor", None))}
    if name == "median":
        for key, lo in (("n_startup_trials", 0), ("n_warmup_steps", 0), ("interval_steps", 1)):
            spec[key] = int_at_least(get(key, lo), lo, f"hydra.sweeper.pruner.{key}")
    elif name == "threshold":
        for key in ("n_warmup_steps", "interval_steps"):
            lo = 1 if key == "interval_steps" else 0
            spec[key] = int_at_least(get(key, lo), lo, f"hydra.sweeper.pruner.{key}")
        for key in ("lower", "upper"):
            value = get(key, None)
            try:
                spec[key] = None if value is None else float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"hydra.sweeper.pruner.{key}",
                                  f"must be a number (got {value!r})") from None
        if spec["lower"] is None and spec["upper"] is None:
            raise ConfigError("hydra.sweeper.pruner.lower", "the threshold pruner needs lower "
                                                            "and/or upper")
    elif name == "hyperband":
        spec["min_resource"] = int_at_least(get("min_resource", 1), 1,
                                             "hydra.sweeper.pruner.min_resource")
        max_r = get("max_resource", "auto")
        spec["max_resource"] = ("auto" if str(max_r) == "auto" else
                                int_at_least(max_r, 1, "hydra.sweeper.pruner.max_resource"))
        spec["reduction_factor"] = int_at_least(get("reduction_factor", 3), 2,
                                                 "hydra.sweeper.pruner.reduction_factor")
    return spec


def make_pruner(spec: dict[str, Any] | str | None) -> optuna.pruners.BasePruner:
    """The pruner a :func:`pruner_spec` dict (or its JSON) describes; ``None`` means no pruning."""
    import optuna

    if isinstance(spec, str):
        spec = json.loads(spec) if spec.strip() else None
    if not spec or spec.get("name") in (None, "none"):
        return optuna.pruners.NopPruner()
    if spec["name"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec["n_startup_trials"],
                                           n_warmup_steps=spec["n_warmup_steps"],
                                           interval_steps=spec["interval_steps"])
    if spec["name"] == "threshold":
        return optuna.pruners.ThresholdPruner(lower=spec["lower"], upper=spec["upper"],
                                              n_warmup_steps=spec["n_warmup_steps"],
                                              interval_steps=spec["interval_steps"])
    if spec["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec["min_resource"],
                                              max_resource=spec["max_resource"],
                                              reduction_factor=spec["reduction_factor"])
    raise ValueError(f"unknown pruner {spec['name']!r}")
