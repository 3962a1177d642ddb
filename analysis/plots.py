"""Matplotlib figures of :mod:`dse.analysis.frames`' frames (no pyplot state), for a notebook to restyle;
error bars are ± one sample std over seeds (ddof=1). The Pareto chart is pareto_plot's, re-exported."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dse.analysis import style as S
from dse.analysis.fmt import value_text
from dse.analysis.frames import chance
from dse.analysis.knobs import EVALUATORS
from dse.analysis.pareto_plot import plot_pareto
from dse.analysis.style import context_title, fixed_text

__all__ = ["context_title", "fixed_text", "plot_bypass", "plot_edf", "plot_importance", "plot_pareto",
           "plot_sweep"]

SIZE_COLOR = "#555555"
PARAM_LABEL = {"sr": "squeeze ratio SR (squeeze / expand filters)",
               "pct3x3": "3x3 share of expand filters, pct3x3 (%)"}


@S.styled
def plot_sweep(frame: pd.DataFrame, title: str) -> Figure:
    """Accuracy (mean ± std over seeds) against SR or pct3x3, a panel per top-k, size on the right axis."""
    param = frame.attrs["param"]
    panels = S.topk_panels(frame.attrs["metrics"])
    fig = S.new_figure(9, 5.2 + 1.6 * (len(panels) - 1))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        height_ratios=[2.2] + [1] * (len(panels) - 1))[:, 0]
    xs = frame[param].astype(float).to_numpy() * (100 if param == "pct3x3" else 1)
    for ax, (k, group) in zip(axes, panels, strict=True):
        for i, m in enumerate(group):
            ax.errorbar(xs, 100 * frame[f"{m}_mean"].astype(float).to_numpy(),
                        yerr=100 * frame[f"{m}_std"].astype(float).to_numpy(),  # NaN: no bar
                        **S.metric_style(m, i), capsize=3, lw=1.6, ms=5,
                        label=f"{S.accuracy_name(m)} (mean ± std)")
        ax.set_ylabel(f"top-{k} accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.yaxis.set_major_locator(MaxNLocator(6))
        S.chance_line(ax, chance(frame.attrs["fixed"].get("num_classes"), k), *ax.dataLim.intervaly)
    lost = frame["n"].astype(int).to_numpy() == 0  # every seed diverged or failed: a cross, not a gap
    if lost.any():
        axes[0].scatter(xs[lost], np.full(int(lost.sum()), 0.04), transform=axes[0].get_xaxis_transform(),
                        marker="X", s=60, color=S.STATUS_STYLE["diverged"][1], clip_on=False, zorder=5,
                        label="no ok run at this value")
    size = axes[0].twinx()  # model size from 0 on the right: the trade-off in one panel
    size.plot(xs, frame["size_mib"].astype(float), color=SIZE_COLOR, marker="D", ms=4, ls=":",
              lw=1.3, label="model size (MiB)")
    size.set_ylabel("model size (MiB, fp32)", color=SIZE_COLOR)
    size.tick_params(axis="y", colors=SIZE_COLOR)
    size.set_ylim(0, float(frame["size_mib"].max()) * 1.15)
    _sweep_legend(axes[0], size, apart=len(panels) > 1)
    axes[-1].set_xticks(xs, [f"{v:g}%" if param == "pct3x3" else f"{v:g}" for v in xs])
    axes[-1].set_xlabel(PARAM_LABEL.get(param, param))
    fixed = S.wrap(fixed_text(frame.attrs["fixed"], skip=[param]))
    fig.suptitle(f"{title}\n{fixed}\n{_seed_note(frame)}", fontsize=10)
    return fig


def _sweep_legend(ax: Axes, size: Axes, apart: bool) -> None:
    """One legend row above the top panel for both axes; with other panels, entries drop "top-1"."""
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = size.get_legend_handles_labels()
    labels = [lab.replace(" top-1", "") if apart else lab for lab in l1] + l2
    entries = sorted(zip(h1 + h2, labels, strict=True),
                     key=lambda e: (e[1].startswith("no ok"), e[1].startswith("chance")))
    ax.legend(*zip(*entries, strict=True), loc="lower center", bbox_to_anchor=(0.5, 1.0),
              ncol=len(entries), frameon=False)


def _seed_note(frame: pd.DataFrame) -> str:
    """The subtitle line of a sweep: seeds per point and runs lost."""
    bad = int(frame["n_bad"].sum()) if "n_bad" in frame else 0
    seeds = sorted(set(frame["n"].astype(int)) - {0})
    seed_txt = f"{seeds[0]}" if len(seeds) == 1 else f"{seeds[0]}–{seeds[-1]}"
    bars = "error bars ± 1 sample std (ddof=1)" if seeds[-1] > 1 else "one seed per point, so no error bars"
    return (f"n = {seed_txt} ok seed{'s' if seeds[-1] > 1 else ''} per point; {bars}"
            + (f"; {bad} diverged/failed run{'s' if bad != 1 else ''} excluded" if bad else ""))


@S.styled
def plot_bypass(frame: pd.DataFrame, title: str) -> Figure:
    """Bars of val/test accuracy per bypass kind (colour = bypass kind), size under each group."""
    panels = S.topk_panels(frame.attrs["metrics"])
    fig = S.new_figure(4.2 * len(panels) + 2.2, 5.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    kinds = S.bypass_kinds(frame["bypass"]).tolist()
    colors = [S.bypass_color(k) for k in kinds]
    xs = np.arange(len(kinds))
    for ax, (k, group) in zip(axes, panels, strict=True):
        width = 0.8 / len(group)
        lows, highs = [], []
        for j, m in enumerate(group):
            y = 100 * frame[f"{m}_mean"].astype(float).to_numpy()
            err = 100 * frame[f"{m}_std"].astype(float).to_numpy()  # NaN (1 seed): no bar
            lows.append(np.nanmin(y - np.nan_to_num(err)))
            highs.append(np.nanmax(y + np.nan_to_num(err)))
            test = m.startswith("test")
            bars = ax.bar(xs - 0.4 + width * (j + 0.5), y, width * 0.92, color=colors,
                          alpha=0.55 if test else 0.95, hatch="//" if test else None,
                          edgecolor="black" if test else "white", linewidth=0.6, yerr=err, capsize=4,
                          error_kw={"lw": 1.2})
            ax.bar_label(bars, [f"{v:.2f}" if np.isfinite(v) else "" for v in y], padding=3,
                         fontsize=8)  # at the error bar's end
        lo, hi = min(lows), max(highs)
        pad = max(0.5, 0.45 * (hi - lo))
        ax.set_ylim(max(0.0, lo - 2.5 * pad), min(100.0, hi + pad))
        S.chance_line(ax, chance(frame.attrs["fixed"].get("num_classes"), k), lo, hi)
        if ax.get_legend_handles_labels()[0]:  # the chance line, the one labelled artist
            ax.legend(loc="upper left", frameon=False, fontsize=8)
        ax.set_ylabel(f"top-{k} accuracy (%)")
        ax.set_title(f"top-{k}: solid = val, hatched = test", fontsize=9)
        ax.set_xticks(xs, [f"{k}\n{mib:.2f} MiB ({value_text(round(mb, 2))} MB)\nn={n}" for k, mb, mib, n
                           in zip(kinds, frame["size_mb"], frame["size_mib"], frame["n"], strict=True)])
        ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"{title}\n{S.wrap(fixed_text(frame.attrs['fixed'], skip=['bypass']))}\n"
                 f"bars: mean over seeds; {_seed_note(frame)}; y axis does not start at 0", fontsize=10)
    return fig


@S.styled
def plot_edf(edf: pd.DataFrame, title: str) -> Figure:
    """pycls-style error EDFs: per group, the fraction of its models with error below e."""
    by = edf.attrs.get("by", [])
    fig = S.new_figure(9, 5.4)
    ax = fig.subplots()
    n_groups = edf["group"].nunique()
    styles = ["-", "--", ":", "-."]
    other_seen: dict[str, int] = {}
    for i, (g, sel) in enumerate(edf.groupby("group", sort=False)):
        e = 100 * sel["error"].astype(float)
        if "bypass" in by:
            rest = " / ".join(str(sel[c].iloc[0]) for c in by if c != "bypass")
            color = S.bypass_color(sel["bypass"].iloc[0])
            ls = styles[other_seen.setdefault(rest, len(other_seen)) % len(styles)]
        else:
            color, ls = S.OTHER_COLORS[i % len(S.OTHER_COLORS)] if n_groups > 1 else "#1f77b4", "-"
        ax.ecdf(e, color=color, ls=ls, lw=1.8,
                label=f"{g} (n={len(sel)}, min {e.min():.2f}%, mean {e.mean():.2f}%)")
    ax.set_xlabel(f"{S.accuracy_name(edf.attrs.get('metric') or 'val_top1')} error e (%)")
    ax.set_ylabel("fraction of models with error ≤ e")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    wide = n_groups >= 4 and edf["group"].str.len().max() <= 24  # two columns of short labels fit
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2 if wide else 1, frameon=False,
              title=" / ".join(by) if by else None, title_fontsize=9)
    fig.suptitle(f"Error EDF of ok runs — {title}\none step per run; "
                 "diverged / failed runs are not design points and are left out", fontsize=10)
    return fig


IMPORTANCE_COLORS = {"fanova": "#1f77b4", "ped_anova": "#ff7f0e"}


@S.styled
def plot_importance(frame: pd.DataFrame, title: str) -> Figure:
    """Each knob's importance per evaluator as labelled bars, the most important knob on top."""
    knobs = frame["knob"].tolist()
    fig = S.new_figure(9, max(4.0, 1.4 + 0.4 * len(knobs) * len(EVALUATORS)))
    ax = fig.subplots()
    ys = np.arange(len(knobs))[::-1]
    height = 0.8 / len(EVALUATORS)
    for j, (col, name) in enumerate(EVALUATORS.items()):
        bars = ax.barh(ys + 0.4 - height * (j + 0.5), frame[col].astype(float), height * 0.92,
                       color=IMPORTANCE_COLORS[col], label=name)
        ax.bar_label(bars, fmt="%.2f", padding=3, fontsize=8)
    ax.set_yticks(ys, knobs)
    ax.set_xlim(0, 1.08)
    ax.set_xlabel("importance (normalised: each evaluator's bars sum to 1)")
    ax.grid(True, axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(EVALUATORS), frameon=False)
    a = frame.attrs
    fig.suptitle(f"Importances — {title}\n{S.accuracy_name(a['metric'])} over {a['n_runs']} ok runs "
                 f"({a['n_points']} design points, one trial per seed); fANOVA seed {a['seed']}, "
                 f"PED-ANOVA on the best {100 * a['fraction']:.0f} %", fontsize=10)
    return fig
