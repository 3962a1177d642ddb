"""Every input checked before any storage exists, as a one-line :class:`~dse.errors.ConfigError`
naming the key: the keys of ``hydra.sweeper``, then job configs composed at the corners of the search
space (a typo, or a value dse-train refuses, fails the sweep at once, not trial by trial)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution

from dse.errors import ConfigError, first_line
from dse.metrics import DIRECTIONS, REGISTRY, SWEEPABLE
from dse.sweep.pruners import SAMPLERS, pruner_spec, target_config
from dse.sweep.storage import StorageSpec, parse_storage
from dse.validate import check_study_name, int_at_least, validate
from hydra_plugins.dse_optuna_sweeper._space import SearchSpace, build_search_space
from hydra_plugins.dse_optuna_sweeper.config import DseOptunaSweeperConf, PrunerConf, SamplerConf

log = logging.getLogger(__name__)

_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*(\S+)\s*$")
Compose = Callable[[list[str]], DictConfig]


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


def as_finite(x: object) -> float:
    """``float(x)``, or NaN when ``x`` is not a number (a bound, a value the job returned)."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


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
        if not math.isfinite(bound := as_finite(num)):
            raise ConfigError(field, f"the bound in {item!r} must be a finite number")
        out.append(Constraint(metric, op, bound))
    return out


def validate_settings(raw: Mapping[str, Any], arguments: Sequence[str]) -> Settings:
    """Check every setting of the sweeper; raises ConfigError naming the first bad key."""
    conf = typed(raw)
    check_study_name(conf.study_name, "hydra.sweeper.study_name")  # the same rule as study.name
    objectives = parse_objectives(conf.objectives)
    constraints = parse_constraints(conf.constraints)
    sampler = target_config(conf.sampler, SAMPLERS, "hydra.sweeper.sampler", vars(SamplerConf()))
    pruner = pruner_spec(conf.pruner, vars(PrunerConf()))
    if sampler["_target_"] == SAMPLERS["tpe"]:  # rejected points and MOASHA's curves: dse.sweep.tpe
        sampler["_target_"] = "dse.sweep.tpe.TPESampler"
    for key in ("n_trials", "total_epochs", "n_jobs", "max_rejections", "heartbeat_interval",
                "grace_period"):
        if getattr(conf, key) is not None:
            int_at_least(getattr(conf, key), 1, f"hydra.sweeper.{key}")
    if not 0.0 <= conf.max_failure_rate <= 1.0:
        raise ConfigError("hydra.sweeper.max_failure_rate", f"must be in [0, 1] (got "
                                                            f"{conf.max_failure_rate!r})")
    if (grace := conf.grace_period) is not None and grace < conf.heartbeat_interval:
        raise ConfigError("hydra.sweeper.grace_period", f"must be >= heartbeat_interval "
                                                        f"({conf.heartbeat_interval}), got {grace}")
    if Path(conf.results_file).name != conf.results_file:
        raise ConfigError("hydra.sweeper.results_file", "must be a file name (it is written "
                                                        "in hydra.sweep.dir)")
    space = build_search_space(conf.params, arguments)
    if not space.params:
        raise ConfigError("hydra.sweeper.params", "searches nothing: give at least one "
                                                  "choice(), range() or interval()")
    return Settings(conf, parse_storage(conf.storage), objectives, constraints, sampler, pruner, space)


def effective_pruner(settings: Settings, compose: Compose) -> dict[str, Any]:
    """The pruner jobs should use: none for several objectives (but MOASHA's) or without a per-epoch
    metric."""
    spec, off = dict(settings.pruner), pruner_spec({"name": "none"})
    if spec["name"] == "none":
        return spec
    if spec["name"] == "moasha":
        return _moasha(settings, spec, compose)
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


def _moasha(settings: Settings, spec: dict[str, Any], compose: Compose) -> dict[str, Any]:
    """MOASHA's spec with ``max_resource`` = ``trainer.max_epochs`` and the first learned objective as
    the value drawn per epoch; refused where it cannot rank (dse.sweep.moasha.vector)."""
    metrics = [REGISTRY[o.metric] for o in settings.objectives]
    if len(metrics) < 2:
        raise ConfigError("hydra.sweeper.pruner.name", "moasha ranks several objectives; for one, "
                                                       "use median or hyperband")
    if bad := [m.name for m in metrics if not (m.per_epoch or m.analytic or m.latency)]:
        raise ConfigError("hydra.sweeper.objectives", f"moasha: {bad[0]} has no per-epoch value "
                                                      "(it is measured after training)")
    if not (learned := [m.key for m in metrics if m.per_epoch]):
        raise ConfigError("hydra.sweeper.objectives", "moasha: no objective is learned per epoch, "
                                                      "so nothing can stop early")
    if spec.get("peers") == "cheaper" and all(m.per_epoch for m in metrics):
        raise ConfigError("hydra.sweeper.pruner.peers", "cheaper compares exact objectives "
                                                        "(size, params, MACs, latency): every one is learned")
    if "trainer.max_epochs" in settings.space.params:
        raise ConfigError("trainer.max_epochs", "moasha needs one max_epochs, not a searched one")
    epochs = int(compose(list(settings.space.fixed)).trainer.max_epochs)
    top = epochs if spec["max_resource"] == "auto" else min(int(spec["max_resource"]), epochs)
    if spec["min_resource"] >= top:
        raise ConfigError("hydra.sweeper.pruner.min_resource", f"must be < trainer.max_epochs "
                                                               f"({top}), got {spec['min_resource']}")
    return {**spec, "max_resource": top, "monitor": spec["monitor"] or learned[0]}


def corner_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Points that together use every choice and both ends of every range once."""
    params = space.params.items()
    n = max([2, *(len(p.distribution.choices) for _, p in params
                  if isinstance(p.distribution, CategoricalDistribution))])
    points = []
    for k in range(n):
        point = {}
        for name, p in params:
            d = p.distribution
            point[name] = (d.choices[k % len(d.choices)] if isinstance(d, CategoricalDistribution)
                           else (d.low if k % 2 == 0 else d.high))
        points.append(point)
    return points


def probe(settings: Settings, compose: Compose) -> None:
    """Raise :class:`ConfigError` for the first corner point that cannot be a dse-train job."""
    for point in corner_points(settings.space):
        overrides = settings.space.overrides(point)
        try:
            job_cfg = compose(overrides)
        except Exception as e:
            raise ConfigError("hydra.sweeper.params", f"cannot compose a job config with "
                                                      f"{' '.join(overrides)}: {first_line(e)}") from None
        _refuse_invalid(settings.space, point, job_cfg, compose)
        _refuse_unmeasured(settings, job_cfg)


def _refuse_unmeasured(settings: Settings, job_cfg: DictConfig) -> None:
    """A latency objective or constraint needs jobs run with ``trainer.latency=true``, else every
    trial would end without the metric."""
    named = [("hydra.sweeper.objectives", o.metric) for o in settings.objectives] + [
        ("hydra.sweeper.constraints", c.metric) for c in settings.constraints]
    for field, metric in named:
        if REGISTRY[metric].latency and not OmegaConf.select(job_cfg, "trainer.latency", default=False):
            raise ConfigError(field, f"{metric} is measured only when jobs run with "
                                     "trainer.latency=true (add it to the overrides)")


def _invalid(job_cfg: DictConfig) -> ConfigError | None:
    """What dse-train would refuse in this job config (None if it would train it)."""
    try:
        validate(job_cfg)
    except ConfigError as e:
        return e
    return None


def _refuse_invalid(space: SearchSpace, point: Mapping[str, Any], job_cfg: DictConfig,
                    compose: Compose) -> None:
    """Raise if one searched value (its field's own first) or the fixed input alone makes the point
    invalid; invalid only as a combination (more pools than a small ``n_fire`` has layers), it is
    left to the trials."""
    error = _invalid(job_cfg)
    if error is None:
        return
    params = space.params
    # the searched keys (or groups) that set the field
    owners = [n for n in params if f"{error.field}.".startswith(n.split("@", 1)[0] + ".")]
    for name in [*owners, None, *(n for n in params if n not in owners)]:
        one = [] if name is None else [params[name].override(point[name])]
        try:
            alone = _invalid(compose([*space.fixed, *one]))
        except Exception:  # the value composes only together with other searched values
            continue
        if alone is None or alone.field != error.field:
            continue
        if name is None:
            raise alone
        detail = alone.message if alone.field == name else str(alone)
        raise ConfigError(name, f"search space value {point[name]!r}: {detail}")
