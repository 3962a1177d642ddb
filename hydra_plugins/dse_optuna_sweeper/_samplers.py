"""Optuna samplers from the sweeper's settings: validated before any storage exists, then seeded."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from dse.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

SAMPLERS = ("tpe", "nsgaii", "gp", "random", "qmc")
QMC_TYPES = ("sobol", "halton", "lhs")


def check_sampler(name: str, qmc_type: str = "sobol") -> str:
    """Validate a sampler name before any storage exists; returns it lower-cased."""
    key = str(name).lower()
    if key not in SAMPLERS:
        raise ConfigError("hydra.sweeper.sampler.name",
                          f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if key == "qmc" and str(qmc_type).lower() not in QMC_TYPES:
        raise ConfigError("hydra.sweeper.sampler.qmc_type",
                          f"unknown QMC type {qmc_type!r}; choose one of {', '.join(QMC_TYPES)}")
    return key


def make_sampler(name: str, seed: int | None, *, n_startup_trials: int = 10,
                 population_size: int = 50, qmc_type: str = "sobol",
                 ) -> optuna.samplers.BaseSampler:
    """Build a seeded sampler; constraints reach it through ``Trial.set_constraint``."""
    import optuna

    key = check_sampler(name, qmc_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if key == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
        if key == "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)
        if key == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
        if key == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.QMCSampler(qmc_type=str(qmc_type).lower(), scramble=True,
                                          seed=seed)
