"""What the charts draw, read back from the matplotlib artists: limits, lines, legend handles.

Rows come from :mod:`dse.analysis.synthetic` (real sizes and hashes, chosen accuracies), so each test
states where a point, a budget or the chance level must sit on the axes.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure

from dse.analysis import frames as F
from dse.analysis import plots as P
from dse.analysis.loading import load
from dse.analysis.pareto_plot import cost_axis
from dse.analysis.report import (
    _bad_runs_section,
    _pareto_text,
    build_charts,
    fronts_table,
    pareto_table,
    render_markdown,
)
from dse.analysis.synthetic import base_config, demo_records, record
from dse.metrics import REGISTRY, to_mib

RUG_TITLE = "runs that are not design points (no accuracy plotted)"


def _point(subset: int | None, epochs: int, base_e: int, bypass: str, acc: float, status: str = "ok",
           study: str = "pareto") -> dict:
    cfg = base_config(study, max_epochs=epochs)
    cfg["data"]["subset"] = subset
    cfg["model"].update(base_e=base_e, incr_e=base_e, bypass=bypass)
    r = record(cfg, 0, f"model.base_e={base_e} model.bypass={bypass} data.subset={subset}",
               status=status, accuracy=acc)
    if status != "ok":
        r.update(val_top1=None, test_top1=None, val_top5=None, test_top5=None)
    return r


def _sweep_study() -> pd.DataFrame:
    """Two data settings (subset 4000 for 3 epochs, 500 for 1) of the same four widths, and one
    point rejected far beyond every trained size, under a 5 MiB budget."""
    rows = [_point(subset, epochs, base_e, "simple" if base_e == 32 else "none",
                   acc + 0.01 * i)
            for subset, epochs, acc in ((4000, 3, 0.82), (500, 1, 0.70))
            for i, base_e in enumerate((16, 32, 64, 128))]
    rows.append(_point(4000, 3, 512, "none", 0.0, status="rejected"))
    df = load(pd.DataFrame(rows))
    df.attrs["budgets"] = {"pareto": [("size_mib", "<=", 5.0)]}
    return df


def _axes(fig: Figure) -> tuple[Axes, Axes | None]:
    """The Pareto chart's accuracy axes and its rug (None when there is none)."""
    rug = [a for a in fig.axes if a.get_title(loc="left") == RUG_TITLE]
    main = [a for a in fig.axes if "accuracy" in a.get_ylabel()]
    return main[0], (rug[0] if rug else None)


def _vlines(ax: Axes) -> list[float]:
    return [float(ln.get_xdata()[0]) for ln in ax.get_lines()
            if len(set(np.asarray(ln.get_xdata(), float))) == 1 and ln.get_xdata()[0] > 0
            and tuple(ln.get_ydata()) == (0, 1)]


@pytest.fixture(scope="module")
def sweep() -> tuple[pd.DataFrame, pd.DataFrame, Figure]:
    df = _sweep_study()
    points = F.pareto_frame(df)
    return df, points, P.plot_pareto(points, df, P.context_title(df), points.attrs["metric"])


def test_rug_points_lie_inside_the_shared_x_range(sweep) -> None:
    df, _, fig = sweep
    ax, rug = _axes(fig)
    assert rug is not None
    (rejected,) = [c for c in rug.collections if len(c.get_offsets())]
    x = float(rejected.get_offsets()[0][0])
    size_bytes = float(df.loc[df["status"] == "rejected", "size_bytes"].iloc[0])
    assert x == pytest.approx(size_bytes / 2**20)  # at its size in MiB, beyond every point
    for axes in (ax, rug):
        lo, hi = axes.get_xlim()
        assert lo < x < hi


def test_size_axis_is_mib_like_the_objective(sweep) -> None:
    _, points, fig = sweep
    ax, rug = _axes(fig)
    assert "MiB" in rug.get_xlabel() and "MB" not in rug.get_xlabel().replace("MiB", "")
    drawn = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections if c.get_sizes()[0] == 34])
    assert sorted(drawn) == pytest.approx(sorted(points["size_bytes"].astype(float) / 2**20))
    sweep_fig = P.plot_sweep(F.sr_frame(load(pd.DataFrame(demo_records()))), "t")
    assert "model size (MiB, fp32)" in [a.get_ylabel() for a in sweep_fig.axes]


def test_budget_is_a_line_on_the_cost_axis_with_its_label(sweep) -> None:
    _, points, fig = sweep
    assert points.attrs["budgets"] == [("size_mib <= 5", 5.0)]
    ax, rug = _axes(fig)
    assert _vlines(ax) == [5.0] and _vlines(rug) == [5.0]
    labels = [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]
    assert "budget size_mib <= 5" in labels
    # a budget in MB or bytes is drawn at its MiB; one on another metric is not a size line
    df = _sweep_study()
    df.attrs["budgets"] = {"pareto": [("size_mb", "<=", 2.0), ("val_top1", ">=", 0.3)],
                           "other study": [("size_bytes", "<=", 1.0)]}
    assert F.budget_lines(df, "size_bytes") == [("size_mb <= 2", pytest.approx(2e6 / 2**20))]
    assert F.budget_lines(df, "latency_ms") == []
    df.attrs["budgets"] = {}  # a grid store: nothing drawn
    no_budget = F.pareto_frame(df)
    fig = P.plot_pareto(no_budget, df, "t", no_budget.attrs["metric"])
    assert _vlines(_axes(fig)[0]) == []


def test_single_runs_legend_shows_the_colours_drawn(sweep) -> None:
    _, _, fig = sweep
    ax, _ = _axes(fig)
    faint = {tuple(c.get_facecolor()[0]) for c in ax.collections
             if c.get_alpha() == 0.3 and len(c.get_offsets())}
    legend = next(a.get_legend() for a in fig.axes if a.get_legend())
    assert "single runs (seeds)" in [t.get_text() for t in legend.get_texts()]
    shown = {tuple(c.get_facecolor()[0]) for c in legend.findobj(PathCollection)
             if c.get_alpha() == 0.3}
    assert shown == faint and len(faint) == 2  # none and simple bypass: blue and green
    assert not any(np.allclose(c[:3], 0.5) for c in shown)  # no grey that nothing on the chart is


def test_one_front_per_data_setting(sweep) -> None:
    df, points, fig = sweep
    assert points.attrs["setting"] == ["subset", "max_epochs"]
    assert points.attrs["settings"] == ["subset=500 max_epochs=1", "subset=4000 max_epochs=3"]
    # every width is more accurate than the last in both settings: each is its own full front;
    # one front over both would have dropped all of subset 500 (less accurate at equal size)
    fronts = points[points["pareto"]].groupby("setting")["label"].apply(list).to_dict()
    assert fronts == {"subset=500 max_epochs=1": [1, 2, 3, 4],
                      "subset=4000 max_epochs=3": [5, 6, 7, 8]}
    assert "subset" not in " ".join(points["desc"])  # the setting is named once, not per point
    ax, _ = _axes(fig)
    styles = {ln.get_linestyle() for ln in ax.get_lines() if len(ln.get_xdata()) > 2}
    assert len(styles) == 2  # two staircases, told apart by line style
    labels = [t.get_text() for a in fig.axes if a.get_legend() for t in a.get_legend().get_texts()]
    assert {"Pareto front, subset=500 max_epochs=1",
            "Pareto front, subset=4000 max_epochs=3"} <= set(labels)
    assert "one front per data setting" in fig.texts[0].get_text()
    text = " ".join(_pareto_text(points))
    assert "one front per setting (subset=500 max_epochs=1; subset=4000 max_epochs=3)" in text
    assert "budget `size_mib <= 5` is drawn" in text
    table = pareto_table(points)
    assert table["data setting"].tolist() == ["subset=500 max_epochs=1"] * 4 + [
        "subset=4000 max_epochs=3"] * 4


def _near_chance(acc: float) -> pd.DataFrame:
    rng = random.Random(0)
    rows = []
    for sr in (0.125, 0.25, 0.5, 0.75, 1.0):
        cfg = base_config("chance")
        cfg["model"]["sr"] = sr
        rows += [record(cfg, s, f"model.sr={sr}", accuracy=acc + 0.03 * rng.random())
                 for s in range(2)]
    return F.sr_frame(load(pd.DataFrame(rows)))


def _hlines(ax: Axes) -> list[float]:
    return [float(ln.get_ydata()[0]) for ln in ax.get_lines()
            if tuple(ln.get_xdata()) == (0, 1)]


def test_sr_chart_draws_chance_when_the_curves_come_near_it() -> None:
    fig = P.plot_sweep(_near_chance(0.11), "near chance")  # 11-14 %, 10 classes
    top = next(a for a in fig.axes if a.get_ylabel() == "top-1 accuracy (%)")
    assert _hlines(top) == [10.0]
    assert top.get_ylim()[0] < 10.0  # the zoom includes chance
    assert "chance (10 %)" in [t.get_text() for t in top.get_legend().get_texts()]
    far = P.plot_sweep(_near_chance(0.85), "far above chance")  # 85-88 %: keeps its zoom
    top = next(a for a in far.axes if a.get_ylabel() == "top-1 accuracy (%)")
    assert _hlines(top) == [] and top.get_ylim()[0] > 80
    assert F.chance(10) == 0.1 and F.chance(10, 5) == 0.5 and F.chance(None) is None


def test_a_setting_without_subset_reads_as_the_whole_training_set() -> None:
    rows = [_point(subset, 3, base_e, "none", 0.8 + base_e / 1000)
            for subset in (None, 500) for base_e in (16, 64)]
    points = F.pareto_frame(load(pd.DataFrame(rows)))
    assert points.attrs["settings"] == ["subset=500", "subset=all"]
    assert points.groupby("setting")["pareto"].sum().to_dict() == {"subset=500": 2,
                                                                   "subset=all": 2}


def test_cost_axes_are_in_their_objectives_unit(sweep) -> None:
    df, points, fig = sweep
    size = cost_axis("size_bytes")
    assert f"({REGISTRY['size_mib'].unit}, " in size.label and size.unit == "MiB"
    assert size.x(points).tolist() == pytest.approx(to_mib(points["size_bytes"].astype(float)).tolist())
    assert f"({REGISTRY['latency_ms'].unit}, " in cost_axis("latency_ms").label
    ax, rug = _axes(fig)
    assert rug.get_xlabel() == size.label  # the rug shares the main axis's unit
    key = next(t.get_text() for a in fig.axes for t in a.texts if t.get_text().startswith(" #"))
    first = points[points["label"] == 1].iloc[0]
    assert f"{to_mib(float(first['size_bytes'])):6.2f}" in key.splitlines()[2]
    rejected = float(df.loc[df["status"] == "rejected", "size_bytes"].iloc[0])
    table = _bad_runs_section(df)[2].splitlines()  # the rug's runs in report.md, in its unit too
    assert table[0].split("|")[7].strip() == "MiB" and f"| {to_mib(rejected):.2f} |" in table[2]


def test_pareto_and_bypass_charts_draw_chance_near_it(sweep) -> None:
    assert _hlines(_axes(sweep[2])[0]) == []  # 70-85 %: far above 10 %, no line
    rows = [_point(None, 1, base_e, kind, 0.11 + 0.01 * i)
            for i, (base_e, kind) in enumerate([(16, "none"), (32, "simple"), (64, "complex")])]
    df = load(pd.DataFrame(rows))
    points = F.pareto_frame(df)
    ax, _ = _axes(P.plot_pareto(points, df, "t", points.attrs["metric"]))
    assert _hlines(ax) == [10.0] and ax.get_ylim()[0] < 10.0 < 11.0 < ax.get_ylim()[1]
    assert "chance (10 %)" in [t.get_text() for a in ax.figure.axes if a.get_legend()
                               for t in a.get_legend().get_texts()]
    rows = [_point(None, 1, 64, kind, 0.11 + 0.01 * i)
            for i, kind in enumerate(["none", "simple", "complex"])]
    top1 = next(a for a in P.plot_bypass(F.bypass_frame(load(pd.DataFrame(rows))), "t").axes
                if a.get_ylabel() == "top-1 accuracy (%)")
    assert _hlines(top1) == [10.0] and top1.get_ylim()[0] < 10.0
    assert [t.get_text() for t in top1.get_legend().get_texts()] == ["chance (10 %)"]


def test_a_hashed_data_key_without_a_column_still_separates_fronts() -> None:
    rows = []
    for augment in (False, True):
        for base_e in (16, 64):
            cfg = base_config("pareto")
            cfg["data"]["augment"] = augment
            cfg["model"].update(base_e=base_e, incr_e=base_e)
            rows.append(record(cfg, 0, f"data.augment={augment} model.base_e={base_e}",
                               accuracy=0.8 + base_e / 1000 - 0.1 * augment))
    df = load(pd.DataFrame(rows))
    points = F.pareto_frame(df)
    assert points.attrs["settings"] == ["data.augment=false", "data.augment=true"]
    assert points.groupby("setting")["pareto"].sum().to_dict() == {"data.augment=false": 2,
                                                                   "data.augment=true": 2}
    ax, _ = _axes(P.plot_pareto(points, df, "t", points.attrs["metric"]))
    assert sum(len(c.get_offsets()) for c in ax.collections if c.get_alpha() == 0.3) == 4  # every run
    cifar = base_config("pareto")  # another dataset: its own channels and sizes, named once
    cifar["data"].update(name="cifar10", channels=3, image_size=32, val_size=5000)
    cifar["model"]["in_channels"] = 3
    rows = [rows[0], rows[1], record(cifar, 0, "data=cifar10", accuracy=0.6)]
    assert F.pareto_frame(load(pd.DataFrame(rows))).attrs["setting"] == ["data", "image_size"]


def test_titles_name_every_subset_the_runs_mix() -> None:
    rows = [_point(subset, 1, 16, "none", 0.8) for subset in (None, 500)]
    assert P.context_title(load(pd.DataFrame(rows))).endswith("1 epoch · subset 500/all")
    assert P.context_title(load(pd.DataFrame(rows[:1]))).endswith("1 epoch")  # the whole set alone
    fixed = {"study": "s", "data": "d", "max_epochs": 3, "subset": 4000}  # a sweep's fixed values
    assert P.context_title(fixed) == "study s · d · 3 epochs · subset 4000"


def test_latency_fronts_table_names_the_data_setting() -> None:
    rows = [_point(subset, 1, base_e, "none", 0.7 + base_e / 1000)
            for subset in (None, 500) for base_e in (16, 64)]
    for r, ms in zip(rows, (1.0, 2.0, 1.5, 2.5), strict=True):
        r.update(latency_ms=ms)
    df = load(pd.DataFrame(rows))
    size, fast = F.pareto_frame(df), F.pareto_frame(df, cost="latency_ms")
    table = fronts_table(F.fronts_frame({"size_bytes": size, "latency_ms": fast}))
    assert table["data setting"].tolist() == ["subset=500"] * 2 + ["subset=all"] * 2


def test_edf_curves_never_pool_data_settings(sweep) -> None:
    edf = F.edf_frame(sweep[0])
    assert edf.attrs["by"] == ["bypass", "setting"]
    assert edf.groupby("group")["n"].first().to_dict() == {
        "none / subset=4000 max_epochs=3": 3, "none / subset=500 max_epochs=1": 3,
        "simple / subset=4000 max_epochs=3": 1, "simple / subset=500 max_epochs=1": 1}
    fig = P.plot_edf(edf, "t")
    assert len({ln.get_linestyle() for ln in fig.axes[0].get_lines()}) == 2  # one style per setting
    fig.canvas.draw()
    box = fig.axes[0].get_legend().get_window_extent()
    assert box.x0 >= 0 and box.x1 <= fig.bbox.x1  # the long labels stay on the figure


def test_report_says_up_front_which_sections_pool_data_settings(sweep, tmp_path) -> None:
    md = render_markdown(sweep[0], build_charts(sweep[0], tmp_path))
    head = md.split("## Runs by status")[0]
    assert ("> **2 data settings** (subset=500 max_epochs=1; subset=4000 max_epochs=3): accuracies compare "
            "only within one") in head and "the importances and good ranges pool them" in head
    one = load(pd.DataFrame(demo_records()))
    assert "data settings" not in render_markdown(one, build_charts(one, tmp_path)).split("## Runs by")[0]
