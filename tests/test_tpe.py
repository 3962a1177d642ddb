"""dse's TPE (dse.sweep.tpe): Optuna's, shown rejected points and MOASHA's pruned curves as its rules
expect; each test runs Optuna's own beside it, which fails where dse's must not."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from dse.sweep.tpe import TPESampler
from dse.sweep.trials import CONSTRAINTS_SYSTEM_ATTR, REJECTED

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _rejections_for_complete_trials(cls: type, seed: int, n: int, limit: int) -> int:
    """Rejections a study of ``x + y`` under the budget ``x + y <= 0.5`` takes to complete ``n``
    trials (stopped at ``limit``), told as the sweeper tells them (FAIL, the ``rejected`` mark, the
    constraint value): the best points lie on the budget's edge, as on study=pareto's."""
    sampler = cls(n_startup_trials=10, seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    rejected = done = 0
    while done < n and rejected < limit:
        trial = study.ask()
        size = trial.suggest_float("x", 0.0, 1.0) + trial.suggest_float("y", 0.0, 1.0)
        if size <= 0.5:
            study.tell(trial, [size, size])
            done += 1
            continue
        trial.set_user_attr(REJECTED, "over budget")
        study._storage.set_trial_system_attr(trial._trial_id, CONSTRAINTS_SYSTEM_ATTR, [size - 0.5])
        study.tell(trial, state=TrialState.FAIL)
        rejected += 1
    return rejected


@pytest.mark.parametrize("seed", [0, 1])
def test_tpe_learns_where_the_budget_ends_from_rejected_points(seed: int) -> None:
    """Optuna's TPE skips FAIL trials, so after its start-up trials it keeps drawing over the budget
    (a study=pareto sweep stopped at max_rejections this way, docs/OPTUNA.md); dse's sees each
    rejection as an infeasible trial and completes the study."""
    assert _rejections_for_complete_trials(optuna.samplers.TPESampler, seed, 30, 300) == 300
    assert _rejections_for_complete_trials(TPESampler, seed, 30, 300) < 100


@pytest.mark.parametrize("sampler", ["optuna", "dse"])
def test_tpe_samples_a_moasha_study_whose_pruned_trials_have_curves(sampler: str) -> None:
    """Optuna's TPE ranks a pruned trial by its last intermediate value under ``study.direction``,
    which a two-objective study refuses once ``n_startup_trials`` have run; MOASHA's trials carry
    curves (for the dashboard), so dse's TPE hides them from the sampler, not from the storage."""
    cls = TPESampler if sampler == "dse" else optuna.samplers.TPESampler
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=cls(n_startup_trials=2, seed=0))
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for x, state in ((0.1, TrialState.COMPLETE), (0.5, TrialState.COMPLETE), (0.9, TrialState.PRUNED)):
        study.add_trial(optuna.trial.create_trial(
            state=state, params={"x": x}, distributions=dist, intermediate_values={0: x, 1: x},
            values=[x, 1 - x] if state == TrialState.COMPLETE else None))
    trial = study.ask()
    if sampler == "optuna":
        with pytest.raises(RuntimeError, match="multi-objective"):
            trial.suggest_float("x", 0.0, 1.0)
        return
    assert 0.0 <= trial.suggest_float("x", 0.0, 1.0) <= 1.0
    assert study.trials[2].intermediate_values == {0: 0.9, 1: 0.9}  # the dashboard's curve is kept
