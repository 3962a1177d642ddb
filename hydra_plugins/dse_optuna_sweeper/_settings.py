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

from omegaconf import OmegaConf

from dse.errors import ConfigError
from dse.metrics import DIRECTIONS, REGISTRY, SWEEPABLE
from dse.sweep.pruners import pruner_spec
from dse.sweep.storage import StorageSpec, parse_storage
from dse.validate import check_study_name, int_at_least
from hydra_plugins.dse_optuna_sweeper._samplers import sampler_config
from hydra_plugins.dse_optuna_sweeper._space import SearchSpace, build_search_space
from hydra_plugins.dse_optuna_sweeper.config import DseOptunaSweeperConf, PrunerConf

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

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"

    @property
    def key(self) -> str:
        return str(self).replace(" ", "")

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
    """The sweeper's typed config (whose keys read through) and what is parsed from it."""

    conf: DseOptunaSweeperConf
    storage: StorageSpec
    objectives: list[Objective]
    constraints: list[Constraint]
    sampler: dict[str, Any]  # the sampler's checked _target_ config
    pruner: dict[str, Any]  # the pruner's checked _target_ config and monitor (dse.sweep.pruners)
    space: SearchSpace

    def __getattr__(self, key: str) -> Any:
        if key == "conf":  # not set yet (copy, unpickle): no recursion
            raise AttributeError(key)
        return getattr(self.conf, key)

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def pre_constraints(self) -> list[Constraint]:
        return [c for c in self.constraints if c.analytic]


def typed(raw: Mapping[str, Any]) -> DseOptunaSweeperConf:
    """``hydra.sweeper`` (or a plain dict) as its dataclass, which owns every default."""
    plain = {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
             for k, v in raw.items() if k not in ("_target_", "_recursive_")}
    own = {k: plain.pop(k, None) or {} for k in ("sampler", "pruner")}
    conf = OmegaConf.to_object(OmegaConf.merge(DseOptunaSweeperConf, plain))
    for key, given in own.items():  # plain dicts: ``+...pruner.percentile=25`` sets a class's own
        setattr(conf, key, {**vars(getattr(conf, key)), **given})
    return conf


def parse_objectives(raw: Any) -> list[Objective]:
    """``[[metric, direction], ...]`` (a single flat pair is accepted too)."""
    field = "hydra.sweeper.objectives"
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
    raw = raw or []
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


def validate_settings(raw: Mapping[str, Any], arguments: Sequence[str]) -> Settings:
    """Check every setting of the sweeper; raises ConfigError naming the first bad key."""
    conf = typed(raw)
    if not str(conf.study_name).strip():
        raise ConfigError("hydra.sweeper.study_name", "is required")
    check_study_name(conf.study_name, "hydra.sweeper.study_name")  # the same rule as study.name
    objectives = parse_objectives(conf.objectives)
    constraints = parse_constraints(conf.constraints)
    sampler, pruner = sampler_config(conf.sampler), pruner_spec(conf.pruner, vars(PrunerConf()))
    for key, lo in (("n_trials", 1), ("n_jobs", 1), ("max_rejections", 1), ("heartbeat_interval", 1),
                    ("grace_period", 1)):
        if getattr(conf, key) is not None:
            int_at_least(getattr(conf, key), lo, f"hydra.sweeper.{key}")
    if not 0.0 <= conf.max_failure_rate <= 1.0:
        raise ConfigError("hydra.sweeper.max_failure_rate", f"must be in [0, 1] (got "
                                                            f"{conf.max_failure_rate!r})")
    heartbeat, grace = conf.heartbeat_interval, conf.grace_period
    if heartbeat is not None and grace is not None and grace < heartbeat:
        raise ConfigError("hydra.sweeper.grace_period", f"must be >= heartbeat_interval "
                                                        f"({heartbeat}), got {grace}")
    if Path(conf.results_file).name != conf.results_file:
        raise ConfigError("hydra.sweeper.results_file", "must be a file name (it is written "
                                                        "in hydra.sweep.dir)")
    space = build_search_space(conf.params, arguments)
    if not space.params:
        raise ConfigError("hydra.sweeper.params", "searches nothing: give at least one "
                                                  "choice(), range() or interval()")
    return Settings(conf, parse_storage(conf.storage), objectives, constraints, sampler, pruner, space)


def effective_pruner(settings: Settings) -> dict[str, Any]:
    """The pruner jobs should use: none for several objectives or without a per-epoch metric."""
    spec, off = dict(settings.pruner), pruner_spec({"name": "none"})
    if spec["name"] == "none":
        return spec
    if len(settings.objectives) > 1:
        log.info("dse_optuna: pruning is off: Optuna prunes single-objective studies only")
        return off
    metric = REGISTRY[settings.objectives[0].metric]
    if not spec.get("monitor"):
        if not metric.per_epoch:
            log.warning("dse_optuna: pruning is off: objective %r has no per-epoch validation "
                        "metric; set hydra.sweeper.pruner.monitor", metric.name)
            return off
        spec["monitor"] = metric.key
    return spec
