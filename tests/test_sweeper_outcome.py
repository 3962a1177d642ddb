"""The sweeper's decisions in process: a job's return -> what Optuna is told, and what trials mean.

test_optuna_sweeper.py drives the same code through real Hydra multiruns; here each case is one
call, so every branch of :func:`decide` and of :mod:`dse.sweep.trials` is pinned exactly.
"""

from __future__ import annotations

import math

import pytest

optuna = pytest.importorskip("optuna")

from optuna.trial import TrialState, create_trial  # noqa: E402

from dse.metrics import summarize  # noqa: E402
from dse.sweep import trials  # noqa: E402
from hydra_plugins.dse_optuna_sweeper._outcome import budget_check, decide  # noqa: E402
from hydra_plugins.dse_optuna_sweeper._settings import (  # noqa: E402
    Objective,
    parse_constraints,
)

TWO = [Objective("val_top1", "maximize"), Objective("size_mib", "minimize")]
ONE = TWO[:1]


def _report():
    from dse.compose import compose
    from dse.model import analyze, build_spec

    cfg = compose(["model.base_e=16", "model.incr_e=16"])
    return analyze(build_spec(cfg.model), cfg.data.image_size)


REPORT = _report()
MIB = REPORT.size_bytes_fp32 / 2**20


def _ok(**values):
    row = {"run_id": "r0", "status": "ok", "error": None, "epochs": 2, "val_top1": 0.8, **values}
    return summarize([row], REPORT)


def _returns(value):
    return lambda: value


def _raises(exc):
    def get():
        raise exc
    return get


def test_a_summary_is_told_complete_with_its_values_in_objective_order():
    out = decide(_returns(_ok()), TWO, [], {})
    assert out.state == "complete" and out.fatal is None
    assert out.values == [0.8, MIB]
    kept = out.attrs[trials.RESULT]
    assert kept["status"] == "ok" and kept["params"] == REPORT.params and kept["run_ids"] == ["r0"]
    assert "error" not in kept and "test_top1" not in kept  # None values are not stored
    assert out.note == f"val_top1=0.8 size_mib={MIB:.6g}"


def test_a_raising_job_is_a_failed_trial_and_the_study_goes_on():
    out = decide(_raises(RuntimeError("boom\nsecond line")), TWO, [], {})
    assert (out.state, out.fatal) == ("fail", None)
    assert out.attrs == {trials.ERROR: "RuntimeError: boom"}
    assert isinstance(out.exc, RuntimeError)
    assert decide(_raises(ValueError()), TWO, [], {}).attrs[trials.ERROR] == "ValueError"


def test_pruned_by_exception_or_by_status():
    out = decide(_raises(optuna.TrialPruned("at epoch 2")), ONE, [], {})
    assert (out.state, out.note, out.attrs) == ("pruned", "at epoch 2", {})
    row = {"run_id": "r0", "status": "pruned", "error": "pruned at epoch 1", "epochs": 1}
    out = decide(_returns(summarize([row], REPORT)), ONE, [], {})
    assert out.state == "pruned" and out.attrs[trials.RESULT]["status"] == "pruned"


@pytest.mark.parametrize("status", ["failed", "diverged"])
def test_failed_and_diverged_runs_are_failed_trials_with_the_runs_error(status):
    row = {"run_id": "r0", "status": status, "error": "loss is nan", "epochs": 1}
    out = decide(_returns(summarize([row], REPORT)), TWO, [], {})
    assert (out.state, out.fatal, out.attrs[trials.ERROR]) == ("fail", None, "loss is nan")
    assert out.note == f"{status}: loss is nan"
    assert out.attrs[trials.RESULT]["status"] == status


def test_numbers_odd_types_and_unknown_statuses():
    out = decide(_returns(0.75), ONE, [], {})
    assert (out.state, out.values) == ("complete", [0.75])
    out = decide(_returns(0.75), TWO, [], {})  # a bare number cannot name two objectives
    assert out.state == "fail" and out.fatal.startswith("the job returned no metric 'val_top1'")
    out = decide(_returns([1, 2]), ONE, [], {})
    assert (out.attrs[trials.ERROR], out.fatal) == ("the job returned list, not a dict", None)
    out = decide(_returns({"status": "weird", "val_top1": 1.0}), ONE, [], {})
    assert out.attrs[trials.ERROR] == "the job returned unknown status 'weird'"


def test_a_missing_objective_stops_the_sweep_and_a_nan_one_fails_the_trial():
    out = decide(_returns({k: v for k, v in _ok().items() if k != "size_mib"}), TWO, [], {})
    assert out.state == "fail" and out.fatal == out.attrs[trials.ERROR]
    assert out.fatal.startswith("the job returned no metric 'size_mib' (it returned epochs, ")
    out = decide(_returns(_ok(val_top1=math.nan)), TWO, [], {})
    assert out.state == "fail" and out.fatal is None
    assert out.attrs[trials.ERROR] == "objective val_top1 is None"  # summarize drops NaN seeds


def test_constraints_known_before_training_are_not_told_twice():
    cons = parse_constraints(["size_mib <= 0.001", "val_top1 >= 0.9"])
    analytic = {"size_mib": MIB}
    out = decide(_returns(_ok()), TWO, cons, analytic)
    assert out.state == "complete"
    size_v = (MIB - 0.001) / 0.001
    assert out.violations == pytest.approx([size_v, (0.9 - 0.8) / 0.9])
    assert out.attrs[trials.CONSTRAINTS] == {  # named, so a violation never reads as an accuracy
        "size_mib<=0.001": {"value": MIB, "relative_violation": pytest.approx(size_v),
                            "feasible": False},
        "val_top1>=0.9": {"value": pytest.approx(0.8),
                          "relative_violation": pytest.approx((0.9 - 0.8) / 0.9),
                          "feasible": False}}
    assert out.note == (f"val_top1=0.8 size_mib={MIB:.6g} — infeasible: size_mib={MIB:g} breaks "
                        "size_mib <= 0.001; val_top1=0.8 breaks val_top1 >= 0.9")
    fine = decide(_returns(_ok()), TWO, parse_constraints(["val_top1 >= 0.5"]), analytic)
    assert fine.violations == pytest.approx([-0.6]) and "infeasible" not in fine.note
    out = decide(_returns(_ok()), TWO, parse_constraints(["train_seconds <= 5"]), {})
    assert out.fatal == "the job returned no metric 'train_seconds' for constraint 'train_seconds<=5'"


def test_budget_check_rejects_with_the_broken_bounds_in_words():
    cons = parse_constraints(["params <= 500", "macs <= 1e6"])
    violations, reason = budget_check({"params": 1000, "macs": 50_000}, cons)
    assert violations == pytest.approx({"params<=500": 1.0, "macs<=1e+06": -0.95})
    assert reason == "params=1000 breaks params <= 500"
    assert budget_check({"params": 100, "macs": 5}, cons)[1] is None


def _trial(state, **attrs):
    values = [0.5] if state == TrialState.COMPLETE else None
    return create_trial(state=state, values=values, user_attrs=attrs,
                        params={}, distributions={})


@pytest.mark.parametrize("state, attrs, kind, budget, status", [
    (TrialState.COMPLETE, {}, "complete", True, "ok"),
    (TrialState.PRUNED, {}, "pruned", True, "pruned"),
    (TrialState.RUNNING, {}, "running", True, "running"),
    (TrialState.WAITING, {}, "running", False, "running"),
    (TrialState.FAIL, {"error": "boom"}, "failed", True, "failed"),
    (TrialState.FAIL, {"error": "x", "result": {"status": "diverged"}}, "failed", True, "diverged"),
    (TrialState.FAIL, {"rejected": "params=9 breaks params <= 1"}, "rejected", False, "rejected"),
    (TrialState.FAIL, {"discarded": "n_trials"}, "discarded", False, "discarded"),
    (TrialState.FAIL, {"interrupted": "KeyboardInterrupt"}, "interrupted", False, "failed"),
    (TrialState.FAIL, {}, "stale", False, "failed"),
])
def test_what_a_trial_means(state, attrs, kind, budget, status):
    t = _trial(state, **attrs)
    assert trials.kind(t) == kind and trials.uses_budget(t) is budget
    assert trials.run_status(t)[0] == status


def test_recorded_values_merge_analytic_result_and_flat_attrs():
    t = _trial(TrialState.FAIL, rejected="too big", analytic={"params": 9, "macs": 3},
               result={"params": 10, "status": "ok", "run_ids": ["a"]}, output_dir="/x", note=1)
    assert trials.recorded_values(t) == {"params": 10, "macs": 3, "output_dir": "/x", "note": 1}
    assert trials.run_status(t) == ("rejected", "too big")


def test_a_trials_epochs_are_every_seeds_as_its_summary_or_its_reports_say():
    rows = [{"run_id": f"r{k}", "status": "ok", "error": None, "epochs": e, "val_top1": 0.8}
            for k, e in enumerate((3, 2))]  # two seeds, the second stopped a epoch early
    out = summarize(rows, REPORT)
    assert (out["epochs"], out["epochs_trained"]) == (3, 5)
    assert trials.epochs(_trial(TrialState.COMPLETE, result=out)) == 5
    old = {"status": "ok", "epochs": 4, "seeds": 3}  # a study an earlier dse wrote: no epochs_trained
    assert trials.epochs(_trial(TrialState.COMPLETE, result=old)) == 12
    raised = create_trial(state=TrialState.PRUNED, params={}, distributions={},
                          intermediate_values={0: 0.2, 1: 0.3})  # a job that raised TrialPruned
    assert trials.epochs(raised) == 2
    assert trials.epochs(_trial(TrialState.FAIL, error="boom")) == 0
