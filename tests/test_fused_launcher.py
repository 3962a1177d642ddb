"""``hydra/launcher=dse_fused`` as a user runs it: a grid with seeds, its rerun, an Optuna batch.

The launcher must leave for every job what the basic launcher leaves (job dir, .hydra files, CSV
metrics per seed, store rows with the same config hashes, the summary the sweepers read), so these
check the outputs, not the mechanism; tests/test_fused.py checks the numbers.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from dse.compose import compose
from dse.store import ResultsStore, config_hash
from tests.conftest import run_cli

pytestmark = pytest.mark.slow

SMALL = ["trainer=smoke", "data.subset=256", "model.base_e=16", "model.incr_e=16",
         "model.n_fire=4", "model.pool_after=[conv1,fire3]", "trainer.max_epochs=1",
         "trainer.checkpoint_every=0", "trainer.eval_batch_size=256"]
FUSED = ["hydra/launcher=dse_fused", "hydra.launcher.mode=fused", "hydra.launcher.max_members=3"]


def test_a_grid_with_seeds_trains_in_groups_and_its_rerun_trains_nothing(tmp_path: Path) -> None:
    args = ["-m", *FUSED, *SMALL, "study.name=grid", "study.seeds=2", "model.sr=0.125,0.5"]
    res = run_cli("dse-train", *args, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    out = res.stdout + res.stderr
    assert "fused group of 3: 0/seed0, 0/seed1, 1/seed0" in out and "fused group of 1: 1/seed1" in out
    assert "[2/2] ok model.sr=0.5" in out
    df = ResultsStore(tmp_path / "runs/grid/results.db", create=False).frame()
    assert sorted(zip(df.sr, df.seed, strict=True)) == [(0.125, 0), (0.125, 1), (0.5, 0), (0.5, 1)]
    assert set(df.status) == {"ok"}
    for sr in (0.125, 0.5):  # the hash a separate run of the point has
        want = config_hash(compose([*SMALL, "study.name=grid", f"model.sr={sr}"]))
        assert set(df[df.sr == sr].config_hash) == {want}
    job = next((tmp_path / "runs/grid/multirun").iterdir())
    for j in ("0", "1"):
        assert (job / j / ".hydra/config.yaml").is_file() and (job / j / "dse-train.log").is_file()
        for seed in (0, 1):
            csv = next((job / j / "csv").glob(f"*-seed{seed}/metrics.csv")).read_text().splitlines()
            assert csv[0] == "epoch,step,test/loss,test/top1,test/top5,train/loss,val/loss,val/top1,val/top5"
            assert len(csv) == 4  # val, train loss, test
    assert "fused group of 3" in (job / "0/dse-train.log").read_text()

    again = run_cli("dse-train", *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (again.stdout + again.stderr).count("already in the store") == 4
    assert "fused group" not in again.stdout + again.stderr
    assert len(ResultsStore(tmp_path / "runs/grid/results.db", create=False).frame()) == 4


def test_an_optuna_batch_trains_fused_and_its_members_are_pruned_alone(tmp_path: Path) -> None:
    import optuna

    # a threshold nobody reaches: each member is pruned at its first validation, by its own trial
    res = run_cli("dse-train", "-m", "study=pareto", *FUSED, *SMALL, "study.name=opt",
                  "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
                  "hydra.sweeper.objectives=[[val_top1,maximize]]", "hydra.sweeper.constraints=[]",
                  "hydra.sweeper.pruner.name=threshold", "hydra.sweeper.pruner.lower=1.01",
                  "model.base_e=choice(8,16)", "model.incr_e=choice(0,8)", "trainer.max_epochs=3",
                  cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "fused group of 2" in res.stdout + res.stderr
    study = optuna.load_study(study_name="opt", storage=f"sqlite:///{tmp_path}/runs/opt/optuna.db")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert [list(t.intermediate_values) for t in study.trials] == [[0], [0]]
    with sqlite3.connect(tmp_path / "runs/opt/results.db") as db:
        rows = db.execute("SELECT trial, status FROM runs ORDER BY trial").fetchall()
    assert rows == [(0, "pruned"), (1, "pruned")]


@pytest.mark.parametrize("arg, line", [
    ("hydra.launcher.mode=fast", "hydra.launcher.mode: must be one of auto, fused, sequential "
                                 "(got 'fast')"),
    ("hydra.launcher.max_members=0", "hydra.launcher.max_members: must be an integer >= 1 (got 0)"),
])
def test_bad_launcher_settings_are_one_line_and_exit_2(tmp_path: Path, arg: str, line: str) -> None:
    res = run_cli("dse-train", "-m", *FUSED, arg, *SMALL, cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"dse-train: error: {line}"]
    assert not (tmp_path / "runs").exists()
