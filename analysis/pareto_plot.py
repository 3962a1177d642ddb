"""The Pareto charts: accuracy against a cost (model size, or a measured latency) for every design
point, the front numbered.

Its own module because it is the largest chart: a log-cost scatter per bypass kind, the front as a
staircase, a key table naming each numbered point's metaparameters, a rug of the runs that are not
design points (on the size chart: they have a size but no latency), and labels placed after layout
(:mod:`analysis.labels`). It is drawn from :func:`analysis.frames.pareto_frame` (whose
``attrs["cost"]`` picks the axis) and importable as :func:`analysis.plots.plot_pareto`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from analysis.frames import BYPASS_ORDER, ok_runs
from analysis.labels import place_labels
from analysis.style import STATUS_STYLE, accuracy_name, bypass_color, bypass_kinds, new_figure, styled
from dse.metrics import REGISTRY, to_mb

SIZE_AXIS = "model size (MB, fp32 weights, log scale)"


@dataclass(frozen=True)
class CostAxis:
    """How one cost is drawn: the points' x column, each run's x, the axis and key wording."""

    column: str  # in the pareto frame
    run_x: Callable[[pd.DataFrame], pd.Series]
    label: str  # the x axis
    unit: str  # the key table's column
    what: str  # "model size": the title and the legend
    fmt: str = "6.2f"  # the key table's cells


def cost_axis(cost: str) -> CostAxis:
    """The axis of :func:`analysis.frames.pareto_frame`'s ``cost``: MB for the fp32 size, the
    metric's own unit (ms) for a latency."""
    if cost == "size_bytes":
        return CostAxis("size_mb", lambda runs: to_mb(runs["size_bytes"].astype(float)), SIZE_AXIS,
                        "MB", "model size")
    m = REGISTRY[cost]
    return CostAxis("cost", lambda runs: runs[cost].astype(float),
                    f"{m.label} ({m.unit}, log scale)", m.unit, "latency" if m.latency else m.label,
                    "6.3g")


@styled
def plot_pareto(points: pd.DataFrame, runs: pd.DataFrame, title: str, metric: str,
                max_table: int = 24) -> Figure:
    """Accuracy against the frame's cost (log x: model size, or a latency) for every ok run and
    design point, the Pareto front as a staircase with numbered points and a key table, presets
    starred, failed runs in a rug (size chart only: they have no latency)."""
    axis = cost_axis(points.attrs.get("cost", "size_bytes"))
    bad = runs[runs["status"] != "ok"]
    has_rug = not bad.empty and axis.column == "size_mb"
    front = points[points["pareto"]].sort_values("cost")
    fig = new_figure(12.5, 6.4)
    gs = fig.add_gridspec(2 if has_rug else 1, 2, width_ratios=[2.1, 1],
                          height_ratios=[7, 1] if has_rug else None)
    ax = fig.add_subplot(gs[0, 0])
    key = fig.add_subplot(gs[:, 1])
    key.axis("off")
    ok = ok_runs(runs)
    ok = ok[ok[metric].notna() & axis.run_x(ok).notna()]
    name = accuracy_name(metric)
    _draw_points(ax, points, ok, metric, axis)
    _draw_front(ax, front, axis)
    # The per-seed dots stay unlabelled (one entry per kind would crowd the key): one grey entry.
    ax.scatter([], [], s=9, color="0.5", alpha=0.4, label="single runs (seeds)")
    _cost_accuracy_axes(ax, points, ok[metric], name, axis)
    handles, labels = ax.get_legend_handles_labels()
    key.legend(handles, labels, loc="lower left", frameon=False, fontsize=8)
    if has_rug:
        _draw_rug(fig.add_subplot(gs[1, 0], sharex=ax), bad)
        ax.tick_params(labelbottom=False)
    else:
        ax.set_xlabel(axis.label)
    fig.suptitle(f"Pareto front: {name} accuracy vs {axis.what} — {title}\n"
                 f"{len(points)} design points from {len(ok)} ok runs; "
                 f"{len(bad)} not ok", fontsize=10)
    _key_table(key, front, max_table, axis)
    if not front.empty:
        _number_front(ax, points, front, axis)
    return fig


def _draw_points(ax: Axes, points: pd.DataFrame, ok: pd.DataFrame, metric: str,
                 axis: CostAxis) -> None:
    """Per bypass kind, faint single runs under solid design-point means; presets as big stars."""
    point_kind, run_kind = bypass_kinds(points["bypass"]), bypass_kinds(ok["bypass"])
    for kind in [*BYPASS_ORDER, *sorted(set(point_kind) - set(BYPASS_ORDER))]:
        sel = points[point_kind == kind]
        if sel.empty:
            continue
        rsel = ok[run_kind == kind]
        ax.scatter(axis.run_x(rsel), 100 * rsel[metric], s=9, color=bypass_color(kind),
                   alpha=0.3, lw=0, zorder=2)
        plain = sel[~sel["preset"]]
        ax.scatter(plain[axis.column], 100 * plain["acc_mean"], s=34, color=bypass_color(kind),
                   edgecolor="white", lw=0.6, zorder=3, label=f"bypass={kind}")
    presets = points[points["preset"]]
    if not presets.empty:
        ax.scatter(presets[axis.column], 100 * presets["acc_mean"], s=170, marker="*",
                   color=[bypass_color(k) for k in presets["bypass"]], edgecolor="black",
                   lw=0.8, zorder=5, label="SqueezeNet preset (v1.0 / v1.1)")


def _draw_front(ax: Axes, front: pd.DataFrame, axis: CostAxis) -> None:
    """The front as a staircase (what any cost buys at best) and rings on its points.

    The last step runs on past the largest point so its level reads as a step, not a dot.
    """
    if front.empty:
        return
    fx = front[axis.column].to_numpy(float)
    fy = 100 * front["acc_mean"].to_numpy(float)
    short = "size" if axis.column == "size_mb" else axis.what
    ax.step(np.append(fx, fx[-1] * 1.15), np.append(fy, fy[-1]), where="post", color="black",
            lw=1.2, alpha=0.7, zorder=4, label=f"Pareto front (max acc, min {short})")
    ax.scatter(fx, fy, s=70, facecolor="none", edgecolor="black", lw=1.1, zorder=6)


def _cost_accuracy_axes(ax: Axes, points: pd.DataFrame, run_acc: pd.Series, name: str,
                        axis: CostAxis) -> None:
    """Log cost axis with plain-number ticks; limits that fit every point and every single run."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = float(points[axis.column].min()), float(points[axis.column].max())
    ax.set_xlim(lo / 1.25, hi * 1.25)
    ys = 100 * pd.concat([points["acc_mean"], run_acc]).astype(float)
    span = max(float(ys.max() - ys.min()), 0.5)
    ax.set_ylim(float(ys.min()) - 0.08 * span, float(ys.max()) + 0.15 * span)
    ax.set_ylabel(f"{name} accuracy (%), mean over seeds")
    ax.grid(True, which="both", alpha=0.25)


def _draw_rug(rug: Axes, bad: pd.DataFrame) -> None:
    """One row per status of the runs that are not design points, at their model size.

    They have no accuracy to plot, but where a study lost runs along the size axis is a result;
    runs of unknown size are counted in the row's label instead.
    """
    statuses = [s for s in STATUS_STYLE if (bad["status"] == s).any()]
    statuses += sorted(set(bad["status"]) - set(statuses))
    tick_labels: list[str] = []
    for i, s in enumerate(statuses):
        sel = bad[bad["status"] == s]
        sized = sel[sel["size_bytes"].notna()]
        marker, color = STATUS_STYLE.get(s, ("o", "#7f7f7f"))
        rug.scatter(to_mb(sized["size_bytes"].astype(float)), np.full(len(sized), i),
                    marker=marker, color=color, s=36, zorder=3)
        missing = len(sel) - len(sized)
        size_note = ("" if not missing else ", size unknown" if missing == len(sel)
                     else f", {missing} of unknown size")
        tick_labels.append(f"{s} ({len(sel)}{size_note})")
    rug.set_yticks(range(len(statuses)))
    rug.set_yticklabels(tick_labels, fontsize=8)
    rug.set_ylim(-0.7, len(statuses) - 0.3)
    rug.grid(True, axis="x", which="both", alpha=0.25)
    rug.set_xlabel(SIZE_AXIS)
    rug.set_title("runs that are not design points (no accuracy plotted)", fontsize=8, loc="left")


def _key_table(key: Axes, front: pd.DataFrame, max_table: int, axis: CostAxis) -> None:
    """Number -> accuracy, cost and metaparameters for the first ``max_table`` front points."""
    n_table = min(len(front), max_table)
    lines = [f"{'#':>2}  {'acc %':>6}  {axis.unit:>6}  metaparameters"]
    for _, r in front.head(n_table).iterrows():
        lines.append(f"{int(r['label']):>2}  {100 * r['acc_mean']:6.2f}  {r[axis.column]:{axis.fmt}}  "
                     f"{r['desc'] or '(all equal)'}")
    if len(front) > n_table:
        lines.append(f"... {len(front) - n_table} more in report.md")
    key.set_title("Pareto set (numbers on the chart)", fontsize=9, loc="left")
    key.text(0.0, 1.0, _wrap_table(lines, 62), va="top", ha="left", family="monospace",
             fontsize=7.5, transform=key.transAxes)


def _wrap_table(lines: list[str], width: int) -> str:
    """Wrap long metaparameter lists under their own column instead of running off the figure."""
    out = []
    indent = " " * 20
    for line in lines:
        while len(line) > width:
            cut = line.rfind(" ", 20, width)
            cut = cut if cut > 20 else width
            out.append(line[:cut])
            line = indent + line[cut:].lstrip()
        out.append(line)
    return "\n".join(out)


def _number_front(ax: Axes, points: pd.DataFrame, front: pd.DataFrame, axis: CostAxis) -> None:
    """Label the front's points with their key-table numbers, clear of every other marker.

    Labels are placed in pixels, so the layout is run once and then frozen: a later layout pass
    would move the axes under labels that were placed for the old position.
    """
    fig = ax.figure
    fig.canvas.draw()
    fig.set_layout_engine("none")
    rest = points[~points["pareto"]]
    others = rest[[axis.column, "acc_mean"]].to_numpy(float) * np.array([1.0, 100.0])
    place_labels(ax, front[axis.column].astype(float).tolist(),
                 (100 * front["acc_mean"].astype(float)).tolist(),
                 [str(int(v)) for v in front["label"]], avoid_xy=others,
                 avoid_r=np.where(rest["preset"], 10.0, 4.0))
