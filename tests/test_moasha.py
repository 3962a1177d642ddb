"""MOASHA's promotion rule (dse.sweep.moasha) on planted points and learning curves."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from dse.sweep.moasha import RUNG_ATTR, MOASHAPruner, crowding, fronts, promoted, rungs
from dse.sweep.pruning import JobTrial

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_rungs_are_min_resource_times_powers_of_eta_below_the_last_epoch() -> None:
    assert rungs(1, 3, 9) == [1, 3]
    assert rungs(2, 2, 16) == [2, 4, 8]
    assert rungs(1, 3, 10) == [1, 3, 9]


def test_fronts_and_crowding_of_planted_points() -> None:
    pts = [(1, 4), (2, 2), (4, 1), (3, 3), (4, 4), (2, 5)]  # minimised
    assert fronts(pts) == [[0, 1, 2], [3, 5], [4]]
    d = crowding(pts, [0, 1, 2])
    assert d[0] == d[2] == math.inf and d[1] == pytest.approx((4 - 1) / 3 + (4 - 1) / 3)


def test_promotion_is_the_top_third_by_front_then_crowding() -> None:
    pts = [(3, 3), (1, 4), (2, 2), (4, 1), (4, 4), (2, 5)]
    assert promoted(0, pts, 3) == (False, 2, 6)  # front 2 of 6: only 2 go on, both from front 1
    assert promoted(0, [(1.5, 1.5), *pts[1:]], 3) == (False, 1, 6)  # front 1, but 4 in it: extremes first
    assert promoted(0, [(0.5, 3), *pts[1:]], 3) == (True, 1, 6)  # an extreme of front 1
    assert promoted(0, [(9, 9)], 3) == (True, 1, 1)  # alone at its rung: goes on, as ASHA's first trials


def _curve(final: float, epoch: int) -> float:
    return final * (1 - math.exp(-epoch / 2))


def run_study(trials: list[tuple[float, float]], eta: int = 3, epochs: int = 9) -> list[int]:
    """Each planted (final accuracy, size) trial trains in turn, reporting as a dse job does
    (:class:`dse.sweep.pruning.JobTrial`); the epochs each one ran."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"],
                                pruner=MOASHAPruner(1, eta, epochs))
    sid, ran = storage.get_study_id_from_name("s"), []
    for final, size in trials:
        trial = study.ask()
        job = JobTrial(study, storage, storage.get_trial_id_from_study_id_trial_number(sid, trial.number))
        for epoch in range(1, epochs + 1):
            acc = _curve(final, epoch)
            trial.set_user_attr(RUNG_ATTR.format(epoch), [acc, size])
            job.report(acc, epoch - 1)
            if job.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, [acc, size])
        ran.append(epoch)
    return ran


def test_a_dominated_curve_stops_at_the_first_rung_and_front_points_never_do() -> None:
    front = [(0.90, 3.0), (0.85, 1.0), (0.80, 0.5)]  # best accuracy at each size
    dominated = [(0.70, 3.5), (0.60, 2.0), (0.75, 1.5), (0.50, 4.0), (0.65, 1.2), (0.55, 0.9)]
    ran = run_study(front + dominated)
    assert ran[:3] == [9, 9, 9]
    assert ran[3:] == [1] * 6
