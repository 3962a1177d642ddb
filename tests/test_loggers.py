"""The ``logger`` group: each preset builds its Lightning logger per run and seed, the row points at it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from dse.compose import compose
from dse.errors import ConfigError
from dse.paths import conf_dir
from dse.store import ResultsStore, config_hash
from dse.train.loggers import build_logger, log_uri
from dse.validate import LOGGER_EXTRAS, validate, validate_logger
from tests.conftest import run_cli

PRESETS = sorted(p.stem for p in (Path(conf_dir()) / "logger").glob("*.yaml"))
TINY = ("trainer=smoke", "data.subset=300", "trainer.max_epochs=2", "model.base_e=16", "model.incr_e=16")


def test_the_presets_and_the_hash() -> None:
    assert PRESETS == ["csv", "mlflow", "tensorboard", "wandb"]
    assert compose([]).logger._target_ == "lightning.pytorch.loggers.CSVLogger"  # the default
    hashes = {config_hash(compose([f"logger={name}", "jobs_per_gpu=3"])) for name in PRESETS}
    assert hashes == {config_hash(compose([]))} == {config_hash(compose(["~logger"]))}


@pytest.mark.parametrize("name", PRESETS)
def test_each_installed_logger_builds_one_run_per_seed(name: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = compose([f"logger={name}"])
    try:
        validate(cfg)
    except ConfigError as e:
        pytest.skip(str(e))  # the optional extra is not installed here
    for var in ("WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home"))
    run = tmp_path / "run"
    uris = []
    for seed in (3, 4):  # as train_once does: build the seed's logger, start its run, train
        logger = build_logger(cfg, run, seed)
        assert type(logger).__name__ == cfg.logger._target_.rsplit(".", 1)[-1]
        uris.append(log_uri(logger))
    if name in ("csv", "tensorboard"):
        chash = config_hash(cfg)  # each logger run named after the design point it logs
        assert uris == [str(run / name / f"{chash}-seed3"), str(run / name / f"{chash}-seed4")]
    elif name == "mlflow":  # a local store in the run dir; one MLflow run per seed
        assert all(u.startswith(f"sqlite:///{run}/mlflow.db#/experiments/") for u in uris)
    else:  # wandb, offline: a run folder per seed under the run dir
        assert all(Path(u).parent == run / "wandb" and Path(u).is_dir() for u in uris)
        import wandb

        wandb.finish()
    assert len(set(uris)) == 2


def test_a_missing_package_or_target_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    validate_logger(None)  # ~logger: no logger at all
    with pytest.raises(ConfigError, match="^logger._target_: missing"):
        validate_logger({"name": "csv"})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    for cls, (extra, _) in LOGGER_EXTRAS.items():
        with pytest.raises(ConfigError) as e:
            validate_logger({"_target_": f"lightning.pytorch.loggers.{cls}"})
        assert str(e.value).endswith(f"(pip install -e '.[{extra}]')")


def test_tensorboard_sweep_logs_each_epoch_and_spreads_jobs(workdir: Path) -> None:
    """A real dse-train multirun with logger=tensorboard: every job's events hold val/top1 per
    epoch and its row points there; with two (pretend) GPUs visible the jobs are dealt round-robin
    (a CPU build of torch ignores the variable, so this trains on the CPU anywhere)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    res = run_cli("dse-train", "-m", *TINY, "trainer.accelerator=auto", "trainer.test=false",
                  "trainer.chance_epochs=3",  # 2 epochs of a tiny net may sit at chance: not the point
                  "logger=tensorboard", "model.sr=0.25,0.5", cwd=workdir,
                  env={"CUDA_VISIBLE_DEVICES": "5,7"})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    assert "job 0: CUDA_VISIBLE_DEVICES=5" in out and "job 1: CUDA_VISIBLE_DEVICES=7" in out
    with ResultsStore(workdir / "runs/default/results.db") as store:
        rows = store.frame().sort_values("overrides")
    assert list(rows.status) == ["ok", "ok"]
    for num, uri in enumerate(rows.log_uri):
        run = f"{rows.config_hash.iloc[num]}-seed0"  # the hash the logs print and dse-store show lists
        assert uri == str(next(workdir.glob(f"runs/default/multirun/*/{num}")) / "tensorboard" / run)
        events = EventAccumulator(uri)
        events.Reload()
        top1 = events.Scalars("val/top1")
        assert len(top1) == 2 and all(0 <= e.value <= 1 for e in top1)  # one per epoch


def test_quiet_lightning_drops_the_srun_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where Slurm is installed, Lightning hints once per job to prepend ``srun``; dse's tools don't
    print it (its Slurm launcher starts the one task itself), and do print other warnings."""
    import warnings

    from lightning.fabric.plugins.environments import SLURMEnvironment

    from dse.logs import quiet_lightning

    srun = tmp_path / "srun"
    srun.write_text("#!/bin/sh\n")
    srun.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.delenv("SLURM_NTASKS", raising=False)
    monkeypatch.delenv("SLURM_JOB_NAME", raising=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet_lightning()
        SLURMEnvironment._validate_srun_used()
        warnings.warn("still shown", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["still shown"]
