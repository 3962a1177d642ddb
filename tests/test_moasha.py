"""MOASHA's promotion rule (dse.sweep.moasha) on planted points and learning curves."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.trial import TrialState

from dse.sweep.moasha import (
    RUNG_ATTR,
    MOASHAPruner,
    cheaper_peers,
    crowding,
    fronts,
    promoted,
    rungs,
)
from dse.sweep.pruning import JobTrial

optuna.logging.set_verbosity(optuna.logging.WARNING)
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # metric names


def test_rungs_are_min_resource_times_powers_of_eta_below_the_last_epoch() -> None:
    assert rungs(1, 3, 9) == [1, 3]
    assert rungs(2, 2, 16) == [2, 4, 8]
    assert rungs(1, 3, 10) == [1, 3, 9]
    assert rungs(1, 3, 3) == [1]  # max_resource=3 under 9 epochs: one rung (docs/OPTUNA.md)


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


def run_study(trials: list[tuple[float, float]], eta: int = 3, epochs: int = 9, peers: str = "all"
              ) -> list[int]:
    """Each planted (final accuracy, size) trial trains in turn, reporting as a dse job does
    (:class:`dse.sweep.pruning.JobTrial`); the epochs each one ran."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"],
                                pruner=MOASHAPruner(1, eta, epochs, peers=peers))
    study.set_metric_names(["val_top1", "size_mib"])
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


def test_cheaper_peers_rank_a_trial_only_against_trials_no_larger() -> None:
    """x is on its rung's first front but inside it, where crowding ranks it below the front's two
    ends: all peers stop it at epoch 1. Among the four trials no larger than it, it learns best."""
    larger = [(0.95, 4.0), (0.9, 2.0), (0.85, 1.5), (0.8, 3.0)]
    smaller = [(0.5, 0.5), (0.3, 0.6), (0.2, 0.7)]
    x = (0.55, 1.0)
    assert run_study([*larger, *smaller, x])[-1] == 1
    assert run_study([*larger, *smaller, x], peers="cheaper") == [9, 9, 9, 1, 9, 1, 1, 9]
    assert cheaper_peers([[-0.5, 2.0], [-0.6, 1.0], [-0.4, 3.0], [-0.7, 2.0]], [1]) == [
        [-0.5], [-0.6], [-0.7]]  # itself first, then the no-larger ones, cut to what they learned
    with pytest.raises(ValueError, match="peers must be one of all, cheaper"):
        MOASHAPruner(peers="smaller")


def test_a_jobs_vector_is_learned_per_epoch_analytic_exact_and_latency_by_macs() -> None:
    from dse.sweep.moasha import vector

    analytic = {"size_mib": 1.5, "macs": 2e6}
    assert vector(["val_top1", "size_mib"], {"val/top1": 0.4}, analytic) == [0.4, 1.5]
    assert vector(["val_top1", "latency_ms"], {"val/top1": 0.4}, analytic) == [0.4, 2e6]
    assert vector(["val_top1", "size_mib"], {"val/loss": 2.0}, analytic) is None  # not logged yet


def test_the_job_side_records_each_epochs_vector_and_why_it_stopped() -> None:
    """dse.sweep.pruning.JobTrial under MOASHA: report() writes rung_<epochs> from the logged metrics
    and the trial's analytic sizes; should_prune() records the decision and says it for the row."""
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name="s", directions=["maximize", "minimize"],
                                pruner=MOASHAPruner(1, 2, 4))
    study.set_metric_names(["val_top1", "size_mib"])
    sid = storage.get_study_id_from_name("s")
    ran = []
    for acc, size in [(0.9, 1.0), (0.8, 0.5), (0.3, 2.0)]:  # the last is dominated at epoch 1
        trial = study.ask()
        trial.set_user_attr("analytic", {"size_mib": size, "macs": 1e6})
        job = JobTrial(study, storage, storage.get_trial_id_from_study_id_trial_number(sid, trial.number))
        job.report(acc, 0, {"val/top1": acc})
        ran.append(job.should_prune())
    assert ran == [False, False, True]
    frozen = study.trials[2]
    assert frozen.user_attrs["rung_1"] == [0.3, 2.0] and frozen.intermediate_values == {0: 0.3}
    assert frozen.user_attrs["moasha"] == {"rung": 1, "rank": 2, "of": 3, "top": 1, "pruned": True}
    assert job.reason == ("pruned by MOASHA at rung epoch 1: front 2 of the 3 trials there, "
                          "not in the top 1 that go on")
