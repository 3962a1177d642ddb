"""Job configs composed and validated at the corners of the search space, before any storage exists:
a typo, or a value dse-train refuses (:func:`dse.validate.validate`), fails the sweep in one line,
not trial by trial. Each choice and both ends of every range are used once, not every combination.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dse.errors import ConfigError, first_line
from dse.metrics import REGISTRY
from dse.validate import validate
from hydra_plugins.dse_optuna_sweeper._settings import Settings
from hydra_plugins.dse_optuna_sweeper._space import SearchSpace

Compose = Callable[[list[str]], DictConfig]


def corner_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Points that together use every choice and both ends of every range once."""
    from optuna.distributions import CategoricalDistribution

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
    first = None
    for point in corner_points(settings.space):
        overrides = settings.space.overrides(point)
        try:
            job_cfg = compose(overrides)
        except Exception as e:
            raise ConfigError("hydra.sweeper.params", f"cannot compose a job config with "
                                                      f"{' '.join(overrides)}: {first_line(e)}"
                              ) from None
        _refuse_invalid(settings.space, point, job_cfg, compose)
        _refuse_unmeasured(settings, job_cfg)
        first = first if first is not None else job_cfg
    if settings.pre_constraints:
        try:
            first.model  # noqa: B018 - existence check
            first.data.image_size  # noqa: B018
        except Exception:
            raise ConfigError("hydra.sweeper.constraints",
                              "budgets on params/macs/size need model.* and "
                              "data.image_size in the job config") from None


def _refuse_unmeasured(settings: Settings, job_cfg: DictConfig) -> None:
    """A latency objective or constraint needs jobs run with ``trainer.latency=true``, else every
    trial would end without the metric."""
    named = [("hydra.sweeper.objectives", o.metric) for o in settings.objectives] + [
        ("hydra.sweeper.constraints", c.metric) for c in settings.constraints]
    for field, metric in named:
        if REGISTRY[metric].latency and not OmegaConf.select(job_cfg, "trainer.latency",
                                                             default=False):
            raise ConfigError(field, f"{metric} is measured only when jobs run with "
                                     "trainer.latency=true (add it to the overrides)")


def _invalid(job_cfg: DictConfig) -> ConfigError | None:
    """What dse-train would refuse in this job config (None if it would train it)."""
    try:
        validate(job_cfg)
    except ConfigError as e:
        return e
    return None


def _owns(param: str, field: str) -> bool:
    """Does searching ``param`` (a key or a config group) set ``field``?"""
    key = param.split("@", 1)[0]
    return field == key or field.startswith(f"{key}.")


def _refuse_invalid(space: SearchSpace, point: Mapping[str, Any], job_cfg: DictConfig,
                    compose: Compose) -> None:
    """Raise if this point is invalid because of one searched value or the fixed input; a point
    invalid only as a combination (more pools than a small ``n_fire`` has layers) is left to the
    trials. The field is rechecked with the fixed overrides plus one searched value at a time
    (its owners first) and alone."""
    error = _invalid(job_cfg)
    if error is None:
        return
    params = space.params
    owners = [n for n in params if _owns(n, error.field)]
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
