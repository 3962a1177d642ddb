"""The frames behind dse-report's charts, checked against numbers computed by hand.

No store, no plotting: rows come from :mod:`dse.analysis.synthetic` (real sizes and config hashes,
chosen accuracies), so each test states exactly what a chart must show.
"""

from __future__ import annotations

import itertools
import random
import statistics

import numpy as np
import pandas as pd
import pytest

from dse.analysis import frames as F
from dse.analysis.commands import decompose, parse_overrides, sweep_commands
from dse.analysis.fmt import to_markdown
from dse.analysis.loading import load, normalize
from dse.analysis.report import status_counts
from dse.analysis.synthetic import base_config, demo_records, record, write_store


def _run(study: str = "s", seed: int = 0, acc: float | None = 0.9, status: str = "ok",
         overrides: str = "", model: str = "fire_small", trainer: dict | None = None,
         **changes: object) -> dict:
    cfg = base_config(study, model)
    cfg["model"].update(changes)
    cfg["trainer"].update(trainer or {})
    r = record(cfg, seed, overrides or " ".join(f"model.{k}={v}" for k, v in changes.items()),
               status=status, accuracy=acc)
    if status != "ok":
        r.update(val_top1=None, test_top1=None, val_top5=None, test_top5=None)
    return r


def _frame(rows: list[dict]) -> pd.DataFrame:
    return load(pd.DataFrame(rows))


# -- sweeps ---------------------------------------------------------------------------------------
def test_sr_frame_mean_and_sample_std_over_seeds() -> None:
    accs = {0.125: [0.90, 0.91, 0.93], 0.25: [0.92, 0.925], 0.5: [0.94]}
    rows = [_run(seed=s, acc=a, sr=sr) for sr, vals in accs.items() for s, a in enumerate(vals)]
    rows.append(_run(seed=7, status="diverged", sr=0.25))
    fr = F.sr_frame(_frame(rows))
    assert fr["sr"].tolist() == [0.125, 0.25, 0.5]
    assert fr["n"].tolist() == [3, 2, 1]
    assert fr["n_bad"].tolist() == [0, 1, 0]
    for sr, vals in accs.items():
        row = fr[fr["sr"] == sr].iloc[0]
        assert row["val_top1_mean"] == pytest.approx(statistics.mean(vals))
        if len(vals) > 1:  # ddof=1: the sample standard deviation
            assert row["val_top1_std"] == pytest.approx(statistics.stdev(vals))
            assert row["test_top1_std"] == pytest.approx(statistics.stdev(vals))
        else:
            assert np.isnan(row["val_top1_std"])
    # sizes are the analytic fp32 sizes, in MB and MiB
    assert (fr["size_mb"] * 1e6).tolist() == pytest.approx(fr["size_bytes"].astype(float).tolist())
    assert fr["size_bytes"].is_monotonic_increasing
    assert fr.attrs["fixed"]["pct3x3"] == 0.5 and fr.attrs["n_bad"] == 1
    assert "val_top5" in fr.attrs["metrics"]  # 10 classes: top-5 is shown


def test_a_seed_stored_twice_counts_once(tmp_path) -> None:
    rows = [_run(seed=0, acc=0.90, sr=0.25), _run(seed=1, acc=0.92, sr=0.25),
            _run(seed=0, acc=0.94, sr=0.5)]
    # a second sweep's copy of a seed (stores written before claims), and a seed that failed
    # before it trained: neither is a seed of its own
    copy = {**rows[2], "run_id": "copy", "val_top1": 0.5, "started_at": "2026-01-02T00:00:00"}
    failed = {**_run(seed=1, sr=0.25, status="failed"), "started_at": "2025-12-31T00:00:00"}
    df = load(write_store(tmp_path / "results.db", [*rows, copy, failed]))
    assert sorted(df.run_id) == sorted(r["run_id"] for r in rows)
    fr = F.sr_frame(df)
    assert fr["n"].tolist() == [2, 1] and fr["n_bad"].tolist() == [0, 0]
    assert fr["seeds"].tolist() == ["0,1", "0"]
    assert fr["val_top1_mean"].tolist() == pytest.approx([0.91, 0.94])
    assert fr["val_top1_std"].iloc[0] == pytest.approx(statistics.stdev([0.90, 0.92]))
    assert np.isnan(fr["val_top1_std"].iloc[1])  # one seed: no error bar, not std 0


def test_sweep_picks_largest_fixed_group_and_never_pools_other_settings() -> None:
    rows = [_run(sr=sr, pct3x3=0.5) for sr in (0.125, 0.25, 0.5, 0.75)]
    rows += [_run(sr=sr, pct3x3=0.25) for sr in (0.125, 0.25)]
    # same metaparameter columns, different learning rate: a different sweep, not extra seeds
    rows += [_run(sr=sr, pct3x3=0.5, trainer={"lr": 0.01}, acc=0.5) for sr in (0.125, 0.25)]
    fr = F.sr_frame(_frame(rows))
    assert fr["sr"].tolist() == [0.125, 0.25, 0.5, 0.75]
    assert fr["n"].tolist() == [1, 1, 1, 1]
    assert fr["val_top1_mean"].tolist() == pytest.approx([0.9] * 4)
    assert fr.attrs["fixed"]["pct3x3"] == 0.5
    assert fr.attrs["groups"] == 3


def test_sweep_value_whose_seeds_all_diverged_is_kept_and_drawn() -> None:
    rows = [_run(sr=0.125), _run(sr=0.25), _run(sr=0.5, status="diverged"),
            _run(sr=0.5, seed=1, status="failed")]
    fr = F.sr_frame(_frame(rows))
    assert fr["sr"].tolist() == [0.125, 0.25, 0.5]
    assert fr["n"].tolist() == [1, 1, 0] and fr["n_bad"].tolist() == [0, 0, 2]
    assert np.isnan(fr["val_top1_mean"].iloc[2]) and fr["size_bytes"].iloc[2] > 0
    from dse.analysis.plots import plot_sweep

    fig = plot_sweep(fr, "t")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert "no ok run at this value" in labels


def test_sweeps_skip_with_reason_when_data_does_not_support_them() -> None:
    df = _frame([_run(sr=0.125, seed=s) for s in range(3)] + [_run(sr=0.25, pct3x3=0.25)])
    for fn in (F.sr_frame, F.pct3x3_frame, F.bypass_frame):
        fr = fn(df)
        assert fr.empty
        assert "need >= 2" in fr.attrs["skipped"]


def test_bypass_frame_order_and_top5_only_above_five_classes() -> None:
    rows = [_run(bypass=b, seed=s, acc=0.8 + 0.01 * i)
            for i, b in enumerate(["complex", "none", "simple"]) for s in range(2)]
    df = _frame(rows)
    fr = F.bypass_frame(df)
    assert fr["bypass"].tolist() == ["none", "simple", "complex"]
    assert fr.loc[fr["bypass"] == "complex", "size_bytes"].iloc[0] > fr["size_bytes"].iloc[0]
    assert fr.loc[fr["bypass"] == "simple", "size_bytes"].iloc[0] == fr["size_bytes"].iloc[0]
    few = df.assign(num_classes=5)
    assert F.bypass_frame(few).attrs["metrics"] == ["val_top1", "test_top1"]


# -- Pareto ---------------------------------------------------------------------------------------
def _brute_front(size: np.ndarray, acc: np.ndarray) -> set[int]:
    out = set()
    for i in range(len(size)):
        dominated = any(size[j] <= size[i] and acc[j] >= acc[i]
                        and (size[j] < size[i] or acc[j] > acc[i]) for j in range(len(size)))
        if not dominated:
            out.add(i)
    return out


def test_pareto_mask_is_exactly_the_non_dominated_set() -> None:
    rng = random.Random(1)
    for _ in range(30):
        n = rng.randint(1, 25)
        size = np.array([rng.choice([1, 2, 3, 4, 5, 6]) for _ in range(n)], dtype=float)
        acc = np.array([rng.choice([0.5, 0.6, 0.7, 0.8]) for _ in range(n)])
        assert set(np.flatnonzero(F.pareto_mask(size, acc))) == _brute_front(size, acc)


def test_pareto_frame_over_design_point_means() -> None:
    rows = [_run(sr=0.125, seed=0, acc=0.90), _run(sr=0.125, seed=1, acc=0.92),  # mean .91
            _run(sr=0.25, seed=0, acc=0.905),  # bigger and worse than sr=0.125's mean: dominated
            _run(sr=0.5, seed=0, acc=0.95),
            _run(sr=0.75, seed=0, acc=0.95),  # same accuracy, bigger: dominated
            _run(sr=1.0, seed=0, status="failed")]  # not a design point
    rows += [_run(model="squeezenet_v1_1", acc=0.88, overrides="model=squeezenet_v1_1")]
    pts = F.pareto_frame(_frame(rows))
    assert pts.attrs["metric"] == "val_top1"
    assert len(pts) == 5
    front = pts[pts["pareto"]]
    assert sorted(front["sr"].tolist()) == [0.125, 0.125, 0.5]
    assert front["label"].tolist() == [1, 2, 3]  # numbered by size
    point = pts[(pts["sr"] == 0.125) & (pts["model"] == "fire_small")].iloc[0]
    assert point["acc_mean"] == pytest.approx(0.91) and point["n"] == 2
    assert pts.loc[pts["model"] == "squeezenet_v1_1", "preset"].all()
    assert "model=squeezenet_v1_1" in front.iloc[0]["desc"]
    assert "stem_channels" not in front.iloc[0]["desc"]  # implied by the preset name
    # brute force over the same means
    assert set(np.flatnonzero(pts["pareto"])) == _brute_front(
        pts["size_bytes"].to_numpy(float), pts["acc_mean"].to_numpy(float))


def test_latency_front_and_which_points_win_on_each() -> None:
    rows = [_run(sr=0.125, acc=0.90), _run(sr=0.25, acc=0.92),  # a: smallest; b: faster than a
            _run(sr=0.5, acc=0.91), _run(sr=0.75, acc=0.95)]  # c: dominated twice; d: no latency
    for r, ms in zip(rows, (1.0, 0.5, 2.0, None), strict=True):
        r.update(latency_ms=ms)
    df = _frame(rows)
    size, fast = F.pareto_frame(df), F.pareto_frame(df, cost="latency_ms")
    assert size.loc[size["pareto"], "sr"].tolist() == [0.125, 0.25, 0.75]
    assert fast["sr"].tolist() == [0.25, 0.125, 0.5] and fast["cost"].tolist() == [0.5, 1.0, 2.0]
    assert fast.loc[fast["pareto"], "sr"].tolist() == [0.25]  # b is faster and more accurate
    fronts = F.fronts_frame({"size_bytes": size, "latency_ms": fast})
    assert fronts["sr"].tolist() == [0.125, 0.25, 0.75]
    assert fronts["size_bytes_label"].tolist() == [1, 2, 3]
    assert fronts["latency_ms_label"].tolist() == [0, 1, 0]
    assert fronts["latency_ms"].tolist()[:2] == [1.0, 0.5] and np.isnan(fronts["latency_ms"][2])
    none = F.pareto_frame(_frame([_run(sr=0.125)]), cost="latency_ms")
    assert none.empty and "trainer.latency=true" in none.attrs["skipped"]


# -- EDF ------------------------------------------------------------------------------------------
def test_edf_is_the_empirical_cdf_per_group_with_ties() -> None:
    accs = {"none": [0.90, 0.92, 0.92, 0.95], "simple": [0.91, 0.93]}
    rows = [_run(bypass=b, seed=s, acc=a) for b, vals in accs.items() for s, a in enumerate(vals)]
    rows.append(_run(bypass="none", seed=9, status="diverged"))
    edf = F.edf_frame(_frame(rows))
    assert edf.attrs["by"] == ["bypass"]
    assert list(dict.fromkeys(edf["group"])) == ["none", "simple"]
    for b, vals in accs.items():
        sel = edf[edf["group"] == b]
        errors = sorted(1 - v for v in vals)
        assert sel["error"].tolist() == pytest.approx(errors)
        expect = [sum(e2 <= e + 1e-12 for e2 in errors) / len(errors) for e in errors]
        assert sel["edf"].tolist() == pytest.approx(expect)
        assert (sel["n"] == len(vals)).all()
    summary = F.edf_summary(edf).set_index("group")
    assert summary.loc["none", "min_error"] == pytest.approx(0.05)
    assert summary.loc["none", "mean_error"] == pytest.approx(1 - statistics.mean(accs["none"]))


def test_only_failed_runs_give_empty_frames_not_errors() -> None:
    df = _frame([_run(sr=sr, status="failed") for sr in (0.125, 0.25)])
    assert F.pareto_frame(df).empty and F.edf_frame(df).empty and F.sr_frame(df).empty
    counts = status_counts(df)
    assert counts["failed"].tolist() == [2] and counts["total"].tolist() == [2]


# -- sweep commands -------------------------------------------------------------------------------
def test_decompose_covers_exactly_the_jobs_seen() -> None:
    rng = random.Random(3)
    for _ in range(40):
        grid = list(itertools.product(["1", "2", "3"], ["a", "b"], ["x", "y", "z"]))
        combos = set(rng.sample(grid, rng.randint(1, len(grid))))
        cover = [c for g in decompose(combos) for c in itertools.product(*g)]
        assert len(cover) == len(set(cover)) and set(cover) == combos


def test_sweep_commands_rebuild_the_grids() -> None:
    df = normalize(pd.DataFrame(demo_records(seeds=2)))
    cmds = sweep_commands(df)
    text = "\n".join(cmds["command"])
    assert "dse-train -m study=demo model.sr=0.125,0.25,0.375,0.5,0.625,0.75,0.875,1.0" in text
    assert "model.sr=0.5 model.pct3x3=0.01,0.125,0.25,0.375,0.625,0.75,0.875,0.99" in text
    assert cmds["runs"].sum() == len(df)
    assert parse_overrides("a=1 'b=x y' ~c") == [("a", "1"), ("b", "x y"), ("~c", None)]
    # jobs with no study token get one; Optuna trials are described, not turned into a grid
    opt = normalize(pd.DataFrame([{**_run(study="o", sr=sr), "trial": i}
                                  for i, sr in enumerate((0.25, 0.5))]))
    row = sweep_commands(opt).iloc[0]
    assert row["kind"] == "optuna" and row["command"] == "dse-train -m study.name=o"
    assert "model.sr" in row["note"]


def test_markdown_formatter_escapes_and_aligns() -> None:
    text = to_markdown(pd.DataFrame({"a": ["x|y", None], "n": ["1.50", "10"]}))
    lines = text.splitlines()
    assert lines[0].startswith("| a") and "x\\|y" in lines[2] and "| -" in lines[3]
    assert lines[1].endswith(":|")  # numeric column right-aligned
