"""dse-report end to end on synthetic stores: the files, the images, the Markdown, Optuna input.

One store is reported once per module (drawing is the slow part); each test reads what it wrote.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
from PIL import Image

from dse.analysis import frames as F
from dse.analysis.cli import main
from dse.analysis.knobs import good_ranges, importance_frame
from dse.analysis.loading import load
from dse.analysis.paper_check import paper_check
from dse.analysis.source import LoadError
from dse.analysis.synthetic import base_config, demo_records, record, write_store
from dse.analysis.verdicts import describe, study_verdicts

CHARTS = ["micro_sr", "macro_bypass", "pareto", "pareto_latency", "edf", "importance"]


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """runs/demo/ with an SR sweep, a bypass sweep, presets and failures, but no pct3x3 sweep,
    reported once as PNG and SVG over a stale micro_pct3x3.png from an imagined earlier report.
    Its ok runs measured their latency (trainer.latency=true), so the latency front is drawn."""
    root = tmp_path_factory.mktemp("runs") / "demo"
    write_store(root / "results.db", demo_records(seeds=2, pct3x3=False, latency=True))
    (root / "report").mkdir()
    (root / "report" / "micro_pct3x3.png").write_bytes(b"stale")
    main([str(root), "--format", "png,svg"])
    return root


def test_every_supported_chart_is_a_sane_png(study: Path) -> None:
    out = study / "report"
    for name in CHARTS:
        path = out / f"{name}.png"
        assert path.is_file(), name
        with Image.open(path) as im:
            im.verify()
        with Image.open(path) as im:
            assert im.format == "PNG"
            w, h = im.size
            assert 900 <= w <= 2200 and 500 <= h <= 1400, (name, im.size)
            # not a blank canvas: a chart has many distinct colours
            assert len(im.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 50


def test_chart_without_its_sweep_is_skipped_and_explained(study: Path) -> None:
    out = study / "report"
    assert not (out / "micro_pct3x3.png").exists()
    md = (out / "report.md").read_text()
    assert "micro_pct3x3 " in md and "skipped: no group of ok runs varies only pct3x3" in md


def test_report_markdown_has_tables_pareto_set_counts_and_commands(study: Path) -> None:
    md = (study / "report" / "report.md").read_text()
    for name in CHARTS:
        assert f"]({name}.png)" in md
    assert "## Runs by status" in md and "| demo " in md
    assert "### Pareto set" in md and "SqueezeNet" in md
    assert "90." in md and "±" in md  # accuracies in percent with seed std
    assert "dse-train -m study=demo model.sr=0.125,0.25,0.375,0.5,0.625,0.75,0.875,1.0" in md
    assert "dse-train -m study=demo model.bypass=simple,complex" in md
    assert "CUDA out of memory" not in md  # that failure belongs to the (absent) pct3x3 sweep
    assert "dead ReLUs" in md  # the diverged run is listed with its reason
    df = load(study)
    points = F.pareto_frame(df)
    assert f"{int(points['pareto'].sum())} of {len(points)} points are on it" in md
    fast = F.pareto_frame(df, cost="latency_ms")
    assert fast.attrs["cost"] == "latency_ms" and len(fast) == len(points)  # every point timed
    assert f"{int(fast['pareto'].sum())} of {len(fast)} points are on it" in md
    section = md.split("## Pareto front: accuracy vs latency")[1].split("\n## ")[0]
    assert "measured on the CPU after training with 1 thread(s)" in section
    assert "### Which design points win on each front" in section and "| wins on" in section
    fronts = F.fronts_frame({"size_bytes": points, "latency_ms": fast})
    assert len(fronts) == len(set(points.loc[points["pareto"], "point"])
                              | set(fast.loc[fast["pareto"], "point"]))
    assert section.count("| both ") + section.count("| size only ") + section.count(
        "| latency only ") == len(fronts)


def test_report_markdown_answers_which_knob_where_and_whether_real(study: Path) -> None:
    md = (study / "report" / "report.md").read_text()
    df = load(study)
    imp = importance_frame(df)
    section = md.split("## Metaparameter importances (fANOVA, PED-ANOVA)")[1].split("\n## ")[0]
    assert "](importance.png)" in section
    assert f"over the {imp.attrs['n_runs']} ok runs the evaluators saw" in section
    assert section.count("| numeric ") + section.count("| categorical ") == len(imp)
    ranges = md.split("## Good ranges (best 25 % of runs)")[1].split("\n## ")[0]
    assert f"| {good_ranges(df).iloc[0]['knob']} " in ranges
    verdicts = study_verdicts(df)
    (v,) = verdicts
    assert f"- **SR:** {describe(v.sr)}" in md
    assert "the rise is distinguishable from seed noise" in describe(v.sr)
    assert "SR 1 left out (< 2 ok seeds)" in describe(v.sr)  # its seed 0 diverged
    assert "- **pct3x3:** Not enough data for the pct3x3 trend: no group of ok runs" in md
    check = md.split("## Paper check")[1].split("\n## ")[0]
    table = paper_check(verdicts)
    assert len(table) == 5 and table.loc[1, "outcome"] == "not enough data"  # no pct3x3 sweep
    for claim, outcome in zip(table["claim"], table["outcome"], strict=True):
        assert re.search(rf"\| {re.escape(claim)} .*\| {outcome} +\|", check), claim


def test_svg_too_and_no_stale_chart_left(study: Path) -> None:
    out = study / "report"
    for name in CHARTS:
        assert (out / f"{name}.svg").read_text().lstrip().startswith(("<?xml", "<svg")), name
    assert not (out / "micro_pct3x3.png").exists()  # skipped now, so the old file is removed
    assert "](pareto.png)" in (out / "report.md").read_text()  # PNG preferred in the links


def test_store_with_only_failed_runs_says_so(tmp_path: Path) -> None:
    cfg = base_config("bad")
    rows = [record(cfg, s, "study=bad", status="failed", error="boom") for s in range(2)]
    write_store(tmp_path / "bad" / "results.db", rows)
    out = tmp_path / "elsewhere"
    main([f"sqlite:///{tmp_path / 'bad' / 'results.db'}", "--out", str(out)])
    assert not (tmp_path / "bad" / "report").exists()
    assert not list(out.glob("*.png"))
    md = (out / "report.md").read_text()
    assert "No run finished ok" in md and "skipped: no run finished ok (2 failed)" in md


def test_report_says_how_many_trials_moasha_stopped_at_each_rung(tmp_path: Path) -> None:
    """#28: one line per rung, a trial counted once however many of its seeds stopped there; a run
    pruned by another pruner names no rung."""
    from dse.store.record import PRUNED_AT

    def point(trial: int) -> dict:  # one design point per trial
        cfg = base_config("ms")
        return {**cfg, "model": {**cfg["model"], "sr": trial / 8}}

    at = [PRUNED_AT.format(rung=r, rank=2, of=4, top=2) for r in (1, 2)]
    rows = [record(point(1), s, "trial=1", status="pruned", error=at[1], trial=1) for s in (0, 1)]
    rows += [record(point(t), 0, f"trial={t}", status="pruned", error=e, trial=t)
             for t, e in ((2, at[1]), (3, at[0]), (4, "Trial was pruned at epoch 0."))]
    write_store(tmp_path / "ms" / "results.db", rows)
    main([str(tmp_path / "ms" / "results.db"), "--out", str(tmp_path / "out")])
    md = (tmp_path / "out" / "report.md").read_text().split("## Runs by status")[1].split("## Charts")[0]
    assert md.strip().splitlines()[-2:] == ["- 1 trial stopped at rung 1", "- 2 trials stopped at rung 2"]


def test_optuna_storage_becomes_the_same_frame(tmp_path: Path) -> None:
    """Trials as dse's sweeper writes them: params named by override keys, objectives named by
    ``metric_names``, the job summary in user attr ``result``, budget rejections, a discarded
    claim."""
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution, FloatDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    dists = {"model.sr": FloatDistribution(0.125, 1.0, step=0.125),
             "model.bypass": CategoricalDistribution(["none", "simple"])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        st = optuna.create_study(study_name="opt", storage=url,
                                 directions=["maximize", "minimize"])
        st.set_metric_names(["val_top1", "size_mib"])
        optuna.create_study(study_name="other", storage=url)
    st.set_user_attr("constraints", [{"metric": "size_mib", "op": "<=", "bound": 10.0}])
    for i, sr in enumerate([0.125, 0.25, 0.5, 0.75]):
        st.add_trial(create_trial(
            params={"model.sr": sr, "model.bypass": "none"}, distributions=dists,
            values=[0.9 + i / 100, i + 1.0],
            user_attrs={"result": {"status": "ok", "size_bytes": 1_000_000 * (i + 1),
                                   "params": 250_000 * (i + 1), "test_top1": 0.89 + i / 100}}))
    st.add_trial(create_trial(params={"model.sr": 1.0, "model.bypass": "simple"},
                              distributions=dists, state=TrialState.FAIL,
                              user_attrs={"error": "RuntimeError: boom"}))
    st.add_trial(create_trial(params={"model.sr": 1.0, "model.bypass": "none"},
                              distributions=dists, state=TrialState.FAIL,
                              user_attrs={"rejected": "size_mib=22 breaks size_mib <= 10",
                                          "analytic": {"size_bytes": 23_000_000}}))
    st.add_trial(create_trial(params={"model.sr": 0.5, "model.bypass": "simple"},
                              distributions=dists, state=TrialState.PRUNED))
    st.add_trial(create_trial(params={"model.sr": 0.5, "model.bypass": "none"},
                              distributions=dists, state=TrialState.FAIL,
                              user_attrs={"discarded": "n_trials already claimed"}))
    # dse-train's own rows for the trained trials, in the results.db beside the storage, fill
    # what the trials lack (MACs, config hash, pct3x3...); the rejected trial never trained
    sib = []
    for i, sr in enumerate([0.125, 0.25, 0.5, 0.75]):
        cfg = base_config("opt")
        cfg["model"]["sr"] = sr
        sib.append(record(cfg, 0, f"study=opt model.sr={sr}", accuracy=0.9, trial=i))
    write_store(tmp_path / "results.db", sib)
    df = load(url, study="opt")
    assert df["macs"].iloc[:4].tolist() == [r["macs"] for r in sib]
    assert df["config_hash"].iloc[:4].tolist() == [r["config_hash"] for r in sib]
    assert df["pct3x3"].iloc[:4].tolist() == [0.5] * 4 and df["macs"].iloc[4:].isna().all()
    assert df["status"].tolist() == ["ok"] * 4 + ["failed", "rejected", "pruned"]
    assert df["trial"].tolist() == list(range(7))  # the discarded claim is not a run
    assert df["sr"].tolist() == [0.125, 0.25, 0.5, 0.75, 1.0, 1.0, 0.5]
    assert df["val_top1"].iloc[:4].tolist() == pytest.approx([0.9, 0.91, 0.92, 0.93])
    assert df["size_bytes"].iloc[:4].tolist() == [1_000_000, 2_000_000, 3_000_000, 4_000_000]
    assert df["size_bytes"].iloc[5] == 23_000_000
    assert df["error"].iloc[4] == "RuntimeError: boom" and "breaks" in df["error"].iloc[5]
    assert df["size_mib"].iloc[:4].tolist() == [1.0, 2.0, 3.0, 4.0]  # extra objective column
    assert F.pareto_frame(df)["pareto"].all()  # bigger is always more accurate here
    assert F.sr_frame(df)["sr"].tolist() == [0.125, 0.25, 0.5, 0.75]
    assert set(load(url)["study"]) == {"opt"}  # "other" has no trials
    # the sweep's budget, recorded on the study, reaches the chart's frame from the storage and
    # from the results.db beside it (which does not record the sweep's constraints itself)
    assert df.attrs["budgets"] == {"opt": [("size_mib", "<=", 10.0)]}
    assert F.pareto_frame(df).attrs["budgets"] == [("size_mib <= 10", 10.0)]
    beside = load(tmp_path / "results.db")
    assert beside.attrs["budgets"]["opt"] == [("size_mib", "<=", 10.0)]
    assert F.pareto_frame(beside).attrs["budgets"] == [("size_mib <= 10", 10.0)]
    with pytest.raises(LoadError, match="unknown study 'nope'"):
        load(url, study="nope")
