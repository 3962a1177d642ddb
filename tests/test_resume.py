"""Resume checkpoints: a killed or signalled run, rerun, ends with the numbers it would have had.

Exact equality, not a tolerance: on the CPU with ``trainer.deterministic=true`` a resumed run
repeats the uninterrupted run's arithmetic operation for operation (same weights, optimizer and
schedule state, same batches in the same order, same dropout masks from the restored RNG), so any
difference is a resume bug, not noise.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import lightning as L
import pandas as pd
import pytest
import torch

from dse.compose import compose
from dse.errors import ConfigError
from dse.model import analyze, build_spec
from dse.signals import HeldStops, Terminated, stop_signals
from dse.store import ResultsStore, claims, config_hash
from dse.train.checkpoints import Resume, checkpoints, newest, prune
from dse.train.checks import resume_dir
from dse.train.run import train_once
from dse.validate import validate_trainer as check_settings  # the rules live with every trainer key's
from tests.conftest import BIN, FP32, run_cli

# 1,000 images a split, batch 64: 15 steps an epoch; widths small enough to train in seconds
SMALL = ("trainer=smoke", "data.subset=1000", "model.base_e=32", "model.incr_e=32",
         "trainer.deterministic=true", "trainer.max_epochs=3", "trainer.progress_bar=false", *FP32)
STEPS = 15
METRICS = ("status", "val_top1", "val_top5", "val_loss", "test_top1", "test_top5", "test_loss", "epochs")


def _rows(db: Path) -> pd.DataFrame:
    return ResultsStore(db, create=False).frame().sort_values("seed").reset_index(drop=True)


@pytest.mark.slow
def test_kill_9_mid_run_then_the_same_command_resumes_to_the_same_numbers(tmp_path: Path) -> None:
    args = (*SMALL, "study.seeds=2")
    ref = run_cli("dse-train", *args, "study.name=ref", cwd=tmp_path)
    assert ref.returncode == 0, ref.stderr[-2000:]
    want = _rows(tmp_path / "runs/ref/results.db")

    cmd = [str(BIN / "dse-train"), *args, "study.name=res"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while not (found := list(tmp_path.glob("runs/res/resume/*/seed1/*.ckpt"))):  # seed 1 is training
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no handler, no finally, nothing stored
    proc.communicate(timeout=60)
    folder = found[0].parent
    k = torch.load(newest(folder), weights_only=True)["callbacks"]["ResumeState"]["epoch"]
    assert 1 <= k <= 3
    db = tmp_path / "runs/res/results.db"
    before = _rows(db)
    assert before.seed.tolist() == [0]  # seed 0 done; no row for the half-run
    stale = claims.holder(ResultsStore(db, create=False), folder.parent.name, 1)
    assert stale is not None and stale.pid == proc.pid

    res = run_cli("dse-train", *args, "study.name=res", cwd=tmp_path)  # the same command again
    assert res.returncode == 0, res.stderr[-2000:]
    assert "taking over the stale claim" in res.stdout and "resuming" in res.stdout, res.stdout[-3000:]
    got = _rows(db)
    assert got.seed.tolist() == [0, 1]  # exactly one row per seed
    assert got.run_id[0] == before.run_id[0]  # the finished seed was left alone
    for m in METRICS:
        assert got[m].tolist() == want[m].tolist(), m
    assert pd.isna(got.resumed_from_epoch[0]) and got.resumed_from_epoch[1] == k
    assert want.resumed_from_epoch.isna().all()
    assert not folder.exists() and not folder.parent.exists()  # pruned with the stored row
    assert claims.holder(ResultsStore(db, create=False), folder.parent.name, 1) is None


# ------------------------------------------------------------------------------- in-process
def _train(tmp: Path, study: str, *extra: str, callbacks: tuple = ()) -> tuple[object, dict]:
    cfg = compose([*SMALL, f"paths.runs={tmp / 'runs'}", f"study.name={study}", *extra])
    rec = train_once(cfg, analyze(build_spec(cfg.model), 28), 0, tmp / study, callbacks=callbacks)
    return cfg, rec


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object, dict]:
    """One uninterrupted in-process run, keeping the newest 2 resume checkpoints (train_once
    alone never discards them: the store's row does, in run_point)."""
    tmp = tmp_path_factory.mktemp("reference")
    cfg, rec = _train(tmp, "ref", "trainer.keep_checkpoints=2")
    assert rec["status"] == "ok" and rec["resumed_from_epoch"] is None
    return tmp, cfg, rec


def test_a_real_fit_keeps_the_newest_n_checkpoints(reference) -> None:
    _, cfg, _ = reference
    names = [p.name for p in checkpoints(resume_dir(cfg, 0))]
    assert names == [f"epoch=1-step={2 * STEPS}.ckpt", f"epoch=2-step={3 * STEPS}.ckpt"]


class _SignalAt(L.Callback):
    """Sends ``sig`` to this process as training step (epoch, batch) starts."""

    def __init__(self, sig: int, epoch: int, batch: int) -> None:
        self.sig, self.at = sig, (epoch, batch)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == self.at:
            os.kill(os.getpid(), self.sig)


@pytest.mark.parametrize(("sig", "at", "saved", "resumed_from"), [
    (signal.SIGTERM, (1, 5), f"epoch=1-step={STEPS + 6}.ckpt", 1),  # after that step, mid-epoch
    (signal.SIGUSR1, (1, STEPS - 1), f"epoch=1-step={2 * STEPS}.ckpt", 2),  # last step: epoch end
], ids=["SIGTERM-mid-epoch", "SIGUSR1-last-step"])
def test_a_stop_signal_checkpoints_a_whole_step_and_the_rerun_ends_identical(
        tmp_path: Path, reference, sig: int, at: tuple[int, int], saved: str, resumed_from: int) -> None:
    _, _, want = reference
    with pytest.raises(KeyboardInterrupt), stop_signals():  # as dse-train: it then exits 130
        _train(tmp_path, "sig", callbacks=(_SignalAt(sig, *at),))
    cfg = compose([*SMALL, f"paths.runs={tmp_path / 'runs'}", "study.name=sig"])
    folder = resume_dir(cfg, 0)
    assert [p.name for p in checkpoints(folder)] == [saved]
    _, got = _train(tmp_path, "sig")
    assert {m: got[m] for m in METRICS} == {m: want[m] for m in METRICS}
    assert got["resumed_from_epoch"] == resumed_from
    # ModelCheckpoint keeps the file a run resumed from; prune() removes it as well
    assert [p.name for p in checkpoints(folder)] == [f"epoch=2-step={3 * STEPS}.ckpt"]


def test_prune_keeps_the_newest_n_and_newest_skips_a_cut_file(tmp_path: Path) -> None:
    for name in ("epoch=0-step=15.ckpt", "epoch=1-step=21.ckpt", "epoch=1-step=30.ckpt",
                 "epoch=2-step=45.ckpt", "epoch=2-step=45-v1.ckpt"):
        torch.save({"name": name}, tmp_path / name)
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    (tmp_path / "epoch=9-step=9.txt").write_text("not one either")
    assert [p.name for p in prune(tmp_path, 2)] == [
        "epoch=0-step=15.ckpt", "epoch=1-step=21.ckpt", "epoch=1-step=30.ckpt"]
    assert [p.name for p in checkpoints(tmp_path)] == ["epoch=2-step=45.ckpt", "epoch=2-step=45-v1.ckpt"]
    assert (tmp_path / "notes.txt").exists()
    whole = tmp_path / "epoch=2-step=45-v1.ckpt"
    assert newest(tmp_path) == whole
    (tmp_path / "epoch=3-step=60.ckpt").write_bytes(whole.read_bytes()[:100])  # killed mid-copy
    assert newest(tmp_path) == whole
    assert newest(tmp_path / "missing") is None and prune(tmp_path / "missing", 1) == []


def test_held_stops_wait_for_delivery_and_a_second_signal_acts_at_once() -> None:
    held = HeldStops()
    with pytest.raises(Terminated), stop_signals(), held:
        os.kill(os.getpid(), signal.SIGTERM)  # unarmed: handled at once
        pytest.fail("not stopped")
    held = HeldStops()
    held.armed = True
    with pytest.raises(Terminated), stop_signals(), held:
        os.kill(os.getpid(), signal.SIGTERM)
        assert held.pending == signal.SIGTERM  # noted, training goes on
        os.kill(os.getpid(), signal.SIGTERM)  # a second one does not wait
    assert held.pending is None


def test_settings_do_not_split_a_design_point_and_zero_turns_resume_off() -> None:
    base = compose([])
    assert (base.trainer.checkpoint_every, base.trainer.keep_checkpoints) == (1, 1)
    assert config_hash(compose(["trainer.checkpoint_every=5", "trainer.keep_checkpoints=3"])) \
        == config_hash(base)
    assert Resume.for_run(compose(["trainer.checkpoint_every=0"]), 0, None) is None
    cfg = compose(["study.name=s", "paths.runs=/x", "seed=3"])
    assert resume_dir(cfg, 4) == Path("/x/s/resume") / config_hash(cfg) / "seed4"
    for key, bad, lo in (("checkpoint_every", -1, 0), ("keep_checkpoints", 0, 1)):
        with pytest.raises(ConfigError) as e:
            check_settings(compose([f"trainer.{key}={bad}"]).trainer)
        assert str(e.value) == f"trainer.{key}: must be an integer >= {lo} (got {bad})"
