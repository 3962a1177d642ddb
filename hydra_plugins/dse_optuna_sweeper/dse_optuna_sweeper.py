"""The Sweeper Hydra instantiates for ``hydra/sweeper=dse_optuna``; Optuna is imported (``_sweep``)
only when a multirun uses it."""

from __future__ import annotations

from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class DseOptunaSweeper(Sweeper):
    """Runs an Optuna study: asks points, launches them as Hydra jobs, tells their results."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context, self.config = hydra_context, config
        self.launcher: Launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.dse_optuna_sweeper._sweep import run_sweep

        return run_sweep(self.settings, arguments, self.hydra_context, self.config, self.launcher)
