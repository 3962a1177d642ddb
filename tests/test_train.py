"""Training on real Fashion-MNIST, the store row it writes, divergence, and bad input."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
import typing

import lightning as L
import pytest
import torch
from lightning.fabric.connector import _PRECISION_INPUT
from omegaconf import OmegaConf

from dse.compose import compose
from dse.data import build_datamodule
from dse.errors import ConfigError
from dse.model import analyze, build_spec
from dse.store import RUN_COLUMNS, ResultsStore, config_hash
from dse.train.divergence import DivergenceMonitor
from dse.train.module import FireClassifier
from dse.validate import PRECISIONS, validate
from tests.conftest import BIN, assert_one_line, restore_sigint, run_cli, tree


def test_fashion_mnist_splits_and_subset() -> None:
    dm = build_datamodule(compose([]).data)
    dm.setup()
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 55000, "val": 5000, "test": 10000}
    assert dm.splits["train"].x.shape[1:] == (1, 28, 28) and dm.splits["train"].x.dtype == torch.uint8
    again = build_datamodule(compose(["seed=7"]).data)  # the split is fixed, whatever the run seed
    again.setup()
    assert torch.equal(again.splits["val"].y, dm.splits["val"].y)
    small = build_datamodule(compose(["data.subset=300"]).data, batch_size=64)
    small.setup()
    assert {k: len(v) for k, v in small.splits.items()} == {"train": 300, "val": 300, "test": 300}
    batches = list(small.train_dataloader())
    assert len(batches) == 4 and all(x.shape == (64, 1, 28, 28) for x, _ in batches)  # drop_last
    x = torch.cat([b[0] for b in small.val_dataloader()])
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2  # normalised


def test_augmentation_keeps_shapes_and_labels() -> None:
    dm = build_datamodule(compose(["data=synthetic", "data.augment=true", "data.flip=true",
                                   "data.synthetic_size=256", "data.val_size=64"]).data, batch_size=32)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and y.shape == (32,)


@pytest.mark.slow
def test_smoke_run_reaches_70_percent_and_writes_the_row(smoke_run) -> None:
    workdir = smoke_run
    df = ResultsStore(workdir / "runs/default/results.db", create=False).frame()
    assert len(df) == 1
    row = df.iloc[0]
    cfg = compose(["trainer=smoke", "data.subset=4000", "trainer.checkpoint=true"])
    rep = analyze(build_spec(cfg.model), 28)
    assert row.status == "ok" and (row.error is None or math.isnan(row.error))
    assert row.test_top1 >= 0.70, row.test_top1
    assert 0 < row.val_top1 <= 1 and 0 < row.test_top5 <= 1 and row.val_top5 >= row.val_top1
    assert row.params == rep.params == 729_418
    assert row.size_bytes == 4 * rep.params and row.macs == rep.macs
    assert (row.study, row.model, row.data, row.trainer) == (
        "default", "fire_small", "fashion_mnist", "smoke")
    assert row.config_hash == config_hash(cfg) and row.seed == 0 and row.epochs == 3
    assert (row.base_e, row.incr_e, row.freq, row.sr, row.pct3x3, row.bypass) == (
        128, 128, 2, 0.125, 0.5, "none")
    assert row.subset == 4000 and row.train_seconds > 0 and row.images_per_s > 0
    assert row.torch_version.startswith(torch.__version__.split("+")[0]) and row.device.startswith("cpu")
    assert json.loads(row.config)["trainer"]["name"] == "smoke"
    assert set(RUN_COLUMNS) <= set(df.columns)
    ckpt = next((workdir / "runs/default/single").glob("*/checkpoints/last.ckpt"))
    state = torch.load(ckpt, weights_only=True, map_location="cpu")
    assert state["hyper_parameters"]["cfg"]["model"]["sr"] == 0.125 and state["run_id"] == row.run_id
    run = f"{row.config_hash}-seed0"  # the logger run is named by the hash the logs print
    metrics = next((workdir / "runs/default/single").glob(f"*/csv/{run}/metrics.csv")).read_text()
    assert "val/top1" in metrics and "train/loss" in metrics


def _fit(module: FireClassifier, cfg, epochs: int) -> DivergenceMonitor:
    monitor = DivergenceMonitor(10, chance_epochs=2, check_every=1)
    trainer = L.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_progress_bar=False,
                        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
                        callbacks=[monitor])
    trainer.fit(module, datamodule=build_datamodule(cfg, batch_size=50, eval_batch_size=200))
    return monitor


def _module(overrides: list[str]):
    cfg = compose(["trainer=smoke", "data.subset=200", *overrides])
    return FireClassifier(OmegaConf.to_container(cfg, resolve=True)), cfg


def test_divergence_fires_on_nan() -> None:
    module, cfg = _module([])
    with torch.no_grad():
        module.model.features.conv1.conv.weight[0, 0, 0, 0] = float("nan")
    monitor = _fit(module, cfg, epochs=3)
    assert monitor.reason is not None and "non-finite" in monitor.reason


def test_divergence_fires_on_dead_network() -> None:
    module, cfg = _module(["model.batch_norm=false"])
    with torch.no_grad():  # every classifier ReLU dead: logits are all 0, gradients all 0
        module.model.classifier.conv10.conv.bias.fill_(-100.0)
    monitor = _fit(module, cfg, epochs=4)
    assert monitor.reason is not None and monitor.reason.startswith("dead network")
    assert module.trainer.current_epoch == 2  # stopped after chance_epochs, not after 4


def test_healthy_run_is_not_flagged() -> None:
    module, cfg = _module(["data.subset=400"])
    assert _fit(module, cfg, epochs=2).reason is None


def test_diverged_run_is_recorded(workdir) -> None:
    res = run_cli("dse-train", "trainer=smoke", "data.subset=200", "model.batch_norm=false",
                  "trainer.optimizer=sgd", "trainer.lr=1e6", "trainer.schedule=constant", cwd=workdir)
    df = ResultsStore(workdir / "runs/default/results.db").frame()
    assert res.returncode == 0 and len(df) == 1
    assert df.iloc[0].status == "diverged" and df.iloc[0].error, df.iloc[0].error


def test_exception_in_training_is_a_failed_row(workdir) -> None:
    # labels up to 9 but a 5-way classifier: cross-entropy raises inside the first training step
    res = run_cli("dse-train", "data=synthetic", "data.synthetic_size=128", "data.val_size=32",
                  "model.num_classes=5",
                  "trainer=smoke", "trainer.max_epochs=1", cwd=workdir)
    assert res.returncode == 1
    lines = res.stderr.splitlines()  # dse's line only: not Hydra's "Error executing job ..." before it
    assert len(lines) == 1 and lines[0].startswith("dse-train: run failed: IndexError: Target"), lines
    df = ResultsStore(workdir / "runs/default/results.db").frame()
    assert list(df.status) == ["failed"] and "Target" in df.iloc[0].error


@pytest.mark.parametrize(("args", "line"), [
    (["data=nope"], "data: no option 'nope' (choose one of cifar10, cifar100, fashion_mnist, imagenet, "
                    "synthetic)"),
    (["model=nope"], "model: no option 'nope' (choose one of fire_small, squeezenet_v1_0, squeezenet_v1_1)"),
    (["data.name=nope"], "data.name: must be one of fashion_mnist, cifar10, cifar100, synthetic, imagenet "
                         "(got 'nope')"),
    (["data=imagenet", "data.root=/nonexistent/imagenet"],
     "data.root: no such directory '/nonexistent/imagenet'"),
    (["data.subset=0"], "data.subset: must be a positive integer or null (got 0)"),
    (["trainer.nonexistent=1"], "Could not override 'trainer.nonexistent'. trainer.nonexistent: Key "
                                "'nonexistent' not in 'TrainerConfig'"),
    (["trainer.optimizer=rmsprop"], "trainer.optimizer: must be one of sgd, adamw (got 'rmsprop')"),
    (["trainer.precision=bogus"], "trainer.precision: must be one of auto, 32-true, 32, bf16-mixed, "
                                  "16-mixed, bf16-true, 16-true, 64-true (got 'bogus')"),
    (["model.sr=0"], "model.sr: must be > 0 (paper range (0, 1]) (got 0.0)"),
    (["+model.extra=1"], "model.extra: unknown key (not in the schema, dse/config.py)"),
    (["study.name=./escape/x"], "study.name: './escape/x' is not usable as a folder name (one name, no '/')"),
    (["study.name=../escape"], "study.name: '../escape' is not usable as a folder name (one name, no '/')"),
    (["-m", "study.name=../escape", "model.sr=0.25,0.5"],  # the sweep dir is named after it too
     "study.name: '../escape' is not usable as a folder name (one name, no '/')"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
def test_bad_input_exit_2_nothing_written(workdir, args: list[str], line: str) -> None:
    res = run_cli("dse-train", *args, cwd=workdir)
    assert_one_line(res, f"dse-train: error: {line}")
    assert tree(workdir) == {}  # no run dir, no store, nothing outside runs/ either


def test_unwritable_runs_dir_is_one_line_before_hydra_writes(workdir, tmpfs) -> None:
    ro = tmpfs("ro", ro=True)
    (workdir / "file.txt").write_text("a file\n")
    cases = {  # the failing key and path -> why
        ("paths.runs", "/proc/nope"): "No such file or directory",
        ("paths.runs", "file.txt/runs"): "Not a directory",
        ("paths.runs", f"{ro}/runs"): "Read-only file system",
        ("hydra.run.dir", "/proc/nope/run"): "No such file or directory",
    }
    before = tree(workdir)
    for (key, path), why in cases.items():
        res = run_cli("dse-train", f"{key}={path}", "trainer=smoke", cwd=workdir)
        assert_one_line(res, f"dse-train: error: {key}: cannot write {path}: {why}")
    res = run_cli("dse-train", "-m", f"paths.runs={ro}/runs", "model.sr=0.5,1.0", cwd=workdir)
    assert_one_line(res, f"dse-train: error: paths.runs: cannot write {ro}/runs: "
                         "Read-only file system")
    assert tree(workdir) == before


@pytest.mark.parametrize(("overrides", "error"), [
    (["trainer.devices=0"], "trainer.devices: must be a positive integer, -1 (all), 'auto' or a list of "
                            "device indices (got 0)"),
    (["trainer.devices=[0,0]"], "trainer.devices: must be a positive integer, -1 (all), 'auto' or a list of "
                                "device indices (got [0, 0])"),
    (["trainer.momentum=-1"], "trainer.momentum: must be in [0, 1) (got -1.0)"),
    (["trainer.weight_decay=-1"], "trainer.weight_decay: must be >= 0 (got -1.0)"),
    (["trainer.max_steps=-5"], "trainer.max_steps: must be -1 (no cap) or >= 1 (got -5)"),
    (["trainer.max_steps=0"], "trainer.max_steps: must be -1 (no cap) or >= 1 (got 0)"),
    (["trainer.accelerator=tpu"], "trainer.accelerator: must be one of auto, cpu, gpu, cuda (got 'tpu')"),
    (["trainer.channels_last=maybe"],
     "trainer.channels_last: must be one of auto, true, false (got 'maybe')"),
    (["trainer.progress_bar=1"], "trainer.progress_bar: must be one of auto, true, false (got '1')"),
    (["trainer.chance_epochs=-1"], "trainer.chance_epochs: must be >= 1 (got -1)"),
    (["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps: must be >= 1 (got 0)"),
    (["data.num_classes=3"], "data.num_classes: fashion_mnist has num_classes 10 (got 3)"),
    (["data=cifar10", "data.channels=1"], "data.channels: cifar10 has channels 3 (got 1)"),
    (["data.image_size=32"], "data.image_size: fashion_mnist has image_size 28 (got 32)"),
    (["data.root=/nonexistent"], "data.root: no such directory '/nonexistent'"),
    (["data=synthetic", "data.image_size=0"], "data.image_size: must be >= 1 (got 0)"),
    (["+trainer.extra=1"], "trainer.extra: unknown key (not in the schema, dse/config.py)"),
    (["+extra=1"], "extra: unknown key (not in the schema, dse/config.py)"),
    (["model.pool_after=[conv1,conv1,fire3,fire5]"], "model.pool_after: lists 'conv1' twice (a layer is "
                                                     "followed by one max-pool at most)"),
    (["study.name=a/b"], "study.name: 'a/b' is not usable as a folder name (one name, no '/')"),
    (["study.rerun=maybe"], "study.rerun: must be true, false or stale (got 'maybe')"),
])
def test_validate_names_the_bad_value(overrides: list[str], error: str) -> None:
    with pytest.raises(ConfigError) as e:
        validate(compose(overrides))
    assert str(e.value) == error


def test_validate_accepts_every_documented_value(tmp_path) -> None:
    validate(compose([]))
    for value in PRECISIONS:
        validate(compose([f"trainer.precision={value}"]))
    for ov in ("trainer.max_steps=-1",
               "trainer.channels_last=true", "trainer.channels_last=False", "trainer.progress_bar=auto",
               "trainer.accelerator=cuda", "trainer.momentum=0", f"data.root={tmp_path}"):
        validate(compose([ov]))
    (tmp_path / "train").mkdir()  # several devices: ImageFolder data only (in-memory data trains on one)
    for ov in ("trainer.devices=-1", "trainer.devices=auto", "trainer.devices=[0,1]"):
        validate(compose(["data=imagenet", f"data.root={tmp_path}", ov]))
    validate(compose(["data=synthetic", "data.num_classes=3", "data.channels=5", "data.image_size=40"]))
    # every precision dse allows is one Lightning accepts ("auto" is dse's own, see device_settings)
    lightning = {str(v) for kind in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(kind)}
    assert set(PRECISIONS) - {"auto"} <= lightning


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_or_kill_during_fit_exits_130_with_one_line(workdir, sig) -> None:
    proc = subprocess.Popen(
        [str(BIN / "dse-train"), "trainer=smoke", "data.subset=500", "trainer.max_epochs=1000"], cwd=workdir,
        env={**os.environ, "PYTHONWARNINGS": "ignore"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, preexec_fn=restore_sigint)
    deadline = time.time() + 600
    while not list(workdir.glob("runs/default/single/*/csv/*-seed0/hparams.yaml")):  # fit has started
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert (proc.returncode, err) == (130, "dse-train: interrupted\n")
    assert ResultsStore(workdir / "runs/default/results.db").frame().empty  # an interrupted run has no row


def _image_folder(root, classes: int = 2, per_class: int = 6, size: int = 40) -> None:
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    for split in ("train", "val"):
        for c in range(classes):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(per_class):
                px = torch.randint(0, 256, (size, size, 3), generator=g, dtype=torch.uint8).numpy()
                Image.fromarray(px).save(d / f"{i}.png")


def test_image_folder_module_and_run(workdir) -> None:
    _image_folder(workdir / "imgs")
    cfg = compose(["data=imagenet", f"data.root={workdir / 'imgs'}", "data.image_size=32",
                   "data.num_classes=2", "data.num_workers=0"])
    dm = build_datamodule(cfg.data, batch_size=4, eval_batch_size=5)
    dm.setup()
    assert dm.num_train == 12
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and set(y.tolist()) <= {0, 1}
    assert sum(len(b[1]) for b in dm.val_dataloader()) == 12
    res = run_cli("dse-train", "data=imagenet", f"data.root={workdir / 'imgs'}", "data.image_size=32",
                  "data.num_classes=2", "data.num_workers=0", "trainer=smoke", "trainer.max_epochs=1",
                  "trainer.batch_size=4", cwd=workdir)
    assert res.returncode == 0, res.stderr[-1500:]
    row = ResultsStore(workdir / "runs/default/results.db").frame().iloc[0]
    assert row.status == "ok" and row.data == "imagenet" and row.num_classes == 2


def test_sweep_progress_line_counts_failures_and_estimates_what_is_left() -> None:
    from dse.train.progress import duration, progress_line

    head = {"total": 4, "start": 100.0, "swept": ["model.sr"]}
    events = [head, {"status": "ok", "point": "model.sr=0.25", "seconds": 10.0},
              {"status": "failed", "point": "model.sr=0.5", "seconds": 2.4}]
    assert progress_line(events, events[2], now=130.0) == \
        "[2/4] failed model.sr=0.5 (2s) · 1 failed · ETA 30s"
    events += [{"status": "diverged", "point": "", "seconds": 61}, {"status": "ok", "point": "x",
                                                                    "seconds": 3}]
    assert progress_line(events, events[3], now=200.0) == \
        "[4/4] diverged (no overrides) (1m01s) · 1 failed"
    assert [duration(s) for s in (0.4, 59.6, 61, 3599, 3600, 7325)] == \
        ["0s", "1m00s", "1m01s", "59m59s", "1h00m", "2h02m"]


def test_config_error_survives_pickling() -> None:
    """A joblib worker pickles a failed job's exception back to the sweeper."""
    import pickle

    from dse.errors import ConfigError

    e = pickle.loads(pickle.dumps(ConfigError("model.bypass", "must be one of none, simple")))
    assert (type(e), e.field, e.message, str(e)) == (
        ConfigError, "model.bypass", "must be one of none, simple",
        "model.bypass: must be one of none, simple")


def test_a_studys_own_sweep_is_counted_and_the_command_line_replaces_it(tmp_path) -> None:
    from dse.compose import grid_points
    from dse.train.progress import PROGRESS_FILE, SweepProgress

    assert grid_points(["model.sr=0.125,0.25", "seed=1", "model.sr=0.5,1.0"]) == [
        ["model.sr=0.5", "seed=1"], ["model.sr=1.0", "seed=1"]]
    for extra, total in (([], 5), (["model.sr=0.25,0.5"], 2)):
        cfg = compose(["study=demo", f"hydra.sweep.dir={tmp_path}"], return_hydra_config=True)
        OmegaConf.update(cfg, "hydra.overrides.task", extra, force_add=True)
        SweepProgress().on_multirun_start(cfg)
        head = json.loads((tmp_path / PROGRESS_FILE).read_text().splitlines()[0])
        assert (head["total"], head["swept"]) == (total, ["model.sr"])


def test_a_run_logs_rate_accuracy_and_eta_each_epoch_also_without_a_progress_bar(tmp_path, caplog) -> None:
    """Piped or swept, a run still says how far it is and what it costs (#27)."""
    from dse.train.run import train_once

    cfg = compose(["trainer=smoke", "data.subset=256", "model.base_e=16", "model.incr_e=16",
                   "trainer.max_epochs=2", "trainer.progress_bar=false", f"paths.runs={tmp_path}",
                   "trainer.chance_epochs=3"])  # 2 epochs of a tiny net may sit at chance: not the point
    with caplog.at_level("INFO", logger="dse.train"):
        rec = train_once(cfg, analyze(build_spec(cfg.model), 28), 0, tmp_path)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert rec["status"] == "ok" and len(lines) == 2
    first, last = (line.split(" · ") for line in lines)
    assert first[0] == "epoch 1/2" and first[1].endswith(" img/s") and first[-1].startswith("ETA ")
    assert last[0] == "epoch 2/2" and not last[-1].startswith("ETA")
    assert first[2].startswith("val_top1 ") and last[2] == f"val_top1 {rec['val_top1']:.3f}"


def test_the_dataset_checked_before_training_is_the_one_training_loads() -> None:
    """check_job loads the dataset (a missing one is bad input) into the cache the run then reads."""
    from dse.data.modules import _prepared_splits
    from dse.data.sources import load_arrays
    from dse.train.checks import check_data

    cfg = compose(["trainer=smoke", "data.subset=256"])
    load_arrays.cache_clear()
    _prepared_splits.cache_clear()  # an earlier test in this worker may have split the same data
    check_data(cfg.data)
    dm = build_datamodule(cfg, 64, 256, 0)
    dm.setup("fit")
    assert (load_arrays.cache_info().misses, load_arrays.cache_info().hits) == (1, 1)
