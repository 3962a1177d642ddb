"""The Sweeper class Hydra instantiates for ``hydra/sweeper=dse_optuna``.

It only stores its settings: Hydra's plugin scan imports this module on every start-up of every
Hydra app in the environment, so the Optuna machinery (``_sweep``) is imported inside
:meth:`DseOptunaSweeper.sweep`, when a multirun actually uses it.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class DseOptunaSweeper(Sweeper):
    """Runs an Optuna study: asks points, launches them as Hydra jobs, tells their results."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.hydra_context: HydraContext | None = None
        self.config: DictConfig | None = None
        self.launcher: Launcher | None = None
        self.task_function: TaskFunction | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context = hydra_context
        self.config = config
        self.task_function = task_function
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Any:
        from hydra_plugins.dse_optuna_sweeper._sweep import run_sweep

        assert self.hydra_context is not None and self.config is not None
        assert self.launcher is not None
        return run_sweep(self.settings, arguments, self.hydra_context, self.config, self.launcher)
