"""The sweeper's settings: every key of ``hydra.sweeper`` checked before any storage exists.

Bad input must cost a one-line :class:`~dse.errors.ConfigError` naming the key and write nothing,
so nothing here opens a storage or composes a job; :mod:`._probe` then checks the job configs.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from dse.errors import ConfigError
from dse.metrics import DIRECTIONS, REGISTRY, SWEEPABLE
from dse.sweep.pruners import pruner_spec
from dse.sweep.storage import StorageSpec, parse_storage
from dse.validate import check_study_name, int_at_least
from hydra_plugins.dse_optuna_sweeper._samplers import check_sampler
from hydra_plugins.dse_optuna_sweeper._space import SearchSpace, build_search_space
from hydra_plugins.dse_optuna_sweeper.config import DEFAULT_OBJECTIVES

log = logging.getLogger(__name__)

_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # maximize | minimize


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``; Optuna calls a trial feasible when value <= 0."""

    metric: str
    op: str
    bound: float

    @property
    def key(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    @property
    def analytic(self) -> bool:
        """Known from the model spec alone, so checked before training."""
        return REGISTRY[self.metric].analytic

    def violation(self, value: float) -> float:
        """Relative excess over the bound (scale-free, so MACs and MiB can be summed)."""
        excess = value - self.bound if self.op == "<=" else self.bound - value
        return excess / abs(self.bound) if self.bound else excess


@dataclass
class Settings:
    """The sweeper's configuration after validation."""

    study_name: str
    storage: StorageSpec
    n_trials: int
    n_jobs: int
    objectives: list[Objective]
    constraints: list[Constraint]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    max_failure_rate: float
    max_rejections: int
    heartbeat_interval: int | None
    grace_period: int | None
    results_file: str
    space: SearchSpace

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def pre_constraints(self) -> list[Constraint]:
        return [c for c in self.constraints if c.analytic]


def plain(value: Any) -> Any:
    """A plain container for an OmegaConf node (interpolations resolved); anything else as is."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _int(raw: Mapping[str, Any], key: str, lo: int, default: Any = None,
         optional: bool = False) -> int | None:
    value = raw.get(key, default)
    if value is None and optional:
        return None
    return int_at_least(value, lo, f"hydra.sweeper.{key}")


def parse_objectives(raw: Any) -> list[Objective]:
    """``[[metric, direction], ...]`` (a single flat pair is accepted too)."""
    field = "hydra.sweeper.objectives"
    raw = plain(raw)
    if (isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw)
            and raw[1].lower() in DIRECTIONS):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(field, "must be a non-empty list of [metric, maximize|minimize] pairs")
    out: list[Objective] = []
    for item in raw:
        if isinstance(item, str) and ":" in item:
            item = item.split(":", 1)
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ConfigError(field, f"{item!r} is not a [metric, direction] pair")
        metric, direction = str(item[0]).strip(), str(item[1]).strip().lower()
        if direction not in DIRECTIONS:
            raise ConfigError(field, f"direction of {metric!r} must be maximize or minimize "
                                     f"(got {item[1]!r})")
        if metric not in SWEEPABLE:
            raise ConfigError(field, f"the job returns no metric {metric!r}; known metrics: "
                                     f"{', '.join(SWEEPABLE)}")
        if any(o.metric == metric for o in out):
            raise ConfigError(field, f"metric {metric!r} is listed twice")
        out.append(Objective(metric, direction))
    return out


def parse_constraints(raw: Any) -> list[Constraint]:
    """``["size_mib <= 5", "macs <= 2e7"]``: metric, ``<=`` or ``>=``, a number."""
    field = "hydra.sweeper.constraints"
    raw = plain(raw) or []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError(field, "must be a list like ['size_mib <= 5', 'macs <= 2e7']")
    out: list[Constraint] = []
    for item in raw:
        m = _CONSTRAINT_RE.match(str(item))
        if not m:
            raise ConfigError(field, f"{item!r} is not 'metric <= number' or 'metric >= number'")
        metric, op, num = m.groups()
        if metric not in SWEEPABLE:
            raise ConfigError(field, f"unknown metric {metric!r} in {item!r}; known metrics: "
                                     f"{', '.join(SWEEPABLE)}")
        try:
            bound = float(num)
        except ValueError:
            bound = math.nan
        if not math.isfinite(bound):
            raise ConfigError(field, f"the bound in {item!r} must be a finite number")
        out.append(Constraint(metric, op, bound))
    return out


def _sampler(raw: Any) -> dict[str, Any]:
    sampler = dict(plain(raw) or {})
    sampler["name"] = check_sampler(sampler.get("name", "tpe"), sampler.get("qmc_type", "sobol"))
    seed = sampler.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError("hydra.sweeper.sampler.seed", f"must be an integer >= 0 or null "
                                                        f"(got {seed!r})")
    for key, lo in (("n_startup_trials", 0), ("population_size", 2)):
        _int(sampler, key, lo, {"n_startup_trials": 10, "population_size": 50}[key])
    return sampler


def _failure_rate(raw: Mapping[str, Any]) -> float:
    try:
        rate = float(raw.get("max_failure_rate", 0.5))
    except (TypeError, ValueError):
        rate = math.nan
    if not 0.0 <= rate <= 1.0:
        raise ConfigError("hydra.sweeper.max_failure_rate", f"must be in [0, 1] (got "
                                                            f"{raw.get('max_failure_rate')!r})")
    return rate


def _heartbeat(raw: Mapping[str, Any]) -> tuple[int | None, int | None]:
    heartbeat = _int(raw, "heartbeat_interval", 1, 60, optional=True)
    grace = _int(raw, "grace_period", 1, None, optional=True)
    if heartbeat is not None and grace is not None and grace < heartbeat:
        raise ConfigError("hydra.sweeper.grace_period", f"must be >= heartbeat_interval "
                                                        f"({heartbeat}), got {grace}")
    return heartbeat, grace


def validate_settings(raw: Mapping[str, Any], arguments: Sequence[str]) -> Settings:
    """Check every setting of the sweeper; raises ConfigError naming the first bad key."""
    study_name = raw.get("study_name")
    if study_name is None or not str(study_name).strip():
        raise ConfigError("hydra.sweeper.study_name", "is required")
    check_study_name(study_name, "hydra.sweeper.study_name")  # the same rule as study.name
    objectives = parse_objectives(raw.get("objectives", DEFAULT_OBJECTIVES))
    constraints = parse_constraints(raw.get("constraints"))
    sampler = _sampler(raw.get("sampler"))
    pruner = pruner_spec(plain(raw.get("pruner")) or {})
    rate = _failure_rate(raw)
    heartbeat, grace = _heartbeat(raw)
    results_file = str(raw.get("results_file") or "optimization_results.yaml")
    if Path(results_file).name != results_file:
        raise ConfigError("hydra.sweeper.results_file", "must be a file name (it is written "
                                                        "in hydra.sweep.dir)")
    space = build_search_space(plain(raw.get("params")), arguments)
    if not space.params:
        raise ConfigError("hydra.sweeper.params", "searches nothing: give at least one "
                                                  "choice(), range() or interval()")
    return Settings(
        study_name=str(study_name), storage=parse_storage(raw.get("storage")),
        n_trials=_int(raw, "n_trials", 1, 20) or 1, n_jobs=_int(raw, "n_jobs", 1, 1) or 1,
        objectives=objectives, constraints=constraints, sampler=sampler, pruner=pruner,
        max_failure_rate=rate, max_rejections=_int(raw, "max_rejections", 1, 1000) or 1,
        heartbeat_interval=heartbeat, grace_period=grace, results_file=results_file, space=space,
    )


def effective_pruner(settings: Settings) -> dict[str, Any]:
    """The pruner jobs should use: none for several objectives or without a per-epoch metric."""
    spec = dict(settings.pruner)
    if spec["name"] == "none":
        return spec
    if len(settings.objectives) > 1:
        log.info("dse_optuna: pruning is off: Optuna prunes single-objective studies only")
        return {"name": "none", "monitor": None}
    metric = REGISTRY[settings.objectives[0].metric]
    if not spec.get("monitor"):
        if not metric.per_epoch:
            log.warning("dse_optuna: pruning is off: objective %r has no per-epoch validation "
                        "metric; set hydra.sweeper.pruner.monitor", metric.name)
            return {"name": "none", "monitor": None}
        spec["monitor"] = metric.key
    return spec
