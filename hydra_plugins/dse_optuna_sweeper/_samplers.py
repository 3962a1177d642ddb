"""Optuna samplers from the sweeper's settings (``_target_`` configs, :mod:`dse.sweep.pruners`),
seeded per trial."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dse.sweep.pruners import target_config

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

# hydra.sweeper.sampler.name: the shipped samplers' targets (a _target_ names any other)
SAMPLERS = {"tpe": "optuna.samplers.TPESampler", "nsgaii": "optuna.samplers.NSGAIISampler",
            "gp": "optuna.samplers.GPSampler", "random": "optuna.samplers.RandomSampler",
            "qmc": "optuna.samplers.QMCSampler"}


def sampler_config(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The sampler setting as its checked ``_target_`` config."""
    from hydra_plugins.dse_optuna_sweeper.config import SamplerConf

    return target_config(conf, SAMPLERS, "hydra.sweeper.sampler", vars(SamplerConf()))


def sampler_for(config: Mapping[str, Any], number: int | None) -> optuna.samplers.BaseSampler:
    """The sampler that draws trial ``number``'s point, seeded with ``seed + number``: reproducible
    however the study is resumed, and concurrent workers draw different points (the history is in
    the storage). QMC keeps one seed: its points are one scrambled sequence indexed via the storage."""
    from hydra.utils import instantiate

    seed = config.get("seed")
    if seed is not None and number is not None and config["_target_"] != SAMPLERS["qmc"]:
        config = {**config, "seed": int(seed) + number}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning
        return instantiate(config)


def make_sampler(name: str, seed: int | None, **settings: Any) -> optuna.samplers.BaseSampler:
    """A shipped sampler by name, with this seed and settings (tests, notebooks)."""
    return sampler_for(sampler_config({"name": name, "seed": seed, "scramble": True, **settings}), None)
