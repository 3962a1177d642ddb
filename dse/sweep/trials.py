"""What a dse_optuna trial's state and user attributes mean: written by the sweeper, read by reports.

Optuna has one FAIL state for several different events, and the budget, the results file and
``dse-report`` must tell them apart, so the sweeper marks each with a user attribute named here:

``error``        the job ran and failed (raised, ``failed``/``diverged``, a bad return): uses budget
``rejected``     a point over a size/MACs budget, refused from its spec before training: no budget
``discarded``    asked over ``n_trials`` by a racing worker and given back at once: never a run
``interrupted``  stopped by Ctrl-C or SIGTERM while running: no budget, a rerun refills it
(none)           failed by the heartbeat check: its worker died (``stale``): no budget

``result`` holds the job's summary (:func:`epochs` reads its cost), ``analytic`` a rejected point's
sizes, ``constraints`` each constraint's value and violation, ``output_dir`` the job's folder; the
study's budgets are its :data:`STUDY_CONSTRAINTS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from optuna.trial import FrozenTrial

ERROR, REJECTED, DISCARDED, INTERRUPTED = "error", "rejected", "discarded", "interrupted"
RESULT, ANALYTIC, CONSTRAINTS, OUTPUT_DIR = "result", "analytic", "constraints", "output_dir"
MARKS = (ERROR, REJECTED, DISCARDED, INTERRUPTED)
# the system attribute Optuna reads a trial's constraint values from, and optuna-dashboard shows
CONSTRAINTS_SYSTEM_ATTR = "constraints"
# the study's user attribute listing its budgets, [{"metric", "op", "bound"}, ...] (charts draw them)
STUDY_CONSTRAINTS = "constraints"
# the kinds of trial a study reports, in the results file's order
KINDS = ("complete", "pruned", "failed", "rejected", "discarded", "interrupted", "stale", "running")
_RUN_STATUS = {"complete": "ok", "interrupted": "failed", "stale": "failed"}  # other kinds: the same


def kind(trial: FrozenTrial) -> str:
    """One of :data:`KINDS` (``waiting`` counts as running)."""
    state = trial.state.name
    if state in ("COMPLETE", "PRUNED"):
        return state.lower()
    if state != "FAIL":
        return "running"
    if ERROR in trial.user_attrs:
        return "failed"
    return next((m for m in MARKS if m in trial.user_attrs), "stale")


def uses_budget(trial: FrozenTrial) -> bool:
    """Running, finished and really failed trials count toward ``n_trials``; a rerun refills the rest."""
    return trial.state.name == "RUNNING" or kind(trial) in ("complete", "pruned", "failed")


def epochs(trial: FrozenTrial) -> int:
    """Epochs the trial trained, every seed together (what ``total_epochs`` counts): its job's summary
    says (``epochs`` x ``seeds`` in a study an earlier dse wrote); a job that ended without one
    (raised, killed, still running) counts the epochs it reported to its pruner."""
    result = _dict(trial.user_attrs.get(RESULT))
    if "epochs_trained" in result:
        return int(result["epochs_trained"])
    if "epochs" in result:
        return int(result["epochs"]) * int(result.get("seeds") or 1)
    return len(trial.intermediate_values)


def run_status(trial: FrozenTrial) -> tuple[str, str | None]:
    """The trial as a run's ``status`` and ``error`` columns (refined by the job's own status)."""
    k = kind(trial)
    status = _RUN_STATUS.get(k, k)
    result = _dict(trial.user_attrs.get(RESULT))
    if status == "failed" and result.get("status") in ("diverged", "pruned"):
        status = result["status"]
    reason = next((trial.user_attrs[m] for m in (ERROR, REJECTED, INTERRUPTED)
                   if m in trial.user_attrs), None)
    return status, None if reason is None else str(reason)


def recorded_values(trial: FrozenTrial) -> dict[str, Any]:
    """The scalar facts stored with a trial: analytic sizes, the job's summary, then flat attributes
    (later ones win), without the marks."""
    attrs = trial.user_attrs
    flat = {k: v for k, v in attrs.items() if not isinstance(v, (dict, list))}
    merged = {**_dict(attrs.get(ANALYTIC)), **_dict(attrs.get(RESULT)), **flat}
    return {k: v for k, v in merged.items() if k not in (*MARKS, "status")
            and (v is None or isinstance(v, (str, int, float, bool)))}


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def budgets(study_attrs: Mapping[str, Any]) -> list[tuple[str, str, float]]:
    """A study's budgets from its user attributes: (metric, ``<=`` or ``>=``, bound) each."""
    raw = study_attrs.get(STUDY_CONSTRAINTS)
    if not isinstance(raw, list):
        return []
    return [(str(c["metric"]), str(c["op"]), float(c["bound"])) for c in raw
            if isinstance(c, Mapping) and {"metric", "op", "bound"} <= set(c)]
