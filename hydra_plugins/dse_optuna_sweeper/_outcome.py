"""A finished job's return turned into what Optuna is told: pure, so it is unit-tested in process.
Anything a Hydra task can do is handled; one trial's failure is recorded and the study goes on, but a
metric the job never returns is ``fatal`` and stops the sweep (every later trial would fail alike).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from omegaconf import OmegaConf

from dse.errors import first_line
from dse.sweep import trials
from hydra_plugins.dse_optuna_sweeper._settings import Constraint, Objective, as_finite


@dataclass
class Outcome:
    """What to tell about one trial: its state, values, user attributes and constraints."""

    state: str  # "complete" | "pruned" | "fail"
    values: list[float] | None = None  # objective values, in the objectives' order (complete)
    attrs: dict[str, Any] = field(default_factory=dict)  # user attributes (dse.sweep.trials)
    fatal: str | None = None  # why the sweep must stop (the same error would repeat)
    note: str = ""  # the log line's text
    exc: BaseException | None = None  # the job's exception, for the log's traceback
    violations: list[float] = field(default_factory=list)  # per constraint, feasible when <= 0


def decide(get_return: Callable[[], Any], objectives: Sequence[Objective],
           constraints: Sequence[Constraint], analytic: Mapping[str, float]) -> Outcome:
    """The outcome of the job whose return ``get_return()`` yields (or raises); ``analytic``: the
    point's spec-derived sizes, for constraints the job does not return."""
    try:
        result = get_return()
    except optuna.TrialPruned as e:
        return Outcome("pruned", note=first_line(str(e)) or "pruned")
    except Exception as e:  # the job raised: a failed trial, the study goes on
        return _failed(first_line(e, typed=True), exc=e)
    if OmegaConf.is_config(result):  # a task may return an OmegaConf node
        result = OmegaConf.to_container(result, resolve=True)
    if isinstance(result, (int, float)) and not isinstance(result, bool):
        result = {objectives[0].metric: result} if len(objectives) == 1 else {}
    if not isinstance(result, Mapping):
        return _failed(f"the job returned {type(result).__name__}, not a dict")
    status = str(result.get("status") or "ok").lower()
    # one attribute, not one per metric: every attribute is a database commit
    kept = {trials.RESULT: jsonable({k: v for k, v in result.items() if k != "error" and v is not None})}
    if status == "pruned":
        return Outcome("pruned", attrs=kept, note=str(result.get("error") or "pruned"))
    if status in ("failed", "diverged"):
        return _failed(str(result.get("error") or status), status, kept)
    if status != "ok":
        return _failed(f"the job returned unknown status {status!r}", attrs=kept)
    return _scored(result, objectives, constraints, analytic, kept)


def _scored(result: Mapping[str, Any], objectives: Sequence[Objective],
            constraints: Sequence[Constraint], analytic: Mapping[str, float],
            attrs: dict[str, Any]) -> Outcome:
    """An ``ok`` return: its objective values and constraint violations, or why it has none."""
    values: list[float] = []
    for o in objectives:
        if o.metric not in result:
            fatal = (f"the job returned no metric {o.metric!r} (it returned "
                     f"{', '.join(sorted(map(str, result)))})")
            return _failed(fatal, attrs=attrs, fatal=True)
        v = as_finite(result[o.metric])
        if not math.isfinite(v):
            return _failed(f"objective {o.metric} is {result[o.metric]!r}", attrs=attrs)
        values.append(v)
    measured: dict[str, float] = {}
    for c in constraints:
        raw = result.get(c.metric, analytic.get(c.metric))
        if raw is None:
            return _failed(f"the job returned no metric {c.metric!r} for constraint {c.key!r}",
                           attrs=attrs, fatal=True)
        measured[c.metric] = as_finite(raw)
        if not math.isfinite(measured[c.metric]):
            return _failed(f"constraint metric {c.metric} is {raw!r}", attrs=attrs)
    violations, broken = budget_check(measured, constraints)
    if constraints:  # value and violation each named: a bare 0.25 beside val_top1>=0.3 reads as accuracy
        attrs = {**attrs, trials.CONSTRAINTS: {c.key: {
            "value": measured[c.metric], "relative_violation": violations[c.key],
            "feasible": violations[c.key] <= 0} for c in constraints}}
    shown = " ".join(f"{o.metric}={v:.6g}" for o, v in zip(objectives, values, strict=True))
    if broken:
        shown += f" — infeasible: {broken}"
    return Outcome("complete", values=values, attrs=attrs, note=shown,
                   violations=[violations[c.key] for c in constraints])


def _failed(error: str, status: str = "failed", attrs: dict[str, Any] | None = None,
            fatal: bool = False, exc: BaseException | None = None) -> Outcome:
    return Outcome("fail", attrs={**(attrs or {}), trials.ERROR: error},
                   fatal=error if fatal else None, note=f"{status}: {error}", exc=exc)


def jsonable(value: Any) -> Any:
    """``value`` if JSON can hold it (what a user attribute must be), else its text."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


def budget_check(values: Mapping[str, float], constraints: Sequence[Constraint]
                 ) -> tuple[dict[str, float], str | None]:
    """Each constraint's violation by ``values`` (per metric), and why they break it (None when
    they fit): ``val_top1=0.224 breaks val_top1 >= 0.3``."""
    violations = {c.key: c.violation(float(values[c.metric])) for c in constraints}
    broken = [f"{c.metric}={values[c.metric]:g} breaks {c}" for c in constraints if violations[c.key] > 0]
    return violations, "; ".join(broken) or None
