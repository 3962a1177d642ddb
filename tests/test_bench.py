"""dse-bench: one tiny real run on CPU writes every section; bad input fails in one line. No timings."""

from __future__ import annotations

import json
import math
import re

import pytest

from dse.bench.packing import recommend
from dse.bench.report import markdown
from dse.train.checks import native_cpu_bf16
from tests.conftest import assert_one_line, run_cli, tree

# Real Fashion-MNIST and the real training path, but a narrow net and a few hundred images.
TINY = ["data.subset=256", "trainer=smoke", "trainer.max_epochs=1", "trainer.batch_size=32",
        "trainer.eval_batch_size=256", "model.stem.channels=8", "model.n_fire=2", "model.base_e=16",
        "model.incr_e=0", "model.pool_after=[conv1]"]


def _pos(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


@pytest.mark.slow
def test_bench_cpu_writes_every_section(tmp_path) -> None:
    out = tmp_path / "bench"
    # one thread per process: on a shared 2-core box OpenMP threads spin against other jobs
    res = run_cli("dse-bench", *TINY, "--k", "1,2", "--steps", "6", "--target", "0.5", "--out", str(out),
                  cwd=tmp_path, timeout=300, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads((out / "bench.json").read_text())
    md = (out / "bench.md").read_text()
    assert md.strip() and "| path | images/s" in md and "recommended `hydra.launcher.n_jobs=" in md
    assert "project / plain" in res.stdout  # the table is printed too

    assert doc["machine"]["accelerator"] == "cpu" and doc["config"]["model"] == "fire_small"
    step = doc["step"]
    assert step["steps"] == 6 and step["warmup"] >= 1
    for side in ("project", "plain"):
        assert _pos(step[side]["images_per_s"]) and _pos(step[side]["step_ms"])
        assert step[side]["timed_steps"] == 6 and step[side]["timed_images"] == 6 * 32
    assert _pos(step["ratio"]) and step["ratio"] == pytest.approx(
        step["project"]["images_per_s"] / step["plain"]["images_per_s"])

    prec = doc["precision"]  # fp32 and bf16 side by side; auto's pick follows the CPU's bf16 probe
    for side in ("fp32", "bf16"):
        assert _pos(prec[side]["images_per_s"]) and prec[side]["timed_images"] == 6 * 32
    assert prec["ratio"] == pytest.approx(prec["bf16"]["images_per_s"] / prec["fp32"]["images_per_s"])
    native = native_cpu_bf16()
    assert prec["auto"] == ("bf16" if native else "fp32") and prec["native_bf16"] == native
    assert "bf16 / fp32 = " in md and f"picks {prec['auto']} here" in md

    assert doc["compile"] is None  # --compile not asked: a cold inductor compile is a minute on CPU

    ep = doc["epochs"]
    assert ep["status"] in ("ok", "diverged") and ep["epochs"] == 1 and _pos(ep["epoch_s"])
    assert ep["target"] == 0.5 and isinstance(ep["reached"], bool)
    assert (ep["time_to_target_s"] is not None) == ep["reached"]
    assert 0.0 <= ep["val_top1"] <= 1.0 and 0.0 <= ep["test_top1"] <= 1.0

    pack = doc["packing"]
    assert [r["k"] for r in pack["runs"]] == [1, 2]
    for r in pack["runs"]:
        assert "error" not in r, r
        assert _pos(r["trials_per_hour"]) and _pos(r["images_per_s"]) and _pos(r["trial_s"])
    assert pack["recommended_k"] in (1, 2) and pack["best_k"] in (1, 2)
    assert pack["runs"][0]["speedup_vs_k1"] == pytest.approx(1.0)


@pytest.mark.slow
def test_bench_fused_trains_the_same_members_three_ways(tmp_path) -> None:
    out = tmp_path / "bench"
    res = run_cli("dse-bench", *TINY, "model.dropout=0", "--fused", "2", "--out", str(out),
                  cwd=tmp_path, timeout=300, env={"OMP_NUM_THREADS": "1"})
    assert res.returncode == 0, res.stderr[-3000:]
    doc = json.loads((out / "bench.json").read_text())
    assert doc["step"] is None and doc["packing"] is None  # --fused alone: that section only
    fused = doc["fused"]
    assert [r["k"] for r in fused["runs"]] == [2]
    for r in fused["runs"]:
        for way in ("fused", "sequential", "processes"):
            assert "error" not in r[way], (way, r[way])
            assert _pos(r[way]["trials_per_hour"]) and _pos(r[way]["images_per_s"])
            assert len(r[way]["val_top1"]) == r["k"]
        # the same members (SR 0.125 and 0.25, seed 0) fused and alone: the same accuracy
        assert r["fused"]["val_top1"] == pytest.approx(r["sequential"]["val_top1"], abs=2 / 256)
        assert r["fused_vs_sequential"] == pytest.approx(
            r["fused"]["trials_per_hour"] / r["sequential"]["trials_per_hour"])
    assert "## Fused: K design points" in (out / "bench.md").read_text()


def test_bench_bad_input_is_one_line_exit_2(tmp_path) -> None:
    # option errors answer before torch is imported; one config error goes through compose + validate
    for args in (["--steps", "0"], ["--k", "0"], ["--fused", "0"], ["--target", "92"],
                 ["trainer.batch_size=0"],
                 ["--bogus"]):  # argparse's usage block too is one line
        res = run_cli("dse-bench", *args, "--out", str(tmp_path / "x"), cwd=tmp_path, timeout=120)
        assert res.returncode == 2, (args, res.stderr[-2000:])
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("dse-bench: error:"), (args, res.stderr[-2000:])
        assert not (tmp_path / "x").exists()  # nothing written for bad input


def test_bench_unwritable_out_is_one_line_exit_2(tmp_path, tmpfs) -> None:
    ro = tmpfs("ro", ro=True)
    (tmp_path / "file.txt").write_text("a file\n")
    before = tree(tmp_path)
    for out, why in {"/proc/nope": "No such file or directory", "file.txt/b": "Not a directory",
                     f"{ro}/b": "Read-only file system"}.items():  # answered before torch loads
        res = run_cli("dse-bench", "--out", out, cwd=tmp_path, timeout=120)
        assert_one_line(res, f"dse-bench: error: --out: cannot write {out}: {why}")
    res = run_cli("dse-bench", f"paths.runs={ro}", *TINY, cwd=tmp_path, timeout=120)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1, res.stderr[-2000:]
    assert re.fullmatch(rf"dse-bench: error: paths\.runs: cannot write {ro}/bench/[\d_-]+: "
                        "Read-only file system", lines[0]), lines
    assert tree(tmp_path) == before


def test_recommend_picks_smallest_k_within_tolerance() -> None:
    runs = [{"k": 1, "trials_per_hour": 100.0}, {"k": 2, "trials_per_hour": 190.0},
            {"k": 4, "trials_per_hour": 220.0}, {"k": 8, "trials_per_hour": 225.0},
            {"k": 16, "error": "out of memory"}]
    assert recommend(runs) == 4  # 220 >= 0.95 * 225
    assert recommend(runs, tolerance=0.0) == 8
    assert recommend([{"k": 1, "error": "x"}]) is None


def test_markdown_renders_missing_sections_and_failures() -> None:
    doc = {"date": "2026-11-26T00:00:00+00:00", "seconds": 1.0,
           "machine": {"device": "cpu", "accelerator": "cpu", "precision": "32-true",
                       "channels_last": False, "cpu_count": 2, "torch_version": "2", "load_avg_1m": None},
           "config": {"model": "m", "data": "d", "trainer": "t", "batch_size": 1, "max_epochs": 1,
                      "subset": None, "augment": False},
           "options": {"overrides": []}, "step": None, "epochs": None,
           "packing": {"runs": [{"k": 1, "error": "boom"}], "recommended_k": None, "best_k": None,
                       "tolerance": 0.05}}
    md = markdown(doc)
    assert "failed: boom" in md and "n_jobs=–" in md and "Training step" not in md


@pytest.mark.parametrize(("auto", "native", "note"), [("fp32", False, "picks fp32 here (bf16 emulated)"),
                                                      ("bf16", True, "picks bf16 here (native bf16)"),
                                                      ("bf16", None, "picks bf16 here (GPU)")])
def test_markdown_marks_the_precision_auto_picks(auto: str, native: bool | None, note: str) -> None:
    side = {"images_per_s": 100.0, "step_ms": 10.0, "cpu_ms_per_step": 20.0}
    doc = {"date": "2026-12-03T00:00:00+00:00", "seconds": 1.0,
           "machine": {"device": "cpu", "accelerator": "cpu", "precision": "32-true",
                       "channels_last": False, "cpu_count": 2, "torch_version": "2", "load_avg_1m": None},
           "config": {"model": "m", "data": "d", "trainer": "t", "batch_size": 64, "max_epochs": 1,
                      "subset": None, "augment": False}, "options": {"overrides": []},
           "precision": {"fp32": side, "bf16": {**side, "images_per_s": 50.0}, "auto": auto,
                         "native_bf16": native, "ratio": 0.5, "steps": 6, "warmup": 2, "repeats": 1,
                         "batch_size": 64}}
    md = markdown(doc)
    marked = [line for line in md.splitlines() if "← auto" in line]
    assert len(marked) == 1 and marked[0].startswith(f"| {'fp32' if auto == 'fp32' else 'bf16-mixed'}")
    assert "**bf16 / fp32 = 0.500**" in md and note in md and "Precision at batch 64" in md
