"""The sweeper's structured config, ``hydra/sweeper: dse_optuna``: typed keys, so a typo such as
``hydra.sweeper.n_trails=5`` fails at composition. Hydra's plugin scan imports it on every start-up:
no Optuna, and no ``from __future__ import annotations`` (the scanner runs the module before it is in
``sys.modules``, where ``dataclasses`` would look up string annotations)."""

from dataclasses import dataclass, field
from typing import Any, Optional

from hydra.core.config_store import ConfigStore

from dse.storefile import OPTUNA_DB
from dse.sweep.handoff import Handoff


# Samplers and pruners are Hydra `_target_` configs (dse/sweep/pruners.py): `_target_` names the
# Optuna class, or `name` a shipped one; the class gets those of the settings below it takes.
@dataclass
class SamplerConf:
    _target_: Optional[str] = None  # e.g. optuna.samplers.TPESampler; None = the one `name` says
    name: str = "tpe"  # tpe | nsgaii | gp | random | qmc
    seed: Optional[int] = 0  # sampler seed (+ the trial's number: trial n draws with seed + n)
    n_startup_trials: int = 10  # tpe/gp: random trials before the model takes over
    population_size: int = 50  # nsgaii: individuals per generation
    qmc_type: str = "sobol"  # qmc: sobol | halton | lhs
    scramble: bool = True  # qmc: scrambled sequence


@dataclass
class PrunerConf:
    _target_: Optional[str] = None  # e.g. optuna.pruners.MedianPruner; None = the one `name` says
    name: str = "median"  # median | hyperband | threshold | none: one objective; moasha: several
    monitor: Optional[str] = None  # metric the job reports per epoch; None = val/<objective suffix>
    n_startup_trials: int = 5  # median: trials that must finish before any is pruned
    n_warmup_steps: int = 0  # median, threshold: epochs a trial runs before it may be pruned
    interval_steps: int = 1  # median, threshold: epochs between two pruning checks
    lower: Optional[float] = None  # threshold: prune when the metric is below this
    upper: Optional[float] = None  # threshold: prune when the metric is above this
    min_resource: int = 1  # hyperband, moasha: epochs every trial gets
    max_resource: Any = "auto"  # hyperband, moasha: a full trial's epochs (auto: learnt; moasha: max_epochs)
    reduction_factor: int = 3  # hyperband, moasha: keep 1 in reduction_factor trials per rung
    peers: str = "all"  # moasha: rank against all trials at a rung, or only the cheaper ones (all | cheaper)


@dataclass
class DseOptunaSweeperConf:
    _target_: str = "hydra_plugins.dse_optuna_sweeper.dse_optuna_sweeper.DseOptunaSweeper"
    _recursive_: bool = False  # the sampler's and pruner's _target_ are built per trial and per job
    study_name: str = "${study.name}"  # Optuna study name (shared by workers and reruns)
    # SQLAlchemy URL (sqlite:///..., postgresql://...) or journal:PATH (Optuna's JournalStorage)
    # (default: <paths.runs>/<study.name>/optuna.db, quoted by the results store's rule)
    storage: str = f"${{dse_study_sqlite:${{paths.runs}},${{study.name}},{OPTUNA_DB}}}"
    n_trials: int = 20  # finished trials the study should have (all workers, all reruns)
    # stop starting trials once the study's trials have trained this many epochs in all (every seed,
    # pruned trials what they trained; all workers, all reruns); None: n_trials alone
    total_epochs: Optional[int] = None
    n_jobs: int = 1  # trials asked and launched together (set hydra.launcher.n_jobs alike)
    objectives: list[Any] = field(
        default_factory=lambda: [["val_top1", "maximize"], ["size_mib", "minimize"]]
    )  # [[metric, maximize|minimize], ...]: names of values in the job's returned dict
    constraints: list[str] = field(default_factory=list)  # e.g. "size_mib <= 5", "macs <= 2e7"
    sampler: SamplerConf = field(default_factory=SamplerConf)  # how points are proposed
    pruner: PrunerConf = field(default_factory=PrunerConf)  # how bad trials are stopped early
    max_failure_rate: float = 0.5  # stop once failed trials exceed this fraction of n_trials
    max_rejections: int = 1000  # stop after this many over-budget points in a row
    heartbeat_interval: int = 60  # seconds between heartbeats of running trials (RDB storages)
    grace_period: Optional[int] = None  # seconds without heartbeat before a trial is stale
    results_file: str = "optimization_results.yaml"  # written in hydra.sweep.dir at the end
    params: dict[str, str] = field(default_factory=dict)  # search space, Hydra override grammar


# Global, so the option also declares the trial handoff's variables (empty) in hydra.job.env_set:
# each trial then sets them as plain hydra.* overrides, which launchers leave out of their
# "#3 : model.sr=..." lines (an undeclared key would need "++", ~500 characters a line).
ConfigStore.instance().store(
    group="hydra/sweeper",
    name="dse_optuna",
    package="_global_",
    node={"hydra": {"sweeper": DseOptunaSweeperConf,
                    "job": {"env_set": Handoff.declared_env()}}},
    provider="dse_optuna_sweeper",
)
