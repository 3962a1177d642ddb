"""dse-export, measured latency and int8: files that equal PyTorch, relations between timings.

Latency on a shared CPU is noise plus signal, so nothing here asserts a time: only that a network
with ~4x the MACs is slower (interleaved rounds, medians) and that the columns are filled. Files
are checked with onnxruntime and torch.jit directly, not through dse's own runners.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402

from dse import latency  # noqa: E402
from dse.checkpoint import load_checkpoint  # noqa: E402
from dse.compose import compose  # noqa: E402
from dse.compress.storage import decode, encode  # noqa: E402
from dse.data import build_datamodule  # noqa: E402
from dse.errors import ConfigError  # noqa: E402
from dse.export.cli import main  # noqa: E402
from dse.metrics import LATENCY, REGISTRY  # noqa: E402
from dse.model import analyze, build_model, build_spec  # noqa: E402
from dse.store import ResultsStore, config_hash  # noqa: E402
from dse.validate import validate  # noqa: E402
from tests.conftest import BIN, assert_one_line, cli_fails, config_dict, save_checkpoint, tree  # noqa: E402

NARROW = ["model.base_e=16", "model.incr_e=16"]
SUBSET = "data.subset=300"


def _fails(capsys: pytest.CaptureFixture, argv: list[str], needle: str) -> None:
    cli_fails(capsys, main, "dse-export", argv, needle)


def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = config_dict(NARROW)
    good = save_checkpoint(tmp_path / "run/checkpoints/last.ckpt", cfg)
    (tmp_path / "junk.ckpt").write_bytes(b"not a checkpoint")
    (tmp_path / "junk.dsec").write_bytes(b"DSEC? no")
    (tmp_path / "other.dsec").write_bytes(encode(build_model({**cfg["model"], "sr": 0.5})))
    (tmp_path / "file.txt").write_text("a file\n")
    before = tree(tmp_path)
    cases = [
        ([str(tmp_path / "missing.ckpt")], "CHECKPOINT: no such file"),
        ([str(tmp_path / "junk.ckpt")], "not a dse checkpoint"),
        ([str(good), "--format", "onnx,pdf"], "--format: must be a comma list of onnx, "
                                              "torchscript, int8 (got onnx,pdf)"),
        ([str(good), "--format", ","], "--format"),
        ([str(good), "--compressed", "missing.dsec"], "--compressed: no such file: missing.dsec"),
        ([str(good), "--compressed", "junk.dsec"], "not a dse-compress file of this checkpoint's"),
        ([str(good), "--compressed", "other.dsec"], "not a dse-compress file of this checkpoint's"),
        ([str(good), "--check-images", "-1"], "--check-images: must be an integer >= 0"),
        ([str(good), "--calibration", "0"], "--calibration: must be an integer >= 1"),
        ([str(good), "--threads", "0"], "--threads: must be an integer >= 1"),
        ([str(good), "--threads", "two"], "invalid int value"),
        ([str(good), "model.sr=0.5"], "model.sr"),
        ([str(good), "data.subset=0"], "data.subset"),
        ([str(good), "--out", "file.txt/x"], "--out: cannot write file.txt/x: Not a directory"),
    ]
    for argv, needle in cases:
        _fails(capsys, argv, needle)
    # the packages the formats need are checked before the checkpoint is read
    monkeypatch.setattr("dse.latency.missing", lambda: ["onnxruntime"])
    _fails(capsys, [str(good), "--format", "int8"],
           "--format: needs onnxruntime (pip install 'dse[export]')")
    _fails(capsys, [str(good), "--format", "torchscript", "--latency"], "--latency: needs")
    with pytest.raises(ConfigError, match=r"trainer.latency: true needs onnxruntime"):
        validate(compose([*NARROW, "trainer.latency=true"]))
    with pytest.raises(ConfigError, match="trainer.latency_threads: must be >= 1"):
        validate(compose([*NARROW, "trainer.latency_threads=0"]))
    assert tree(tmp_path) == before


def test_bad_input_from_the_command_line(tmp_path):
    import subprocess

    res = subprocess.run([sys.executable, "-m", "dse.export.cli", "missing.ckpt", "--out",
                          "/proc/nope"], cwd=tmp_path, capture_output=True, text=True)
    assert_one_line(res, "dse-export: error: --out: cannot write /proc/nope: No such file or "
                         "directory")
    assert tree(tmp_path) == {}
    if (BIN / "dse-export").exists():  # the console script, where this checkout is installed
        res = subprocess.run([str(BIN / "dse-export"), "--format", "x", "a.ckpt"], cwd=tmp_path,
                             capture_output=True, text=True)
        assert res.returncode == 2 and res.stderr.startswith("dse-export: error: --format"), \
            res.stderr


# ----------------------------------------------------------------------------- files vs PyTorch
@pytest.fixture(scope="module")
def exported(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The smoke run's network as dense files (ONNX, TorchScript, int8) and as files of its
    pruned + 6-bit quantized dse-compress file (no fine-tuning: any weights will do)."""
    from dse.compress.pipeline import _dense_model
    from dse.compress.weights import finalize, prune_model, quantize_model, resolve_densities

    tmp = tmp_path_factory.mktemp("export")
    (src,) = (smoke_run / "runs/default/single").glob("*/checkpoints/last.ckpt")
    ckpt = tmp / "run/checkpoints/last.ckpt"
    ckpt.parent.mkdir(parents=True)
    shutil.copy(src, ckpt)
    loaded = load_checkpoint(ckpt, [SUBSET])
    model, model_cfg = _dense_model(loaded)
    prune_model(model, resolve_densities(model, "table1"))
    finalize(model)
    quantize_model(model, 6)
    (tmp / "q6_huffman.dsec").write_bytes(encode(model))
    main([str(ckpt), "--format", "onnx,torchscript,int8", "--check-images", "32",
          "--calibration", "128", SUBSET])
    main([str(ckpt), "--compressed", str(tmp / "q6_huffman.dsec"), "--check-images", "32",
          SUBSET])
    return SimpleNamespace(ckpt=loaded, out=tmp / "run/export", model_cfg=model_cfg,
                           dsec=tmp / "q6_huffman.dsec")


def _inputs(ckpt) -> dict[str, torch.Tensor]:
    dm = build_datamodule(ckpt.cfg, 100, 100, 0)
    dm.setup()
    real, _ = next(iter(dm.test_dataloader()))  # the first 100 test images, normalised
    return {"random": torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(7)),
            "test images": real.float()}


def test_files_equal_pytorch_on_random_and_real_images(exported):
    dense = build_model(exported.model_cfg)
    dense.load_state_dict(exported.ckpt.state)
    decoded = decode(exported.dsec.read_bytes(), build_model(exported.model_cfg))
    inputs = _inputs(exported.ckpt)
    for stem, model in (("dense", dense.eval()), ("q6_huffman", decoded.eval())):
        session = ort.InferenceSession(str(exported.out / f"{stem}.onnx"),
                                       providers=["CPUExecutionProvider"])
        script = torch.jit.load(str(exported.out / f"{stem}.torchscript.pt"))
        for name, x in inputs.items():
            with torch.inference_mode():
                want = model(x).numpy()
                got_ts = script(x).numpy()
            got_onnx = session.run(None, {"input": x.numpy()})[0]
            assert np.abs(got_onnx - want).max() <= 1e-4, (stem, name)
            assert np.abs(got_ts - want).max() <= 1e-4, (stem, name)
        result = json.loads((exported.out / f"{stem}.export.json").read_text())
        assert result["run_id"] == exported.ckpt.run_id and result["stem"] == stem
        assert {r["format"] for r in result["rows"]} >= {"pytorch", "onnx", "torchscript"}
    assert not np.allclose(dense.state_dict()["features.fire2.expand3x3.conv.weight"],
                           decoded.state_dict()["features.fire2.expand3x3.conv.weight"])


def test_int8_file_is_int8_small_and_keeps_accuracy(exported):
    fp32 = (exported.out / "dense.onnx").stat().st_size
    int8 = exported.out / "dense.int8.onnx"
    assert int8.stat().st_size < fp32 / 3
    graph = onnx.load(str(int8)).graph
    int8_weights = sum(int(np.prod(t.dims)) for t in graph.initializer
                       if t.data_type == onnx.TensorProto.INT8)
    convs = sum(p.numel() for n, p in build_model(exported.model_cfg).named_parameters()
                if n.endswith("weight") and p.dim() == 4)
    assert int8_weights >= convs  # every convolution's weights are stored as int8
    assert any(n.op_type == "DequantizeLinear" for n in graph.node)
    rows = {r["format"]: r for r in json.loads(
        (exported.out / "dense.export.json").read_text())["rows"]}
    assert rows["int8"]["bytes"] == int8.stat().st_size
    assert rows["pytorch"]["test_top1"] > 0.6  # trained: there is accuracy to keep
    assert rows["int8"]["test_top1"] >= rows["pytorch"]["test_top1"] - 0.05


# ------------------------------------------------------------------------------------- latency
def test_four_times_the_macs_measures_slower():
    """Interleaved rounds (small, big, small, big, ...) see the same background load; medians of
    the per-round medians then compare the networks, not the moments they were timed at."""
    small, big = (compose([f"model.base_e={e}", f"model.incr_e={e}"]) for e in (64, 128))
    macs = [analyze(build_spec(c.model), 28).macs for c in (small, big)]
    assert 3.3 < macs[1] / macs[0] < 4.5
    runners = [latency.runners(build_model(c.model), (1, 28, 28), threads=1) for c in (small, big)]
    medians: dict[str, list[list[float]]] = {rt: [[], []] for rt in latency.RUNTIMES}
    for _ in range(5):
        for i, run in enumerate(runners):
            for rt, r in run.items():
                prof = latency.profile(r, (1, 28, 28), threads=1, batches=(1,), warmup=3,
                                       repeats=30, budget_s=1.0)
                medians[rt][i].append(prof[1][0.5])
    for rt, (s, b) in medians.items():
        assert np.median(b) > np.median(s), (rt, s, b)


def test_trainer_latency_true_fills_the_columns_and_the_sweeper_reads_them(tmp_path):
    from dse.sweep import trials
    from dse.train.run import run_point
    from hydra_plugins.dse_optuna_sweeper._outcome import decide
    from hydra_plugins.dse_optuna_sweeper._settings import Objective, _refuse_unmeasured, parse_constraints

    args = ["trainer=smoke", SUBSET, "trainer.max_epochs=1", *NARROW,
            f"paths.runs={tmp_path}/runs"]
    cfg = compose([*args, "trainer.latency=true"])
    assert config_hash(cfg) == config_hash(compose(args))  # how it is measured is not the point
    threads = torch.get_num_threads()
    summary = run_point(cfg, tmp_path / "out")
    assert torch.get_num_threads() == threads  # the timing's thread count was put back
    assert summary["status"] == "ok" and all(summary[m] > 0 for m in LATENCY), summary
    (row,) = ResultsStore(tmp_path / "runs/default/results.db").frame().to_dict("records")
    assert all(row[m] == pytest.approx(summary[m]) for m in LATENCY) and row["latency_threads"] == 1
    assert row["latency_p90_ms"] >= row["latency_ms"] and row["latency_b64_ms"] > row["latency_ms"]

    (constraint,) = parse_constraints(["latency_ms <= 2"])
    assert not constraint.analytic  # checked after training, on what the job returns
    outcome = decide(lambda: summary, [Objective("val_top1", "maximize")], [constraint], {})
    assert outcome.state == "complete"
    assert outcome.violations == [pytest.approx((summary["latency_ms"] - 2) / 2)]
    assert outcome.attrs[trials.CONSTRAINTS]["latency_ms<=2"]["value"] == summary["latency_ms"]
    # jobs that do not measure it are refused before any trial
    settings = SimpleNamespace(objectives=[Objective("latency_ms", "minimize")], constraints=[])
    _refuse_unmeasured(settings, cfg)
    with pytest.raises(ConfigError, match="hydra.sweeper.objectives: latency_ms is measured only"):
        _refuse_unmeasured(settings, compose(args))
    assert REGISTRY["latency_ms"].direction == "minimize"


def test_a_stored_row_gets_the_latency_asked_for_without_retraining(tmp_path, caplog):
    """trainer.latency is not in the hash: asking for it on a stored point measures the
    architecture and fills the row in place instead of printing skip and leaving NULLs (#27)."""
    from dse.train.run import run_point

    args = ["trainer=smoke", SUBSET, "trainer.max_epochs=1", *NARROW, f"paths.runs={tmp_path}/runs"]
    first = run_point(compose(args), tmp_path / "a")
    store = ResultsStore(tmp_path / "runs/default/results.db")
    (before,) = store.frame().to_dict("records")
    assert before["latency_ms"] is None or np.isnan(before["latency_ms"])
    with caplog.at_level("INFO", logger="dse.train"):
        again = run_point(compose([*args, "trainer.latency=true"]), tmp_path / "b")
    (after,) = store.frame().to_dict("records")
    assert after["run_id"] == before["run_id"] and after["train_seconds"] == before["train_seconds"]
    assert all(after[m] > 0 for m in LATENCY) and after["latency_threads"] == 1
    assert again["latency_ms"] == pytest.approx(after["latency_ms"])
    assert again["val_top1"] == first["val_top1"]
    assert any(r.getMessage().startswith("measured: ") for r in caplog.records)
    assert not (tmp_path / "b").exists()  # nothing trained


def test_compress_int8_row_sits_beside_deep_compression(exported, smoke_run, tmp_path, capsys,
                                                        monkeypatch):
    from dse.compress.cli import main as compress

    monkeypatch.chdir(tmp_path)  # the checkpoint's store is runs/default/results.db, relative
    (tmp_path / "runs/default").mkdir(parents=True)
    shutil.copy(smoke_run / "runs/default/results.db", tmp_path / "runs/default/results.db")
    out = tmp_path / "compress"
    compress([str(exported.ckpt.path), "--bits", "6", "--retrain-epochs", "0",
              "--finetune-epochs", "0", "--int8", "--out", str(out), SUBSET])
    printed = capsys.readouterr().out
    assert "| int8 (onnxruntime static) |" in printed
    assert f"{REGISTRY['latency_ms'].label} ms" in printed
    rows = json.loads((out / "compression.json").read_text())["rows"]
    assert [r["stage"] for r in rows] == ["dense", "pruned", "quantized", "huffman", "int8"]
    dense, *_, int8 = rows
    assert int8["size_bytes"] == (out / "int8.onnx").stat().st_size == len(
        (out / int8["file"]).read_bytes())
    assert int8["size_bytes"] < (exported.out / "dense.onnx").stat().st_size / 3
    assert int8["test_top1"] >= dense["test_top1"] - 0.05
    assert dense["latency_ms"] > 0 and int8["latency_ms"] > 0
    assert all("latency_ms" not in r for r in rows[1:-1])  # decoded DC files run as dense fp32
    with ResultsStore("runs/default/results.db", create=False) as store:
        table = store.frame(table="compressions")
    assert list(table.stage) == ["dense", "pruned", "quantized", "huffman", "int8"]
    assert table.latency_ms.notna().tolist() == [True, False, False, False, True]
