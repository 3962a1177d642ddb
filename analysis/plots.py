"""Matplotlib figures drawn from the frames of :mod:`analysis.frames` (no seaborn, no pyplot state).

Each function returns a Figure a notebook can restyle; :mod:`analysis.style` holds what the charts
share (colours, fonts, titles). Error bars are ± one sample standard deviation over seeds (ddof=1)
on every chart that has them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from analysis.fmt import value_text
from analysis.frames import BYPASS_ORDER, ok_runs
from analysis.labels import place_labels
from analysis.style import (
    BYPASS_COLORS,
    DPI,
    FONT,
    STATUS_STYLE,
    bypass_color,
    bypass_kinds,
    context_title,
    fixed_text,
    new_figure,
    styled,
    wrap,
)
from dse.metrics import REGISTRY, to_mb

__all__ = ["BYPASS_COLORS", "DPI", "FONT", "METRIC_STYLE", "OTHER_COLORS", "PARAM_LABEL",
           "SIZE_COLOR", "STATUS_STYLE", "context_title", "fixed_text", "place_labels",
           "plot_bypass", "plot_edf", "plot_pareto", "plot_sweep", "save"]

OTHER_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e"]
METRIC_STYLE: dict[str, dict[str, Any]] = {m: {**style, "label": REGISTRY[m].label} for m, style in {
    "val_top1": {"color": "#1f77b4", "marker": "o", "ls": "-"},
    "test_top1": {"color": "#ff7f0e", "marker": "s", "ls": "--"},
    "val_top5": {"color": "#1f77b4", "marker": "o", "ls": "-"},
    "test_top5": {"color": "#ff7f0e", "marker": "s", "ls": "--"},
}.items()}
SIZE_COLOR = "#555555"
PARAM_LABEL = {"sr": "squeeze ratio SR (squeeze / expand filters)",
               "pct3x3": "3x3 share of expand filters, pct3x3 (%)",
               "bypass": "bypass"}


# -- micro sweeps (Figure 3a / 3b) ----------------------------------------------------------------
@styled
def plot_sweep(frame: pd.DataFrame, title: str) -> Figure:
    """Accuracy (mean ± std over seeds) against SR or pct3x3, model size on the right axis.

    Top-1 and top-5 get separate panels: on a 10-class dataset top-5 sits near 99 % and would
    flatten the top-1 curves if they shared an axis.
    """
    param = frame.attrs["param"]
    metrics = frame.attrs["metrics"]
    top5 = [m for m in metrics if m.endswith("top5")]
    top1 = [m for m in metrics if m.endswith("top1")]
    fig = new_figure(9, 6.8 if top5 else 5.2)
    axes = fig.subplots(2 if top5 else 1, 1, sharex=True,
                        gridspec_kw={"height_ratios": [2.2, 1]} if top5 else None)
    axes = list(np.atleast_1d(axes))
    x = frame[param].astype(float).to_numpy()
    xs = 100 * x if param == "pct3x3" else x
    panels = [(axes[0], top1, "top-1"), *([(axes[1], top5, "top-5")] if top5 else [])]
    for ax, group, name in panels:
        _accuracy_panel(ax, frame, xs, group, name)
    _mark_lost_points(axes[0], frame, xs)
    size = _size_axis(axes[0], frame, xs)
    _sweep_legend(axes[0], size, top5_apart=bool(top5))
    last = axes[-1]
    last.set_xticks(xs)
    last.set_xticklabels([f"{v:g}%" if param == "pct3x3" else f"{v:g}" for v in xs])
    last.set_xlabel(PARAM_LABEL.get(param, param))
    fixed = wrap(fixed_text(frame.attrs["fixed"], skip=[param]))
    fig.suptitle(f"{title}\n{fixed}\n{_seed_note(frame)}", fontsize=10)
    return fig


def _accuracy_panel(ax: Axes, frame: pd.DataFrame, xs: np.ndarray, metrics: list[str],
                    name: str) -> None:
    """One panel of :func:`plot_sweep`: a mean ± std curve per metric of one top-k."""
    for m in metrics:
        st = METRIC_STYLE[m]
        y = 100 * frame[f"{m}_mean"].astype(float).to_numpy()
        err = 100 * frame[f"{m}_std"].astype(float).to_numpy()  # NaN (1 seed): no bar
        ax.errorbar(xs, y, yerr=err, color=st["color"], marker=st["marker"], ls=st["ls"],
                    capsize=3, lw=1.6, ms=5, label=f"{st['label']} (mean ± std)")
    ax.set_ylabel(f"{name} accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.yaxis.set_major_locator(MaxNLocator(6))


def _mark_lost_points(ax: Axes, frame: pd.DataFrame, xs: np.ndarray) -> None:
    """A cross at the foot of the axis where every seed diverged or failed: a value that never
    trained is a result, and a gap in the curve alone would hide it."""
    lost = frame["n"].astype(int).to_numpy() == 0
    if lost.any():
        ax.scatter(xs[lost], np.full(int(lost.sum()), 0.04), transform=ax.get_xaxis_transform(),
                   marker="X", s=60, color=STATUS_STYLE["diverged"][1], clip_on=False,
                   zorder=5, label="no ok run at this value")


def _size_axis(ax: Axes, frame: pd.DataFrame, xs: np.ndarray) -> Axes:
    """Model size on a right-hand axis from 0, so the accuracy/size trade-off reads in one panel."""
    size = ax.twinx()
    size.plot(xs, frame["size_mb"].astype(float), color=SIZE_COLOR, marker="D", ms=4, ls=":",
              lw=1.3, label="model size (MB)")
    size.set_ylabel("model size (MB, fp32)", color=SIZE_COLOR)
    size.tick_params(axis="y", colors=SIZE_COLOR)
    size.set_ylim(0, float(frame["size_mb"].max()) * 1.15)
    return size


def _sweep_legend(ax: Axes, size: Axes, top5_apart: bool) -> None:
    """One legend row above the top panel for both axes, the lost-point marker last.

    With top-5 in its own panel the entries drop "top-1": the panels' y labels already say it.
    """
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = size.get_legend_handles_labels()
    if top5_apart:
        l1 = [lab.replace(" top-1", "") for lab in l1]
    handles, labels = h1 + h2, l1 + l2
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("no ok"))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="lower center",
              bbox_to_anchor=(0.5, 1.0), ncol=len(order), frameon=False)


def _seed_note(frame: pd.DataFrame) -> str:
    """The subtitle line saying how many seeds each point averages and how many runs were lost."""
    bad = int(frame["n_bad"].sum()) if "n_bad" in frame else 0
    seeds = sorted(set(frame["n"].astype(int)) - {0})
    seed_txt = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    bars = ("error bars ± 1 sample std (ddof=1)" if seeds[-1] > 1
            else "one seed per point, so no error bars")
    return (f"n = {seed_txt} ok seed{'s' if seeds[-1] > 1 else ''} per point; {bars}"
            + (f"; {bad} diverged/failed run{'s' if bad != 1 else ''} excluded" if bad else ""))


# -- macro: bypass (Table 3) ----------------------------------------------------------------------
@styled
def plot_bypass(frame: pd.DataFrame, title: str) -> Figure:
    """Bars of val/test accuracy per bypass kind (colour = bypass kind), size under each group."""
    metrics = frame.attrs["metrics"]
    panels = [[m for m in metrics if m.endswith("top1")]]
    if any(m.endswith("top5") for m in metrics):
        panels.append([m for m in metrics if m.endswith("top5")])
    fig = new_figure(4.2 * len(panels) + 2.2, 5.2)
    axes = list(np.atleast_1d(fig.subplots(1, len(panels))))
    kinds = bypass_kinds(frame["bypass"]).tolist()
    xs = np.arange(len(kinds))
    for ax, group in zip(axes, panels, strict=True):
        width = 0.8 / len(group)
        lows, highs = [], []
        for j, m in enumerate(group):
            y = 100 * frame[f"{m}_mean"].astype(float).to_numpy()
            err = 100 * frame[f"{m}_std"].astype(float).to_numpy()  # NaN (1 seed): no bar
            e0 = np.nan_to_num(err)
            lows.append(np.nanmin(y - e0))
            highs.append(np.nanmax(y + e0))
            pos = xs - 0.4 + width * (j + 0.5)
            test = m.startswith("test")
            colors = [BYPASS_COLORS.get(k, "#7f7f7f") for k in kinds]
            bars = ax.bar(pos, y, width * 0.92, color=colors, alpha=0.55 if test else 0.95,
                          hatch="//" if test else None, edgecolor="white" if not test else "black",
                          linewidth=0.6, yerr=err, capsize=4, error_kw={"lw": 1.2})
            for b, v, e in zip(bars, y, e0, strict=True):
                if np.isfinite(v):
                    ax.annotate(f"{v:.2f}", (b.get_x() + b.get_width() / 2, v + e),
                                xytext=(0, 3), textcoords="offset points", ha="center",
                                va="bottom", fontsize=8)
        lo, hi = min(lows), max(highs)
        pad = max(0.5, 0.45 * (hi - lo))
        ax.set_ylim(max(0.0, lo - 2.5 * pad), min(100.0, hi + pad))
        name = "top-5" if group[0].endswith("top5") else "top-1"
        ax.set_ylabel(f"{name} accuracy (%)")
        ax.set_title(f"{name}: solid = val, hatched = test", fontsize=9)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{k}\n{value_text(round(mb, 2))} MB ({mib:.2f} MiB)\nn={n}"
                            for k, mb, mib, n in zip(kinds, frame["size_mb"], frame["size_mib"],
                                                     frame["n"], strict=True)])
        ax.grid(True, axis="y", alpha=0.3)
    bars_note = ("error bars ± 1 sample std (ddof=1)" if int(frame["n"].max()) > 1
                 else "one seed each, so no error bars")
    fig.suptitle(f"{title}\n{wrap(fixed_text(frame.attrs['fixed'], skip=['bypass']))}\n"
                 f"bars: mean over seeds; {bars_note}; y axis does not start at 0", fontsize=10)
    return fig


# -- Pareto ---------------------------------------------------------------------------------------
@styled
def plot_pareto(points: pd.DataFrame, runs: pd.DataFrame, title: str, metric: str,
                max_table: int = 24) -> Figure:
    """Accuracy against model size (log x) for every ok run and design point, the Pareto front as
    a staircase with numbered points and a key table, presets starred, failed runs in a rug."""
    bad = runs[runs["status"] != "ok"]
    has_rug = not bad.empty
    front = points[points["pareto"]].sort_values("size_bytes")
    n_table = min(len(front), max_table)
    fig = new_figure(12.5, 6.4)
    gs = fig.add_gridspec(2 if has_rug else 1, 2, width_ratios=[2.1, 1],
                          height_ratios=[7, 1] if has_rug else None)
    ax = fig.add_subplot(gs[0, 0])
    key = fig.add_subplot(gs[:, 1])
    key.axis("off")
    ok = ok_runs(runs)
    ok = ok[ok[metric].notna() & ok["size_bytes"].notna()]
    name = metric.replace("_top1", " top-1").replace("_top5", " top-5")
    point_kind, run_kind = bypass_kinds(points["bypass"]), bypass_kinds(ok["bypass"])
    for kind in [*BYPASS_ORDER, *sorted(set(point_kind) - set(BYPASS_ORDER))]:
        sel = points[point_kind == kind]
        if sel.empty:
            continue
        rsel = ok[run_kind == kind]
        ax.scatter(to_mb(rsel["size_bytes"]), 100 * rsel[metric], s=9, color=bypass_color(kind),
                   alpha=0.3, lw=0, zorder=2)
        plain = sel[~sel["preset"]]
        ax.scatter(plain["size_mb"], 100 * plain["acc_mean"], s=34, color=bypass_color(kind),
                   edgecolor="white", lw=0.6, zorder=3, label=f"bypass={kind}")
    presets = points[points["preset"]]
    if not presets.empty:
        ax.scatter(presets["size_mb"], 100 * presets["acc_mean"], s=170, marker="*",
                   color=[bypass_color(k) for k in presets["bypass"]], edgecolor="black",
                   lw=0.8, zorder=5, label="SqueezeNet preset (v1.0 / v1.1)")
    if not front.empty:
        fx = front["size_mb"].to_numpy(float)
        fy = 100 * front["acc_mean"].to_numpy(float)
        ax.step(np.append(fx, fx[-1] * 1.15), np.append(fy, fy[-1]), where="post", color="black",
                lw=1.2, alpha=0.7, zorder=4, label="Pareto front (max acc, min size)")
        ax.scatter(fx, fy, s=70, facecolor="none", edgecolor="black", lw=1.1, zorder=6)
    ax.scatter([], [], s=9, color="0.5", alpha=0.4, label="single runs (seeds)")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo, hi = float(points["size_mb"].min()), float(points["size_mb"].max())
    ax.set_xlim(lo / 1.25, hi * 1.25)
    ys = 100 * pd.concat([points["acc_mean"], ok[metric]]).astype(float)
    span = max(float(ys.max() - ys.min()), 0.5)
    ax.set_ylim(float(ys.min()) - 0.08 * span, float(ys.max()) + 0.15 * span)
    ax.set_ylabel(f"{name} accuracy (%), mean over seeds")
    ax.grid(True, which="both", alpha=0.25)
    handles, labels = ax.get_legend_handles_labels()
    key.legend(handles, labels, loc="lower left", frameon=False, fontsize=8)
    if has_rug:
        rug = fig.add_subplot(gs[1, 0], sharex=ax)
        statuses = [s for s in STATUS_STYLE
                    if (bad["status"] == s).any()]
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
        rug.set_xlabel("model size (MB, fp32 weights, log scale)")
        ax.tick_params(labelbottom=False)
        rug.set_title("runs that are not design points (no accuracy plotted)", fontsize=8,
                      loc="left")
    else:
        ax.set_xlabel("model size (MB, fp32 weights, log scale)")
    fig.suptitle(f"Pareto front: {name} accuracy vs model size — {title}\n"
                 f"{len(points)} design points from {len(ok)} ok runs; "
                 f"{len(bad)} not ok", fontsize=10)
    # key table: number -> metaparameters, accuracy, size
    lines = [f"{'#':>2}  {'acc %':>6}  {'MB':>6}  metaparameters"]
    for _, r in front.head(n_table).iterrows():
        lines.append(f"{int(r['label']):>2}  {100 * r['acc_mean']:6.2f}  {r['size_mb']:6.2f}  "
                     f"{r['desc'] or '(all equal)'}")
    if len(front) > n_table:
        lines.append(f"... {len(front) - n_table} more in report.md")
    key.set_title("Pareto set (numbers on the chart)", fontsize=9, loc="left")
    key.text(0.0, 1.0, _wrap_table(lines, 62), va="top", ha="left", family="monospace",
             fontsize=7.5, transform=key.transAxes)
    if not front.empty:
        fig.canvas.draw()
        fig.set_layout_engine("none")
        rest = points[~points["pareto"]]
        others = rest[["size_mb", "acc_mean"]].to_numpy(float) * np.array([1.0, 100.0])
        place_labels(ax, front["size_mb"].astype(float).tolist(),
                     (100 * front["acc_mean"].astype(float)).tolist(),
                     [str(int(v)) for v in front["label"]], avoid_xy=others,
                     avoid_r=np.where(rest["preset"], 10.0, 4.0))
    return fig


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


# -- EDF ------------------------------------------------------------------------------------------
@styled
def plot_edf(edf: pd.DataFrame, title: str) -> Figure:
    """pycls-style error EDFs: for each group, the fraction of its models with error below e."""
    by = edf.attrs.get("by", [])
    metric = edf.attrs.get("metric") or "val_top1"
    name = metric.replace("_top1", " top-1").replace("_top5", " top-5")
    fig = new_figure(9, 5.4)
    ax = fig.subplots()
    groups = list(dict.fromkeys(edf["group"]))
    styles = ["-", "--", ":", "-."]
    other_seen: dict[str, int] = {}
    for i, g in enumerate(groups):
        sel = edf[edf["group"] == g].sort_values("error")
        e = 100 * sel["error"].to_numpy(float)
        f = sel["edf"].to_numpy(float)
        if "bypass" in by:
            kind = str(sel["bypass"].iloc[0])
            rest = " / ".join(str(sel[c].iloc[0]) for c in by if c != "bypass")
            color = bypass_color(kind)
            ls = styles[other_seen.setdefault(rest, len(other_seen)) % len(styles)]
        else:
            color, ls = OTHER_COLORS[i % len(OTHER_COLORS)] if len(groups) > 1 else "#1f77b4", "-"
        label = f"{g} (n={len(sel)}, min {e.min():.2f}%, mean {e.mean():.2f}%)"
        ax.step(np.concatenate([[e[0]], e]), np.concatenate([[0.0], f]), where="post",
                color=color, ls=ls, lw=1.8, label=label)
    ax.set_xlabel(f"{name} error e (%)")
    ax.set_ylabel("fraction of models with error ≤ e")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=1 if len(groups) < 4 else 2,
              frameon=False, title=" / ".join(by) if by else None, title_fontsize=9)
    fig.suptitle(f"Error EDF of ok runs — {title}\none step per run; "
                 "diverged / failed runs are not design points and are left out", fontsize=10)
    return fig


def save(fig: Figure, out_dir: Path, stem: str, formats: Sequence[str]) -> list[Path]:
    """Write ``fig`` as ``<out_dir>/<stem>.<fmt>`` for each format; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out_dir / f"{stem}.{fmt}"
        fig.savefig(path, format=fmt, dpi=DPI)
        paths.append(path)
    return paths
