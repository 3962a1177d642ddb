"""Hydra multirun sweeps: studies compose, points land once, resume after kill -9, joblib, failures."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from lightning.pytorch.callbacks import Callback

from dse.compose import compose
from dse.store import ResultsStore
from dse.store.cli import main as store_main
from dse.train.run import run_point
from tests.conftest import BIN, run_cli

# tiny, real: Fashion-MNIST subsets, narrow Fire nets, one epoch
TINY = ["data.subset=200", "trainer=smoke", "trainer.max_epochs=1", "model.base_e=16", "model.incr_e=16",
        "study.name=t", "hydra.job.chdir=false"]


def rows(workdir, study: str = "t"):
    path = workdir / "runs" / study / "results.db"
    return ResultsStore(path).frame() if path.exists() else None


def test_studies_compose_to_the_papers_grids() -> None:
    cfg = compose(["study=sr_sweep"], return_hydra_config=True)
    assert cfg.study.name == "sr_sweep" and cfg.model.name == "fire_small"
    assert cfg.hydra.sweeper.params["model.sr"] == "0.125,0.25,0.375,0.5,0.625,0.75,0.875,1.0"
    assert (cfg.model.base_e, cfg.model.incr_e, cfg.model.freq, cfg.model.pct3x3) == (128, 128, 2, 0.5)
    cfg = compose(["study=pct3x3_sweep"], return_hydra_config=True)
    assert cfg.model.sr == 0.5 and len(cfg.hydra.sweeper.params["model.pct3x3"].split(",")) == 9
    cfg = compose(["study=bypass"], return_hydra_config=True)
    assert cfg.hydra.sweeper.params["model.bypass"] == "none,simple,complex"
    # the paper's exact setting: command-line groups win over the study's defaults
    cfg = compose(["study=sr_sweep", "model=squeezenet_v1_0", "data=imagenet", "trainer=paper"])
    assert (cfg.model.name, cfg.data.name, cfg.trainer.name, cfg.model.stem.kernel) == (
        "squeezenet_v1_0", "imagenet", "paper", 7)
    cfg = compose(["study=demo"], return_hydra_config=True)  # docs/BENCHMARKS.md picked this recipe
    assert (cfg.data.subset, cfg.study.seeds, cfg.trainer.name) == (4000, 2, "demo")
    assert (cfg.trainer.max_epochs, cfg.trainer.batch_size, cfg.trainer.optimizer, cfg.trainer.lr,
            cfg.trainer.schedule) == (1, 32, "adamw", 1e-3, "onecycle")
    assert cfg.hydra.sweeper.params["model.sr"] == "0.125,0.25,0.375,0.5,0.75"


def test_slurm_launcher_composes() -> None:
    cfg = compose(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "store.url=postgresql://db/dse"],
                  return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.gpus_per_node, launcher.array_parallelism) == ("gpu", 1, 64)
    assert cfg.store.url == "postgresql://db/dse"


def test_three_points_then_rerun_trains_nothing(workdir) -> None:
    args = ["-m", *TINY, "model.sr=0.125,0.25,0.5"]
    res = run_cli("dse-train", *args, cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    first = rows(workdir)
    assert len(first) == 3 and set(first.status) == {"ok"} and sorted(first.sr) == [0.125, 0.25, 0.5]
    res = run_cli("dse-train", *args, cwd=workdir)
    assert res.returncode == 0
    again = rows(workdir)
    assert len(again) == 3 and list(again.run_id) == list(first.run_id)
    log = res.stdout + res.stderr  # Hydra logs to stdout
    assert log.count("already in the store") == 3 and "seed 0: ok" not in log


def test_stored_results_are_returned_to_the_sweeper(workdir) -> None:
    cfg = compose([t for t in TINY if not t.startswith("hydra")] + ["model.sr=0.25"])
    trained = run_point(cfg, workdir / "out")
    skipped = run_point(cfg, workdir / "out2")
    assert skipped == trained and skipped["status"] == "ok" and skipped["val_top1"] > 0
    assert not (workdir / "out2").exists() and len(rows(workdir)) == 1
    rerun = run_point(compose([*[t for t in TINY if not t.startswith("hydra")], "model.sr=0.25",
                               "study.rerun=true"]), workdir / "out3")
    assert rerun["run_ids"] != trained["run_ids"] and len(rows(workdir)) == 2


def test_a_job_checked_at_its_entry_point_is_not_checked_again(workdir, monkeypatch) -> None:
    """dse-train's task runs check_job once and hands its result down: nothing deeper validates
    the config or works out the device again (#25)."""
    import dse.train.checks
    import dse.train.fused
    import dse.train.run
    import dse.validate

    cfg = compose([t for t in TINY if not t.startswith("hydra")] + ["model.sr=0.25"])
    checked = dse.train.run.check_job(cfg)
    calls: list[str] = []
    for module, name in ((dse.train.checks, "validate"), (dse.train.run, "check_job"),
                         (dse.validate, "validate_trainer"), (dse.train.fused, "device_settings")):
        monkeypatch.setattr(module, name, lambda *args, name=name, **kw: calls.append(name))
    summary = dse.train.run.run_point(cfg, workdir / "out", checked=checked)
    assert summary["status"] == "ok" and summary["params"] == checked.report.params
    assert calls == []


def test_kill_9_mid_sweep_then_resume_has_one_row_per_point(workdir) -> None:
    args = [str(BIN / "dse-train"), "-m", *TINY, "model.sr=0.125,0.25,0.375,0.5", "study.seeds=2"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline:  # wait until some, but not all, rows have landed
        df = rows(workdir)
        if df is not None and 2 <= len(df) < 8:
            break
        assert proc.poll() is None, "sweep ended before it could be killed"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    landed = len(rows(workdir))
    assert 2 <= landed < 8
    res = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-2000:]
    df = rows(workdir)
    assert len(df) == 8 and not df.duplicated(["config_hash", "seed"]).any()
    assert sorted(df.groupby("sr").seed.apply(sorted).tolist()) == [[0, 1]] * 4
    assert (res.stdout + res.stderr).count("already in the store") == landed


def test_joblib_two_processes_land_every_row_once(workdir) -> None:
    res = run_cli("dse-train", "-m", *TINY, "model.sr=0.125,0.25,0.375,0.5", "hydra/launcher=joblib",
                  "hydra.launcher.n_jobs=2", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    df = rows(workdir)
    assert len(df) == 4 and sorted(df.sr) == [0.125, 0.25, 0.375, 0.5] and set(df.status) == {"ok"}
    assert df.run_id.is_unique
    # one progress line per finished point, counted across both worker processes
    done = sorted(int(m) for m in re.findall(r"\[(\d)/4\] ok model\.sr=", res.stdout + res.stderr))
    assert done == [1, 2, 3, 4]


def test_failing_point_is_recorded_and_the_sweep_goes_on(workdir) -> None:
    # a 5-way classifier on 10-class labels raises inside training; the 10-way point trains
    res = run_cli("dse-train", "-m", *TINY, "data=synthetic", "data.synthetic_size=128", "data.val_size=32",
                  "model.num_classes=5,10", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    df = rows(workdir)
    five_way = df.config.str.contains('"num_classes": 5')
    assert len(df) == 2 and dict(zip(five_way, df.status, strict=True)) == {True: "failed", False: "ok"}
    assert "Target" in df[five_way].error.iloc[0]
    log = res.stdout + res.stderr
    assert re.search(r"\[\d/2\] failed model\.num_classes=5 \(\d+s\) · 1 failed", log), log[-3000:]


def test_seeds_give_n_rows_per_point(workdir) -> None:
    res = run_cli("dse-train", "-m", *TINY, "model.sr=0.125,0.25", "study.seeds=3", cwd=workdir)
    assert res.returncode == 0, res.stderr[-2000:]
    df = rows(workdir)
    assert len(df) == 6 and df.groupby("sr").seed.apply(sorted).tolist() == [[0, 1, 2]] * 2
    assert df.groupby("sr").config_hash.nunique().tolist() == [1, 1]


def test_two_sweeps_at_once_train_each_point_once(workdir) -> None:
    args = [str(BIN / "dse-train"), "-m", *TINY, "model.sr=0.25,0.5"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[-2000:] for o in outs]
    df = rows(workdir)
    assert len(df) == 2 and sorted(df.sr) == [0.25, 0.5] and set(df.status) == {"ok"}
    assert not df.duplicated(["config_hash", "seed"]).any()
    log = "".join(outs)
    assert log.count("seed 0: ok") == 2  # each point trained by one of the two sweeps
    assert log.count("already in the store") + log.count("trained meanwhile by") == 2


class _StoreVanishes(Callback):
    """Deletes the store's folder as training ends, as a lost mount or an eager cleanup would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, pl_module) -> None:
        shutil.rmtree(self.folder)


def test_row_the_store_refuses_is_kept_and_imported_once(workdir, caplog, capsys) -> None:
    cfg = compose([t for t in TINY if not t.startswith("hydra")] + ["model.sr=0.25"])
    store_dir, kept = workdir / "runs" / "t", workdir / "out" / "unstored_rows.jsonl"
    with caplog.at_level(logging.INFO, logger="dse.store"):
        result = run_point(cfg, workdir / "out", callbacks=(_StoreVanishes(store_dir),))
    assert result["status"] == "ok" and not store_dir.exists()
    [row] = [json.loads(line) for line in kept.read_text().splitlines()]
    assert row["run_id"] == result["run_ids"][0] and row["val_top1"] == result["val_top1"]
    [warning] = [r.getMessage() for r in caplog.records
                 if r.name == "dse.store" and r.levelno >= logging.WARNING]
    assert warning.endswith(f"; result kept in {kept}; import with "
                            f"`dse-store import {kept} {store_dir / 'results.db'}`"), warning
    (workdir / "bad.jsonl").write_text('{"run_id": "x", "no_such_column": 1}\n')
    with pytest.raises(SystemExit) as exc:
        store_main(["import", "bad.jsonl", "new.db"])
    assert exc.value.code == 2 and not (workdir / "new.db").exists()
    assert capsys.readouterr().err.startswith("dse-store: error: FILE: bad.jsonl line 1 is not a "
                                              "kept dse row")
    for added in (1, 0):  # by run_id: importing twice adds the row once
        store_main(["import", str(kept), str(store_dir / "results.db")])
        assert f"imported {added} of 1 rows" in capsys.readouterr().out
    df = rows(workdir)
    assert df.run_id.tolist() == [row["run_id"]] and df.val_top1.tolist() == [row["val_top1"]]
