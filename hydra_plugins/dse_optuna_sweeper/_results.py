"""The study's results: the best feasible trials, ``optimization_results.yaml`` and a printed table.

The Pareto set is Optuna's own ``study.best_trials`` (COMPLETE trials, infeasible ones left out
once any trial has constraints), sorted by objective values so the file reads best first.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse.sweep import trials
from dse.text import table
from hydra_plugins.dse_optuna_sweeper._outcome import jsonable
from hydra_plugins.dse_optuna_sweeper._settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger(__name__)


def best(study: optuna.Study, settings: Settings) -> list[FrozenTrial]:
    """Feasible, non-dominated COMPLETE trials, best first (one trial for a single objective)."""
    signs = [1.0 if o.direction == "minimize" else -1.0 for o in settings.objectives]
    front = sorted(study.best_trials, key=lambda t: (
        [s * v for s, v in zip(signs, t.values, strict=True)], t.number))
    return front[:1] if len(settings.objectives) == 1 else front


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials of each kind (:data:`dse.sweep.trials.KINDS`), every kind listed."""
    seen = Counter(trials.kind(t) for t in study.get_trials(deepcopy=False))
    return {k: seen.get(k, 0) for k in trials.KINDS}


def _entry(t: FrozenTrial, metric_names: list[str]) -> dict[str, Any]:
    out = {"number": t.number, "params": dict(t.params),
           "values": dict(zip(metric_names, t.values, strict=True))}
    if trials.OUTPUT_DIR in t.user_attrs:
        out[trials.OUTPUT_DIR] = t.user_attrs[trials.OUTPUT_DIR]
    return out


def write_results(study: optuna.Study, settings: Settings, sweep_dir: Path) -> Path:
    """Write the results file in the sweep dir and print the best trials; returns the file."""
    import yaml

    front, states = best(study, settings), counts(study)
    names = settings.metric_names
    doc: dict[str, Any] = {
        "study_name": settings.study_name, "storage": settings.storage.display,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in settings.objectives],
        "constraints": [str(c) for c in settings.constraints],
        "n_trials": settings.n_trials, "trials": states,
    }
    if len(settings.objectives) == 1:
        doc["best_params"] = dict(front[0].params) if front else None
        doc["best_value"] = front[0].values[0] if front else None
        doc["best"] = _entry(front[0], names) if front else None
    else:
        doc["pareto"] = [_entry(t, names) for t in front]
    broken = infeasible(study, settings)
    if broken:
        doc["infeasible"] = broken
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / settings.results_file
    path.write_text(yaml.safe_dump(jsonable(doc), sort_keys=False))
    title = "best trial" if len(settings.objectives) == 1 else "Pareto set"
    print(format_table(names, front, states, title) if front
          else none_feasible(title, states, broken))
    log.info("dse_optuna: results in %s", path)
    return path


def infeasible(study: optuna.Study, settings: Settings) -> dict[str, int]:
    """Complete trials that break each constraint (by its text; a trial may break several):
    Optuna keeps them off the Pareto set, so this is where they went."""
    seen: Counter[str] = Counter()
    for t in study.get_trials(deepcopy=False):
        values = t.system_attrs.get(trials.CONSTRAINTS_SYSTEM_ATTR) or []
        if trials.kind(t) == "complete":
            seen.update(str(c) for c, v in zip(settings.constraints, values, strict=False) if v > 0)
    return dict(seen)


def none_feasible(title: str, states: Mapping[str, int], broken: Mapping[str, int]) -> str:
    """The one line that replaces an empty table: why there is no best trial."""
    shown = ", ".join(f"{v} {k}" for k, v in states.items() if v) or "none"
    why = ("no trial is feasible (" + ", ".join(f"{n} broke {c}" for c, n in broken.items()) + ")"
           if broken else "no complete trial")
    return f"{title}: empty, {why}; trials: {shown}"


def format_table(metrics: list[str], front: Sequence[FrozenTrial], states: Mapping[str, int],
                 title: str) -> str:
    """A plain-text table of the best trials: number, objective values, parameters."""
    names = sorted({k for t in front for k in t.params})
    rows = [[str(t.number), *(f"{v:.6g}" for v in t.values), *(_fmt(t.params.get(k)) for k in names)]
            for t in front]
    shown = ", ".join(f"{v} {k}" for k, v in states.items() if v)
    return (f"{title} ({len(front)}; trials: {shown or 'none'})\n"
            + table(["trial", *metrics, *names], rows))


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)
