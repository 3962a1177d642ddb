"""Issue #24's classes of bad input and fault, one fast case or more of each, through the real CLIs.

tests/stress/bad_inputs.py runs every case of the issue and prints the table; these keep each
class from coming back: a checkpoint never runs code, a full run folder still stores the failed
row, a study name never moves the Optuna storage, a bad store or grid point is refused before
Hydra writes, unchecked values and tracebacks become one line, nothing is silently accepted, and
the test Slurm cluster leaves no process behind.
"""

from __future__ import annotations

import os
import pickle
import sqlite3
import subprocess
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from dse.store import ResultsStore, config_hash
from tests.conftest import config_dict, run_cli, save_checkpoint, tree

TINY = ["trainer=smoke", "data.subset=300", "trainer.max_epochs=1", "trainer.progress_bar=false"]


def refused(res: subprocess.CompletedProcess, prog: str, needle: str) -> None:
    """The bad-input contract: exit 2, one line ``prog: error: ...`` naming ``needle``."""
    err = res.stderr.strip().splitlines()
    assert (res.returncode, len(err), res.stdout) == (2, 1, ""), (res.returncode, res.stderr[-3000:])
    assert err[0].startswith(f"{prog}: error: ") and needle in err[0], err


class _Marker:
    """Unpickled, it creates ``path``: what a crafted checkpoint does when loaded as code."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.path}",))


def _crafted(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:  # torch's zip layout around a pickle that runs code
        z.writestr("archive/data.pkl", pickle.dumps({"state_dict": _Marker(marker)}, protocol=2))
        z.writestr("archive/version", "3\n")
    return path


def _resume_folder(workdir: Path, overrides: list[str]) -> Path:
    from dse.compose import compose

    return workdir / "runs/default/resume" / config_hash(compose(overrides)) / "seed0"


# -- 1. checkpoints never run code --------------------------------------------------------------
def test_a_crafted_resume_checkpoint_is_ignored_and_runs_no_code(workdir: Path) -> None:
    marker = workdir / "pwned"
    _crafted(_resume_folder(workdir, TINY) / "epoch=9-step=999.ckpt", marker)
    res = run_cli("dse-train", *TINY, cwd=workdir, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    assert not marker.exists()
    said = res.stdout + res.stderr  # the warning is a log line (Hydra logs to stdout)
    assert "ignoring the checkpoint" in said and "epoch=9-step=999.ckpt" in said
    row = ResultsStore(workdir / "runs/default/results.db").frame().iloc[0]
    assert (row.status, row.epochs, pd.isna(row.resumed_from_epoch)) == ("ok", 1, True)


def test_a_linked_resume_folder_is_refused_before_anything_is_written(workdir: Path,
                                                                     tmp_path_factory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "epoch=0-step=1.ckpt").write_bytes(b"someone else's file")
    folder = _resume_folder(workdir, TINY)
    folder.parent.mkdir(parents=True)
    folder.symlink_to(elsewhere)
    before = tree(workdir)
    res = run_cli("dse-train", *TINY, cwd=workdir)
    refused(res, "dse-train", "paths.runs: ")
    assert "never followed" in res.stderr
    assert tree(workdir) == before
    assert [p.name for p in elsewhere.iterdir()] == ["epoch=0-step=1.ckpt"]


# -- 2. a full run folder: the failed row still reaches the store; checkpoints are whole --------
def test_a_full_run_folder_still_stores_the_failed_row(workdir: Path, tmpfs) -> None:
    runs = tmpfs("runs", size="1m")
    store = workdir / "elsewhere.db"
    res = run_cli("dse-train", *TINY, f"paths.runs={runs}",
                  f"store.url={store}", cwd=workdir)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr[-3000:]
    assert res.stderr.strip().splitlines()[-1].startswith("dse-train: run failed: ")
    assert "No space left on device" in res.stderr
    df = ResultsStore(store).frame()
    assert list(df.status) == ["failed"] and "No space left" in df.iloc[0].error
    partial = [p for p in runs.rglob("*.ckpt")]
    assert partial == [], partial  # no truncated checkpoint under a checkpoint's name


def test_checkpoints_are_written_whole_or_not_at_all(tmpfs) -> None:
    import torch

    from dse.errors import ConfigError
    from dse.train.checkpoints import AtomicCheckpointIO

    disk = tmpfs("disk", size="64k")
    io = AtomicCheckpointIO()
    io.save_checkpoint({"w": torch.zeros(10)}, disk / "small.ckpt")
    with pytest.raises(ConfigError, match="No space left on device"):
        io.save_checkpoint({"w": torch.zeros(100_000)}, disk / "big.ckpt")
    assert sorted(p.name for p in disk.iterdir()) == ["small.ckpt"]
    assert torch.load(disk / "small.ckpt", weights_only=True)["w"].shape == (10,)


# -- 3. a study name never moves the Optuna storage --------------------------------------------
@pytest.mark.parametrize("name", ["..%2F..%2Fprobe-escaped", "ques?tion", "per%41cent"])
def test_the_optuna_storage_is_in_the_study_folder_whatever_its_name(workdir: Path,
                                                                      name: str) -> None:
    from dse.compose import compose
    from dse.sweep.storage import open_storage, parse_storage

    cfg = compose(["study=pareto", f"study.name={name}"], return_hydra_config=True)
    spec = parse_storage(cfg.hydra.sweeper.storage)
    assert spec.path == workdir / "runs" / name / "optuna.db"
    spec.path.parent.mkdir(parents=True)
    open_storage(spec).get_all_studies()
    assert [str(p.relative_to(workdir)) for p in workdir.rglob("*") if p.is_file()] == \
        [f"runs/{name}/optuna.db"]


# -- 4. a bad store.url is refused before Hydra writes ------------------------------------------
def _foreign(d: Path) -> str:
    (d / "notes.db").write_text("not a database\n")
    return "notes.db"


def _other_sqlite(d: Path) -> str:
    with sqlite3.connect(d / "other.db") as db:
        db.execute("CREATE TABLE t (x)")
    return "other.db"


@pytest.mark.parametrize(("url", "needle"), [
    ("garbage", "neither a SQLAlchemy URL"),
    ("bogus://x", "no driver for bogus://x"),
    (_foreign, "is not a dse results store"),
    (_other_sqlite, "is a database but not a dse results store"),
    ("mysql://u@127.0.0.1/db", "no driver for mysql"),
    ("postgresql://u@127.0.0.1:9/db", "cannot open results store"),
    ("sqlite:///:memory:", "in-memory database"),
], ids=["garbage", "bogus", "foreign", "other-sqlite", "mysql", "pg-down", "memory"])
def test_a_bad_store_url_is_one_line_before_hydra_writes(workdir: Path, url, needle: str) -> None:
    if needle == "cannot open results store":
        pytest.importorskip("psycopg")
    url = url(workdir) if callable(url) else url
    before = tree(workdir)
    for grid in ([], ["-m", "model.sr=0.25,0.5"]):
        res = run_cli("dse-train", *grid, *TINY, f"store.url={url}", cwd=workdir)
        refused(res, "dse-train", "store.url: ")
        assert needle in res.stderr
        assert tree(workdir) == before


# -- 5. a grid is validated whole before its first job ------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["model.sr=0.25,-1,0.5"], "model.sr: must be > 0"),
    (["model.sr=0.25,0.5", "trainer.lr=-1"], "trainer.lr: must be > 0"),
    (["model.sr=0.25,0.5", "+foo=1"], "foo: unknown key"),
    (["seed=-1"], "seed: must be an integer >= 0"),
    (["model.sr=0.25", "hydra/launcher=dse_fused", "+hydra.launcher.foo=1"],
     "hydra.launcher.foo: unknown key"),
    (["trainer.compile=false,2"], "trainer.compile: must be true or false (got 2)"),
], ids=["point", "constant", "unknown-key", "seed", "launcher-key", "bool"])
def test_every_grid_point_is_checked_before_the_first_job(workdir: Path, args: list[str],
                                                          needle: str) -> None:
    res = run_cli("dse-train", "-m", *TINY, *args, cwd=workdir)
    refused(res, "dse-train", needle)
    assert tree(workdir) == {}


# -- 6. unchecked values become bad input -------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["seed=-1"], "seed: must be an integer >= 0 (got -1)"),
    (["seed=99999999999"], "seed: must be in [0, 4294967295]"),
    (["data=synthetic", "data.num_classes=1"], "data.num_classes: must be >= 2"),
    (["model.in_channels=5"], "model.in_channels: must equal data.channels (1)"),
    (["model.num_classes=7"], "model.num_classes: fashion_mnist has 10 classes (got 7)"),
    (["logger._target_=no.such.Logger"], "logger._target_: no logger class 'no.such.Logger'"),
    (["+logger.bogus_kw=1"], "logger.bogus_kw: CSVLogger takes no such argument"),
    (["model.base_e=1000000"], "model: needs at least"),
    (["model.n_fire=1000"], "model: needs at least"),
    (["data=synthetic", "data.image_size=100000"], "model: needs at least"),
], ids=["seed-neg", "seed-big", "one-class", "in-channels", "num-classes", "logger-target",
        "logger-kw", "base-e", "n-fire", "image-size"])
def test_values_training_would_fail_on_are_bad_input(workdir: Path, args: list[str],
                                                     needle: str) -> None:
    res = run_cli("dse-train", *TINY, *args, cwd=workdir)
    refused(res, "dse-train", needle)
    assert tree(workdir) == {}


@pytest.mark.parametrize(("args", "needle"), [
    (["data=cifar10", "data.download=false"], "data.root: cifar10 not found under "),
    (["data=imagenet"], "data.root: is required for imagenet"),
], ids=["cifar10-absent", "imagenet-no-root"])
def test_a_missing_dataset_is_bad_input_not_a_failed_row(workdir: Path, tmp_path_factory, args: list[str],
                                                         needle: str) -> None:
    cache = tmp_path_factory.mktemp("cache")  # not the user's ~/.cache/dse, which may hold it
    res = run_cli("dse-train", *TINY, *args, cwd=workdir, env={"DSE_CACHE": str(cache)})
    refused(res, "dse-train", needle)
    assert tree(workdir) == {}


def test_the_memory_bound_is_the_machines_and_a_lower_bound() -> None:
    from dse.compose import compose
    from dse.errors import ConfigError
    from dse.validate import check_fits, model_report, physical_memory, validate

    validate(cfg := compose(TINY))
    report = model_report(cfg)
    check_fits(report, 64)  # fire_small trains anywhere
    need = 16 * report.params + 4 * 64 * report.peak_activation
    check_fits(report, 64, limit=need)
    with pytest.raises(ConfigError, match=r"^model: needs at least"):
        check_fits(report, 64, limit=need - 1)
    assert physical_memory() > 2**30


# -- 7. what ended in a traceback ---------------------------------------------------------------
def test_a_study_name_too_long_for_a_folder_is_one_line(workdir: Path) -> None:
    res = run_cli("dse-train", *TINY, "study.name=" + "n" * 300, cwd=workdir)
    refused(res, "dse-train", "study.name: is 300 bytes long: a folder name has at most 255")
    assert tree(workdir) == {}


@pytest.mark.parametrize("prog", ["dse-compress", "dse-export"])
def test_checkpoint_tools_type_their_overrides(workdir: Path, prog: str) -> None:
    ckpt = save_checkpoint(workdir / "good.ckpt", config_dict(["trainer=smoke"]))
    before = tree(workdir)
    res = run_cli(prog, str(ckpt), "trainer.batch_size=abc", cwd=workdir)
    refused(res, prog, "trainer.batch_size: Value 'abc'")
    assert tree(workdir) == before


@pytest.mark.parametrize(("args", "needle"), [
    (["--only", "packing", "--k", "1", "--timeout", "-1"], "--timeout: must be a number"),
    (["--only", "packing", "--k", "1", "--timeout", "nan"], "--timeout: must be a number"),
    (["--only", ""], "--only: names no section"),
])
def test_dse_bench_refuses_what_it_cannot_run(workdir: Path, args: list[str], needle: str) -> None:
    res = run_cli("dse-bench", *args, cwd=workdir)
    refused(res, "dse-bench", needle)
    assert tree(workdir) == {}


# -- 8. what was silently accepted --------------------------------------------------------------
@pytest.mark.parametrize(("args", "needle"), [
    (["trainer.compile=2"], "trainer.compile: must be true or false (got 2)"),
    (["data.val_size=100000"], "data.val_size: must be in [1, 30000]"),
    (["data=synthetic", "data.synthetic_size=1"], "data.synthetic_size: must be >= 2"),
    (["paths.runs="], "paths.runs: is empty"),
    (["trainer.accelerator=gpu"], "trainer.accelerator: gpu asked for, but no GPU"),
], ids=["compile", "val-size", "synthetic-size", "runs", "gpu"])
def test_values_once_silently_accepted_are_refused(workdir: Path, args: list[str],
                                                   needle: str) -> None:
    if "gpu" in needle:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible here")
    res = run_cli("dse-train", *TINY, *args, cwd=workdir)
    refused(res, "dse-train", needle)
    assert tree(workdir) == {}


def _results_db(d: Path) -> str:
    with ResultsStore(d / "results.db"):
        pass
    return f"hydra.sweeper.storage=sqlite:///{d / 'results.db'}"


@pytest.mark.parametrize(("arg", "needle"), [
    ("hydra.sweeper.pruner.monitor=bogus", "hydra.sweeper.pruner.monitor: 'bogus' is not logged"),
    (_results_db, "is a dse results store, not an Optuna storage"),
    ("hydra.sweeper.sampler._target_=nope.Sampler", "hydra.sweeper.sampler._target_: No module named 'nope'"),
], ids=["monitor", "results-db", "sampler-target"])
def test_the_optuna_sweeper_refuses_what_it_accepted(workdir: Path, arg, needle: str) -> None:
    arg = arg(workdir) if callable(arg) else arg
    before = tree(workdir)
    res = run_cli("dse-train", "-m", "study=pareto", "hydra.sweeper.n_trials=1", arg, cwd=workdir)
    refused(res, "dse-train", needle)
    assert tree(workdir) == before


def test_dse_store_show_refuses_an_empty_status_and_shows_resumed_runs(tmp_path: Path) -> None:
    from tests.test_store import full_record

    store = ResultsStore(tmp_path / "results.db")
    store.append(full_record(0, resumed_from_epoch=3))
    res = run_cli("dse-store", "show", "--status", "", str(store.path), cwd=tmp_path)
    refused(res, "dse-store", "--status: unknown status ''")
    res = run_cli("dse-store", "show", str(store.path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    head, row = res.stdout.splitlines()[-2:]
    assert head.split()[-2:] == ["from", "s"] and row.split()[-2] == "3", res.stdout


# -- 9. the test Slurm cluster leaves nothing behind and listens on 127.0.0.1 only --------------
def test_the_test_cluster_stops_everything_it_started(tmp_path: Path) -> None:
    from tests import slurm

    if reason := slurm.why_not():
        pytest.skip(reason)
    cluster = slurm.start()
    try:
        job = tmp_path / "job.sh"
        job.write_text("#!/bin/bash\nsleep 300\n")
        res = cluster.run("sbatch", "--parsable", f"--output={tmp_path}/out", str(job))
        assert res.returncode == 0, res.stderr
        cluster_ports = {int(line.split("=")[1]) for line in cluster.conf.read_text().splitlines()
                         if line.startswith(("SlurmctldPort=", "SlurmdPort="))}
        slurm._wait(lambda: cluster.run("squeue", "-h", "-t", "R", "-o", "%i").stdout.strip(),
                    60, "the job to run", cluster)
        assert slurm.started_by(cluster)  # the step daemon and the job's sleep, at least
        listening = _listening(cluster_ports)
        assert listening and all(addr == "127.0.0.1" for addr, _ in listening), listening
    finally:
        slurm.stop(cluster)
    assert slurm.started_by(cluster) == []


def _listening(ports: set[int]) -> list[tuple[str, int]]:
    """(address, port) of the IPv4 TCP sockets listening on ``ports`` (/proc/net/tcp)."""
    found = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, port = local.split(":")
        if state == "0A" and int(port, 16) in ports:
            found.append((".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)),
                          int(port, 16)))
    return found
