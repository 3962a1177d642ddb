"""dse-train -m with the dse_optuna sweeper: real (tiny) trainings on Fashion-MNIST subsets.

Every run here is the command a user types, on networks small enough for 2 CPU cores: the search
space of studies/pareto.yaml narrowed from the command line (the command line wins per key) and
1-epoch trainings on 200-image subsets. Accuracy is near chance and that is fine: these tests check
the plumbing between the sweeper, dse-train, the results store and Optuna's storage.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DSE_TRAIN = BIN / "dse-train"
TINY = ["data.subset=200", "trainer=smoke", "trainer.max_epochs=1", "trainer.test=false",
        "trainer.batch_size=100", "trainer.eval_batch_size=200", "model.stem.channels=8",
        "model.n_fire=4", "model.base_e=choice(8,16)", "model.incr_e=choice(0,8)"]
POOLS = "model.pool_after=[conv1,fire3]"
# MOASHA's studies: 4 epochs on 1000 images, one rung at epoch 2 where the top half go on
MOASHA_SMALL = [*TINY, POOLS, "data.subset=1000", "trainer.max_epochs=4", "trainer.chance_epochs=10",
                "trainer.eval_batch_size=500"]
MOASHA = ["hydra.sweeper.pruner.name=moasha", "hydra.sweeper.pruner.reduction_factor=2",
          "hydra.sweeper.pruner.min_resource=2"]

if not DSE_TRAIN.exists():  # pragma: no cover - only before dse-train is installed
    pytest.skip("dse-train is not installed (pip install -e .)", allow_module_level=True)


def dse_train(cwd: Path, *args: str, background: bool = False, timeout: float = 600
              ) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [str(DSE_TRAIN), "-m", "study=pareto", f"paths.runs={cwd / 'runs'}", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if background:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def load(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd}/runs/{name}/optuna.db")


def store_rows(cwd: Path, name: str) -> list[tuple[int | None, str]]:
    """(trial, status) of every row dse-train appended to the study's results store."""
    with sqlite3.connect(cwd / "runs" / name / "results.db") as db:
        return db.execute("SELECT trial, status FROM runs ORDER BY trial").fetchall()


def by_state(study: optuna.Study, state: str) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state.name == state]


def test_dse_train_finds_the_sweeper(tmp_path):
    p = ok(subprocess.run([str(DSE_TRAIN), "--info", "plugins"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300))
    assert "DseOptunaSweeper" in p.stdout and "JoblibLauncher" in p.stdout
    p = ok(subprocess.run([str(DSE_TRAIN), "study=pareto", "--cfg", "hydra", "--package",
                           "hydra.sweeper"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300))
    assert "hydra_plugins.dse_optuna_sweeper.dse_optuna_sweeper.DseOptunaSweeper" in p.stdout
    assert "model.pct3x3: interval(0.0, 1.0)" in p.stdout


def test_pareto_study_then_resume_with_a_larger_budget(tmp_path):
    ok(dse_train(tmp_path, "hydra.sweeper.n_trials=6", *TINY, POOLS))
    study = load(tmp_path, "pareto")
    assert len(by_state(study, "COMPLETE")) == 6
    assert study.metric_names == ["val_top1", "size_mib"]
    assert study.best_trials, "empty Pareto set"
    (results,) = (tmp_path / "runs" / "pareto" / "multirun").glob("*/optimization_results.yaml")
    assert "pareto:" in results.read_text()
    assert store_rows(tmp_path, "pareto") == [(n, "ok") for n in range(6)]

    ok(dse_train(tmp_path, "hydra.sweeper.n_trials=8", *TINY, POOLS))
    study = load(tmp_path, "pareto")
    assert [t.number for t in by_state(study, "COMPLETE")] == list(range(8))  # exactly 2 more
    assert len(study.trials) == 8
    assert store_rows(tmp_path, "pareto") == [(n, "ok") for n in range(8)]


def test_two_workers_share_one_study(tmp_path):
    args = ["study.name=workers", "hydra.sweeper.n_trials=4", *TINY, POOLS]
    procs = [dse_train(tmp_path, *args, background=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-6000:]
    study = load(tmp_path, "workers")
    complete = sorted(t.number for t in by_state(study, "COMPLETE"))
    assert len(complete) == 4
    assert len({t.number for t in study.trials}) == len(study.trials)
    assert all("discarded" in t.user_attrs for t in study.trials if t.number not in complete)
    assert sorted(n for n, _ in store_rows(tmp_path, "workers")) == complete


def test_a_failing_job_fails_its_trial_and_the_study_goes_on(tmp_path):
    # pools after every Fire module shrink 28x28 inputs to nothing in every trial: refused up front
    p = dse_train(tmp_path, "study.name=collapse", *TINY, "model.pool_after=[conv1,fire2,fire3,fire4,fire5]")
    assert (p.returncode, p.stderr) == (2, "dse-train: error: model.pool_after: spatial size shrinks below "
                                           "1x1 at the max-pool after fire5 (input 28px); remove a pool or "
                                           "use a larger input\n")
    assert not (tmp_path / "runs").exists()
    # a 5-way classifier on 10-class labels raises inside training: each trial trains and fails
    p = ok(dse_train(tmp_path, "study.name=raising", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.max_failure_rate=1", "hydra.sweeper.constraints=[]",
                     *TINY, POOLS, "data=synthetic", "data.synthetic_size=128", "data.val_size=32",
                     "model.num_classes=5"))
    study = load(tmp_path, "raising")
    assert [t.state.name for t in study.trials] == ["FAIL", "FAIL"]  # the 2nd ran after the 1st
    for t in study.trials:
        assert "Target" in t.user_attrs["error"], t.user_attrs
    assert "trials: 2 failed" in p.stdout


def test_the_pruner_stops_a_real_training(tmp_path):
    # a threshold nobody reaches: every trial is pruned at its first validation epoch
    ok(dse_train(tmp_path, "study.name=pruning", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.objectives=[[val_top1,maximize]]", "hydra.sweeper.constraints=[]",
                 "hydra.sweeper.pruner.name=threshold", "hydra.sweeper.pruner.lower=1.01",
                 *TINY, POOLS, "trainer.max_epochs=3"))
    study = load(tmp_path, "pruning")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    for t in study.trials:
        assert list(t.intermediate_values) == [0]  # reported epoch 0, then stopped
    assert store_rows(tmp_path, "pruning") == [(0, "pruned"), (1, "pruned")]


def test_moasha_stops_trials_early_and_keeps_the_fronts_best_point(tmp_path):
    """#28 end to end: 6 trials x 4 epochs, reduction factor 2, one rung at epoch 2, run with and without
    MOASHA on the same sampler seed. Training is deterministic, so a trial both runs finish has the same
    values; the unpruned run's most accurate point must survive pruning."""
    small, moasha = [*MOASHA_SMALL, "hydra.sweeper.n_trials=6"], MOASHA
    for d in ("full", "moasha"):
        (tmp_path / d).mkdir()
    ok(dse_train(tmp_path / "full", *small))
    p = ok(dse_train(tmp_path / "moasha", *small, *moasha))
    full, pruned = load(tmp_path / "full", "pareto"), load(tmp_path / "moasha", "pareto")
    stopped = by_state(pruned, "PRUNED")
    assert stopped, [t.state.name for t in pruned.trials]
    for t in stopped:
        assert list(t.intermediate_values) == [0, 1]  # two epochs, then the rung at epoch 2 stopped it
        assert t.user_attrs["moasha"]["rung"] == 2 and t.user_attrs["moasha"]["pruned"] is True
        assert t.user_attrs["rung_2"][1] == t.user_attrs["analytic"]["size_mib"]  # size is exact
        assert f"trial {t.number} pruned: pruned by MOASHA at rung epoch 2: front " in p.stdout + p.stderr
    rows = dict(store_rows(tmp_path / "moasha", "pareto"))
    assert {n for n, status in rows.items() if status == "pruned"} == {t.number for t in stopped}
    best = max(by_state(full, "COMPLETE"), key=lambda t: t.values[0])
    kept = pruned.trials[best.number]
    assert kept.state.name == "COMPLETE" and kept.values == pytest.approx(best.values)
    assert best.number in {t.number for t in pruned.best_trials}
    assert sum(map(len, (t.intermediate_values for t in pruned.trials))) < 6 * 4


def _runs(cwd: Path, name: str) -> list[tuple]:
    """(trial, status, epochs, error, val_top1 is set) of every row, by trial and seed."""
    with sqlite3.connect(cwd / "runs" / name / "results.db") as db:
        return db.execute("SELECT trial, status, epochs, error, val_top1 IS NOT NULL FROM runs "
                          "ORDER BY trial, seed").fetchall()


def _compared(study: optuna.Study, t: optuna.trial.FrozenTrial) -> int:
    """How many trials had reached epoch 2 when ``t`` got there, with one worker: those numbered up to it."""
    return sum("rung_2" in u.user_attrs for u in study.trials if u.number <= t.number)


def test_moasha_with_two_seeds_stops_both_and_a_resumed_study_ranks_new_trials_against_old(tmp_path):
    """#28 with study.seeds=2 (a point ranks by its first seed's curve, docs/OPTUNA.md): both seeds of a
    pruned point stop at the rung the first stopped at, with its decision, their rows holding the epochs
    that ran; the same command with more n_trials keeps the earlier decisions and ranks the new trials
    against the old ones' rungs; dse-store show says each pruned row's rung and front. TPE models
    every trial after the first two, pruned trials' curves among them (Optuna's own TPE cannot read
    them in a two-objective study)."""
    from dse.store.record import PRUNED_AT

    args = [*MOASHA_SMALL, *MOASHA, "study.seeds=2", "hydra.sweeper.sampler.n_startup_trials=2"]
    ok(dse_train(tmp_path, *args, "hydra.sweeper.n_trials=3"))
    before = [t.user_attrs for t in load(tmp_path, "pareto").trials]
    ok(dse_train(tmp_path, *args, "hydra.sweeper.n_trials=6"))
    study = load(tmp_path, "pareto")
    assert [t.user_attrs for t in study.trials[:3]] == before
    decided = [t for t in study.trials if "moasha" in t.user_attrs]
    assert decided and max(t.number for t in decided) >= 3
    for t in decided:
        assert t.user_attrs["moasha"]["rung"] == 2 and t.user_attrs["moasha"]["of"] == _compared(study, t)
    stopped = by_state(study, "PRUNED")
    assert stopped, [t.state.name for t in study.trials]
    rows = _runs(tmp_path, "pareto")
    for t in by_state(study, "COMPLETE"):
        assert [r[1:] for r in rows if r[0] == t.number] == [("ok", 4, None, 1)] * 2
    for t in stopped:
        why = PRUNED_AT.format(**t.user_attrs["moasha"])
        assert [r[1:] for r in rows if r[0] == t.number] == [("pruned", 2, why, 1)] * 2
        assert list(t.intermediate_values) == [0, 1]
    show = [sys.executable, "-m", "dse.store.cli", "show", str(tmp_path / "runs" / "pareto"),
            "--status", "pruned"]
    out = subprocess.run(show, capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"}).stdout
    for t in stopped:
        d = t.user_attrs["moasha"]
        assert out.count(f" pruned @2 (front {d['rank']}/{d['of']}) ") == 2, out


def test_moasha_under_the_fused_launcher_stops_each_member_alone(tmp_path):
    """#28: batches of 3 trials train as one fused network; at the rung each member is ranked for its
    own trial, a pruned member stops there while the others of its group train on, and every row
    says what its member ran."""
    from dse.store.record import PRUNED_AT

    fused = ["hydra/launcher=dse_fused", "hydra.launcher.mode=fused", "hydra.launcher.max_members=3",
             "hydra.sweeper.n_jobs=3", "hydra.sweeper.n_trials=6"]
    p = ok(dse_train(tmp_path, *MOASHA_SMALL, *MOASHA, *fused))
    assert "fused group of 3" in p.stdout + p.stderr
    study = load(tmp_path, "pareto")
    states = [[t.state.name for t in study.trials[b:b + 3]] for b in (0, 3)]
    assert any({"PRUNED", "COMPLETE"} <= set(batch) for batch in states), states
    rows = _runs(tmp_path, "pareto")
    for t in study.trials:
        assert t.user_attrs["moasha"]["of"] == _compared(study, t)
        want = ("pruned", 2, PRUNED_AT.format(**t.user_attrs["moasha"]), 1) if t.state.name == "PRUNED" \
            else ("ok", 4, None, 1)
        assert [r[1:] for r in rows if r[0] == t.number] == [want]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_moasha_workers_rank_against_each_others_rungs(tmp_path, backend, request):
    """#28: two workers on one storage; a trial's decision counts the other worker's trials at its
    rung (it compares more trials than its own worker had run)."""
    url = request.getfixturevalue("pg_database") if backend == "postgresql" else \
        f"sqlite:///{tmp_path}/runs/workers/optuna.db"
    args = [*MOASHA_SMALL, *MOASHA, "study.name=workers", "hydra.sweeper.n_trials=6",
            *([f"hydra.sweeper.storage={url}"] if backend == "postgresql" else [])]
    procs = [dse_train(tmp_path, *args, background=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-6000:]
    storage = optuna.storages.RDBStorage(url)
    study = optuna.load_study(study_name="workers", storage=storage)
    ran = [{int(n) for got in re.findall(r"launching trial\(s\) ([\d, ]+)", out) for n in got.split(",")}
           for out in outs]
    assert ran[0] and ran[1] and not ran[0] & ran[1], ran
    theirs = [t.user_attrs["moasha"]["of"] - 1 - sum(n < t.number and "rung_2" in study.trials[n].user_attrs
                                                      for n in mine)
              for mine in ran for t in study.trials if t.number in mine and "moasha" in t.user_attrs]
    assert max(theirs) > 0, theirs
    storage.engine.dispose()  # let the fixture drop the database
