"""The rest of a user's state across an upgrade: a checkpoint and an Optuna study that the
2026-12-01 release (d2d673e) wrote, and the resume folder of a run an older release lost, keep
working with today's code (tests/fixtures/releases/)."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest

from dse.store import ResultsStore
from dse.store.schema import SCHEMA_VERSION
from tests.conftest import run_cli

RELEASES = Path(__file__).parent / "fixtures" / "releases"
OLD = "r0001_d2d673e"
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_old_checkpoint_compresses_and_exports(workdir: Path) -> None:
    ckpt = Path(shutil.copy(RELEASES / f"{OLD}.last.ckpt", workdir / "last.ckpt"))
    res = run_cli("dse-compress", str(ckpt), "--bits", "6", "--retrain-epochs", "0",
                  "--finetune-epochs", "0", "--out", "comp", "--no-store", cwd=workdir,
                  env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "quantized 6-bit + Huffman" in res.stdout and (workdir / "comp" / "model.json").is_file()
    res = run_cli("dse-export", str(ckpt), "--format", "onnx", "--out", "exp", cwd=workdir,
                  env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (workdir / "exp" / "dense.onnx").is_file()


@pytest.mark.slow
def test_old_optuna_study_resumes_with_todays_sweeper(workdir: Path) -> None:
    study = workdir / "runs" / "pareto"
    study.mkdir(parents=True)
    for name in ("optuna.db", "results.db"):
        shutil.copy(RELEASES / f"{OLD}.pareto.{name}", study / name)
    storage = f"sqlite:///{study / 'optuna.db'}"
    before = optuna.load_study(study_name="pareto", storage=storage).trials
    with ResultsStore(study / "results.db", create=False) as store:
        rows = store.count()
    res = run_cli("dse-train", "-m", "study=pareto", f"hydra.sweeper.n_trials={len(before) + 1}",
                  "data.subset=300", "trainer.max_epochs=1", cwd=workdir, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    after = optuna.load_study(study_name="pareto", storage=storage).trials
    assert len(after) > len(before) and [t.number for t in after] == list(range(len(after)))
    assert [(t.state, t.values, t.params) for t in after[:len(before)]] == [
        (t.state, t.values, t.params) for t in before]
    new = [t for t in after[len(before):] if t.state == optuna.trial.TrialState.COMPLETE]
    assert new, [t.state for t in after]
    with ResultsStore(study / "results.db", create=False) as store:
        assert store.count() == rows + len(new) and store.revision == SCHEMA_VERSION


@pytest.mark.slow
def test_resume_folder_of_a_killed_run_resumes(workdir: Path) -> None:
    """0fc79e8, the first release with resume checkpoints, was killed after epoch 0's."""
    resume = workdir / "runs" / "old" / "resume"
    shutil.copytree(RELEASES / "r0005_0fc79e8.resume", resume)
    [ckpt] = resume.glob("*/seed0/*.ckpt")
    res = run_cli("dse-train", "trainer=smoke", "study.name=old", "model.base_e=16",
                  "model.incr_e=16", "data.subset=2000", "trainer.max_epochs=2",
                  "trainer.checkpoint_every=1", cwd=workdir, env=ONE_THREAD)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming {ckpt.parts[-3]} seed 0 from runs/old/resume/" in res.stdout + res.stderr
    with ResultsStore(workdir / "runs" / "old" / "results.db", create=False) as store:
        [row] = store.frame().to_dict("records")
    assert (row["status"], row["epochs"], row["resumed_from_epoch"]) == ("ok", 2, 1)
    assert row["config_hash"] == ckpt.parts[-3] and not any(resume.iterdir())
