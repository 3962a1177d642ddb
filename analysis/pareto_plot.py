"""The Pareto charts of :func:`dse.analysis.frames.pareto_frame` against its cost (size or a latency): points
per bypass kind on a log axis, each front a numbered staircase with a key, and (size) a rug of bad runs."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.collections import PathCollection
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.legend_handler import HandlerTuple
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from dse.analysis import style as S
from dse.analysis.frames import chance, ok_runs, setting_of, with_data_keys
from dse.analysis.loading import status_order
from dse.metrics import REGISTRY, to_mib
from dse.model.spec import BYPASS_KINDS


@dataclass(frozen=True)
class CostAxis:
    """How one cost is drawn: its column (in runs and points), the axis and key wording."""

    cost: str
    label: str  # the x axis
    unit: str  # the key table's column
    what: str  # "model size": the title and the legend

    def x(self, frame: pd.DataFrame) -> pd.Series:
        """The column in the axis's unit: the size in MiB through dse.metrics' one conversion."""
        values = frame[self.cost].astype(float)
        return to_mib(values) if self.cost == "size_bytes" else values


def cost_axis(cost: str) -> CostAxis:
    """``cost``'s axis in its metric's unit; the size (bytes) in the ``size_mib`` objective's."""
    size = cost == "size_bytes"
    m = REGISTRY["size_mib" if size else cost]
    return CostAxis(cost, f"{m.label} ({m.unit}{', fp32 weights' if size else ''}, log scale)", m.unit,
                    "latency" if m.latency else m.label)


FRONT_STYLES = (("-", "o"), ("--", "^"), (":", "s"), ("-.", "D"))  # per data setting
MARKER_NAMES = {"o": "circles", "^": "triangles", "s": "squares", "D": "diamonds"}
BUDGET_COLOR = "#8c564b"
KEY_ROWS = 24  # front points listed in the key table; report.md lists them all


@S.styled
def plot_pareto(points: pd.DataFrame, runs: pd.DataFrame, title: str, metric: str) -> Figure:
    """Accuracy against the frame's cost (log x), one numbered front per data setting."""
    axis = cost_axis(points.attrs.get("cost", "size_bytes"))
    bad = runs[runs["status"] != "ok"]
    has_rug = not bad.empty and axis.cost == "size_bytes"
    front = points[points["pareto"]]
    settings = points.attrs.get("settings") or [""]
    fig = S.new_figure(12.5, 6.4)
    gs = fig.add_gridspec(2 if has_rug else 1, 2, width_ratios=[2.1, 1],
                          height_ratios=[7, 1] if has_rug else None)
    ax = fig.add_subplot(gs[0, 0])
    key = fig.add_subplot(gs[:, 1])
    key.axis("off")
    ok = ok_runs(runs)
    ok = ok[ok[metric].notna() & axis.x(ok).notna()]
    ok_setting = setting_of(with_data_keys(ok), points.attrs.get("setting") or [])
    name = S.accuracy_name(metric)
    faint = _draw_points(ax, points, ok, ok_setting, metric, axis, settings)
    for i, setting in enumerate(settings):
        _draw_front(ax, front[front["setting"] == setting], axis, FRONT_STYLES[i % 4], setting)
    budgets = points.attrs.get("budgets") or []
    _draw_budgets(ax, budgets)
    xs = pd.concat([axis.x(points), axis.x(ok), axis.x(bad) if has_rug else None,
                    pd.Series([x for _, x in budgets], dtype=float)])
    ys = 100 * pd.concat([points["acc_mean"], ok[metric]]).astype(float)
    _cost_accuracy_axes(ax, xs, ys, name)
    for classes in sorted(set(points["num_classes"].dropna())):  # one line per dataset's chance
        S.chance_line(ax, chance(classes, REGISTRY[metric].topk or 1), ys.min(), ys.max())
    handles, labels = ax.get_legend_handles_labels()
    key.legend([*handles, tuple(faint)], [*labels, "single runs (seeds)"], loc="lower left",
               frameon=False, fontsize=8, handler_map={tuple: HandlerTuple(ndivide=None, pad=0.1)})
    if has_rug:
        rug_ax = fig.add_subplot(gs[1, 0], sharex=ax)
        _draw_rug(rug_ax, bad, axis)
        _draw_budgets(rug_ax, budgets, label=False)
        ax.tick_params(labelbottom=False)
    else:
        ax.set_xlabel(axis.label)
    fronts = f"; one front per data setting ({', '.join(settings)})" if len(settings) > 1 else ""
    fig.suptitle(f"Pareto front: {name} accuracy vs {axis.what} — {title}\n{len(points)} design points "
                 f"from {len(ok)} ok runs; {len(bad)} not ok{fronts}", fontsize=10)
    _key_table(key, front, axis, settings)
    if not front.empty:
        _number_front(ax, points, front, axis)
    return fig


def _draw_points(ax: Axes, points: pd.DataFrame, ok: pd.DataFrame, ok_setting: pd.Series,
                 metric: str, axis: CostAxis, settings: list[str]) -> list[PathCollection]:
    """Per bypass kind and setting, faint runs under their points, presets as stars; returns the runs."""
    point_kind, run_kind = S.bypass_kinds(points["bypass"]), S.bypass_kinds(ok["bypass"])
    faint: list[PathCollection] = []
    for kind in [*BYPASS_KINDS, *sorted(set(point_kind) - set(BYPASS_KINDS))]:
        if not (point_kind == kind).any():
            continue
        for i, setting in enumerate(settings):
            marker = FRONT_STYLES[i % 4][1]
            rsel = ok[(run_kind == kind) & (ok_setting == setting)]
            runs = ax.scatter(axis.x(rsel), 100 * rsel[metric], s=9, marker=marker,
                              color=S.bypass_color(kind), alpha=0.3, lw=0, zorder=2)
            faint += [runs] if i == 0 else []
            sel = points[(point_kind == kind) & (points["setting"] == setting) & ~points["preset"]]
            ax.scatter(axis.x(sel), 100 * sel["acc_mean"], s=34, marker=marker, color=S.bypass_color(kind),
                       edgecolor="white", lw=0.6, zorder=3, label=f"bypass={kind}" if i == 0 else None)
    presets = points[points["preset"]]
    if not presets.empty:
        ax.scatter(axis.x(presets), 100 * presets["acc_mean"], s=170, marker="*",
                   color=[S.bypass_color(k) for k in presets["bypass"]], edgecolor="black",
                   lw=0.8, zorder=5, label="SqueezeNet preset (v1.0 / v1.1)")
    return faint


def _draw_front(ax: Axes, front: pd.DataFrame, axis: CostAxis, style: tuple[str, str], setting: str) -> None:
    """One setting's front as a staircase (run on past its last point) with rings on its points."""
    if front.empty:
        return
    fx, fy = axis.x(front).to_numpy(), 100 * front["acc_mean"].to_numpy(float)
    short = "size" if axis.cost == "size_bytes" else axis.what
    ls, marker = style
    ax.step(np.append(fx, fx[-1] * 1.15), np.append(fy, fy[-1]), where="post", color="black", ls=ls,
            lw=1.2, alpha=0.7, zorder=4, label=None if setting else f"Pareto front (max acc, min {short})")
    ax.scatter(fx, fy, s=70, facecolor="none", edgecolor="black", lw=1.1, zorder=6)
    if setting:  # the legend's entry: this front's line with its points' marker
        ax.plot([], [], color="black", ls=ls, lw=1.2, marker=marker, ms=5, mfc="0.5", mec="0.5",
                label=f"Pareto front, {setting}")


def _draw_budgets(ax: Axes, budgets: list[tuple[str, float]], label: bool = True) -> None:
    """Each budget on this cost as a vertical line: points past it are infeasible or untrained."""
    for text, x in budgets:
        ax.axvline(x, color=BUDGET_COLOR, ls=(0, (5, 3)), lw=1.2, zorder=1,
                   label=f"budget {text}" if label else None)


def _cost_accuracy_axes(ax: Axes, xs: pd.Series, ys: pd.Series, name: str) -> None:
    """Log cost axis with plain-number ticks; limits fitting every x (here or on the rug) and y (%)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    xs = xs.astype(float)
    xs = xs[np.isfinite(xs) & (xs > 0)]
    ax.set_xlim(float(xs.min()) / 1.25, float(xs.max()) * 1.25)
    span = max(float(ys.max() - ys.min()), 0.5)
    ax.set_ylim(float(ys.min()) - 0.08 * span, float(ys.max()) + 0.15 * span)
    ax.set_ylabel(f"{name} accuracy (%), mean over seeds")
    ax.grid(True, which="both", alpha=0.25)


def _draw_rug(rug: Axes, bad: pd.DataFrame, axis: CostAxis) -> None:
    """The runs that are not design points at their model size, one row per status."""
    statuses = status_order(bad["status"])
    tick_labels: list[str] = []
    for i, s in enumerate(statuses):
        sel = bad[bad["status"] == s]
        sized = sel[sel["size_bytes"].notna()]
        marker, color = S.STATUS_STYLE.get(s, ("o", "#7f7f7f"))
        rug.scatter(axis.x(sized), np.full(len(sized), i), marker=marker, color=color, s=36, zorder=3)
        missing = len(sel) - len(sized)
        size_note = ("" if not missing else ", size unknown" if missing == len(sel)
                     else f", {missing} of unknown size")
        tick_labels.append(f"{s} ({len(sel)}{size_note})")
    rug.set_yticks(range(len(statuses)), tick_labels, fontsize=8)
    rug.set_ylim(-0.7, len(statuses) - 0.3)
    rug.grid(True, axis="x", which="both", alpha=0.25)
    rug.set_xlabel(axis.label)
    rug.set_title("runs that are not design points (no accuracy plotted)", fontsize=8, loc="left")


def _key_table(key: Axes, front: pd.DataFrame, axis: CostAxis, settings: list[str]) -> None:
    """Number -> accuracy, cost and metaparameters of the first :data:`KEY_ROWS` front points."""
    lines = [f"{'#':>2}  {'acc %':>6}  {axis.unit:>6}  metaparameters"]
    fmt = "6.2f" if axis.cost == "size_bytes" else "6.3g"
    shown = front.sort_values("label").head(KEY_ROWS)
    for i, setting in enumerate(settings):
        sel = shown[shown["setting"] == setting]
        if setting and not sel.empty:
            lines.append(f"-- {setting} ({MARKER_NAMES[FRONT_STYLES[i % 4][1]]}) --")
        for (_, r), x in zip(sel.iterrows(), axis.x(sel), strict=True):
            lines.append(f"{int(r['label']):>2}  {100 * r['acc_mean']:6.2f}  {x:{fmt}}  "
                         f"{r['desc'] or '(all equal)'}")
    if len(front) > len(shown):
        lines.append(f"... {len(front) - len(shown)} more in report.md")
    key.set_title("Pareto set (numbers on the chart)", fontsize=9, loc="left")
    text = "\n".join(textwrap.fill(line, 62, subsequent_indent=" " * 20, break_on_hyphens=False)
                     for line in lines)  # long metaparameter lists wrap under their own column
    key.text(0.0, 1.0, text, va="top", ha="left", family="monospace", fontsize=7.5, transform=key.transAxes)


def _number_front(ax: Axes, points: pd.DataFrame, front: pd.DataFrame, axis: CostAxis) -> None:
    """Number the front's points clear of each other and every marker: the first free offset of
    :data:`CANDIDATES`, else the least covering; in pixels, so the layout is frozen first."""
    fig = ax.figure
    fig.canvas.draw()
    fig.set_layout_engine("none")
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0  # display pixels per point
    axbox = ax.get_window_extent(renderer)
    rest = points[~points["pareto"]]
    xs, ys = axis.x(front).to_numpy(), 100 * front["acc_mean"].to_numpy(float)
    pts = ax.transData.transform(np.column_stack([xs, ys]))
    marks = np.vstack([pts, ax.transData.transform(
        np.column_stack([axis.x(rest), 100 * rest["acc_mean"].astype(float)]))])
    radii = np.concatenate([np.full(len(pts), FRONT_RADIUS),
                            np.where(rest["preset"], PRESET_RADIUS, OTHER_RADIUS)])[:, None] * scale
    taken = np.hstack([marks - radii, marks + radii])
    font = FontProperties(size=LABEL_SIZE, weight="bold")
    offsets = np.array(CANDIDATES) * scale
    for (px, py), x, y, label in zip(pts, xs, ys, front["label"], strict=True):
        text = str(int(label))
        tw, th, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
        corner = [px, py] + offsets
        boxes = np.hstack([corner, corner + [tw + 4, th + 3]])
        best = int(np.argmin([_overlap(box, taken, axbox) for box in boxes]))  # the first free, if any
        ax.annotate(text, (x, y), xytext=CANDIDATES[best], textcoords="offset points", fontsize=LABEL_SIZE,
                    fontweight="bold", ha="left", va="bottom",
                    bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none", "alpha": 0.8},
                    arrowprops={"arrowstyle": "-", "lw": 0.7, "color": "0.3", "shrinkA": 0,
                                "shrinkB": 4}, zorder=7).set_in_layout(False)
        taken = np.vstack([taken, boxes[best]])


# The front's numbers are a greedy repel, not a layout solver: a front has a few dozen points, and
# offsets tried nearest-first (in points) keep each label close and the result the same every run.
_RING = [(9, 9), (9, -15), (-17, 9), (-17, -15), (12, -3), (-22, -3), (-3, 12), (-3, -19)]
CANDIDATES = [(dx * k, dy * k) for k in (1.0, 1.7, 2.5, 3.4) for dx, dy in _RING]
FRONT_RADIUS, OTHER_RADIUS, PRESET_RADIUS = 7.0, 4.0, 10.0  # points: the markers' radii
LABEL_SIZE = 8


def _overlap(box: np.ndarray, taken: np.ndarray, axbox: Any) -> float:
    """Area of ``box`` (x0, y0, x1, y1) covering ``taken``, plus 1e6 if it leaves the axes."""
    w = np.minimum(box[2], taken[:, 2]) - np.maximum(box[0], taken[:, 0])
    h = np.minimum(box[3], taken[:, 3]) - np.maximum(box[1], taken[:, 1])
    outside = box[0] < axbox.x0 or box[2] > axbox.x1 or box[1] < axbox.y0 or box[3] > axbox.y1
    return float(np.sum(np.where((w > 0) & (h > 0), w * h, 0.0))) + 1e6 * outside
