"""Compose the project's Hydra config outside ``@hydra.main`` (for dse-model, tests, notebooks)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from omegaconf import DictConfig

from dse.config import register_configs
from dse.paths import conf_dir


def compose(overrides: Sequence[str] = (), return_hydra_config: bool = False) -> DictConfig:
    """The same config ``dse-train`` would see for these overrides, fully typed and validated."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=conf_dir(), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


def grid_points(overrides: Sequence[str]) -> list[list[str]]:
    """Every job ``dse-train -m`` would launch, as its override list, in the basic sweeper's order (a
    key given twice keeps its first place and its last value)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes: dict[str, list[str]] = {}
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        axes[o.get_key_element()] = ([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
                                     if o.is_sweep_override() else [o.input_line])
    return [list(p) for p in itertools.product(*axes.values())]


def grid_sweep(config: DictConfig) -> bool:
    """Whether a multirun's sweeper is Hydra's basic one (a grid: every point known up front)."""
    return "BasicSweeper" in str(config.hydra.sweeper.get("_target_", ""))


def sweep_points(config: DictConfig) -> list[list[str]]:
    """The jobs of a grid multirun's config: ``hydra.sweeper.params``, then the command line."""
    params = [f"{k}={v}" for k, v in (config.hydra.sweeper.get("params") or {}).items()]
    return grid_points([*params, *config.hydra.overrides.task])


def job_configs(config: DictConfig) -> list[DictConfig]:
    """Every job config of a grid multirun, composed as Hydra's launchers do, to check up front."""
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    return [loader.load_sweep_config(config, point) for point in sweep_points(config)]
