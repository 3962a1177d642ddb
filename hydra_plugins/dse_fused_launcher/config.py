"""The launcher's structured config (``hydra/launcher: dse_fused``): a misspelt key fails at
composition. Hydra's plugin scan imports it on every start-up: no torch, dse or ``__future__``
imports (hydra_plugins/dse_optuna_sweeper/config.py says why)."""

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.dse_fused_launcher.dse_fused_launcher.FusedLauncher"
    max_members: int = 16  # most (job, seed) members trained in one fused network
    # auto: fused on a GPU, sequential on a CPU (where fusing gains nothing; docs/BENCHMARKS.md) |
    # fused: always (what the CPU tests check) | sequential: every job on its own, like hydra's basic
    # (the rules: dse.validate.validate_fused_launcher)
    mode: str = "auto"


ConfigStore.instance().store(group="hydra/launcher", name="dse_fused", node=FusedLauncherConf,
                             provider="dse")
