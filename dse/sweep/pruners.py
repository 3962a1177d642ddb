"""Optuna samplers and pruners as Hydra ``_target_`` configs, as hydra-optuna-sweeper's are: checked
before any storage exists; the pruner's travels to every job as JSON (:mod:`dse.sweep.handoff`), and
each trial's sampler is seeded with its number.
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from hydra.utils import instantiate

from dse.errors import ConfigError, first_line
from dse.metrics import REGISTRY
from dse.validate import int_at_least

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

# hydra.sweeper.{sampler,pruner}.name: the shipped classes (a _target_ names any other)
SAMPLERS = {"tpe": "optuna.samplers.TPESampler", "nsgaii": "optuna.samplers.NSGAIISampler",
            "gp": "optuna.samplers.GPSampler", "random": "optuna.samplers.RandomSampler",
            "qmc": "optuna.samplers.QMCSampler"}
PRUNERS = {"median": "optuna.pruners.MedianPruner", "hyperband": "optuna.pruners.HyperbandPruner",
           "threshold": "optuna.pruners.ThresholdPruner", "moasha": "dse.sweep.moasha.MOASHAPruner",
           "none": "optuna.pruners.NopPruner"}
# least values of integer settings that Optuna checks only once it samples or prunes
AT_LEAST = {"seed": 0, "n_startup_trials": 0, "population_size": 2, "n_warmup_steps": 0,
            "interval_steps": 1, "min_resource": 1, "max_resource": 1, "reduction_factor": 2}


def target_config(conf: Mapping[str, Any], names: Mapping[str, str], field: str,
                  shipped: Collection[str]) -> dict[str, Any]:
    """The ``_target_`` config of a sampler or pruner setting (its ``_target_``, else its ``name``'s),
    with those settings the class takes. ``shipped`` keys (the schema's, for every shipped class)
    may go unused; any other must be the class's. Built once here, so a bad value is one line."""
    target = conf.get("_target_")
    if not target:
        name = str(conf.get("name") or "none").lower()
        if name not in names:
            raise ConfigError(f"{field}.name", f"unknown {field.rsplit('.', 1)[-1]} {name!r}; choose "
                                               f"one of {', '.join(names)} (or give a _target_)")
        target = names[name]
    module, _, name = str(target).rpartition(".")
    try:
        takes = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except Exception as e:  # not importable, not a class
        raise ConfigError(f"{field}._target_", first_line(e)) from None
    if unknown := sorted(set(conf) - set(takes) - {"_target_", "name", *shipped}):
        raise ConfigError(f"{field}.{unknown[0]}", f"{target} takes no such argument")
    out = {"_target_": target}
    for key in takes:
        if key in conf:
            value = conf[key]
            out[key] = (int_at_least(value, AT_LEAST[key], f"{field}.{key}")
                        if key in AT_LEAST and value not in (None, "auto") else value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning
            instantiate(out)
    except Exception as e:  # Optuna's own checks (a threshold pruner with no bound), under Hydra's
        raise ConfigError(field, first_line(e.__cause__ or e)) from None
    return out


def sampler_for(config: Mapping[str, Any], number: int | None) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``number``'s point, seeded with ``seed + number``: reproducible
    however the study is resumed, and concurrent workers draw different points (the history is in
    the storage). QMC keeps one seed: its points are one scrambled sequence indexed via the storage."""
    seed = config.get("seed")
    if seed is not None and number is not None and config["_target_"] != SAMPLERS["qmc"]:
        config = {**config, "seed": int(seed) + number}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning
        return instantiate(config)


def _monitor(value: Any) -> str | None:
    """``pruner.monitor`` as a Lightning key: one logged every validation, by key (``val/top1``) or
    name (``val_top1``); None lets the objective decide. Anything else would silently never prune."""
    if value is None:
        return None
    keys = {m.name: m.key for m in REGISTRY.values() if m.per_epoch and m.key}
    key = keys.get(str(value), str(value))  # a name, or a key already
    if key not in keys.values():
        raise ConfigError("hydra.sweeper.pruner.monitor", f"{value!r} is not logged every epoch "
                                                          f"(one of {', '.join(keys.values())})")
    return key


def pruner_spec(conf: Mapping[str, Any], shipped: Collection[str] = ()) -> dict[str, Any]:
    """The pruner setting as the JSON-able ``_target_`` config jobs receive, with its ``monitor``
    and its short name (the target's where it has none; ``shipped``: as for :func:`target_config`)."""
    target = target_config(conf, PRUNERS, "hydra.sweeper.pruner", {"monitor", *shipped})
    name = next((n for n, t in PRUNERS.items() if t == target["_target_"]), target["_target_"])
    return {**target, "name": name, "monitor": _monitor(conf.get("monitor"))}


def make_pruner(spec: Mapping[str, Any] | str | None) -> optuna.pruners.BasePruner:
    """The pruner a :func:`pruner_spec` (or its JSON) describes; empty means no pruning. A spec by
    ``name``, as the sweeper of dse 0.1 handed it to jobs, is read too."""
    if isinstance(spec, str):
        spec = json.loads(spec) if spec.strip() else None
    spec = dict(spec or {"name": "none"})
    if "_target_" not in spec:
        spec = pruner_spec(spec, spec)
    return instantiate({k: v for k, v in spec.items() if k not in ("name", "monitor")})
