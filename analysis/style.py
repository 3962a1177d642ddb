"""What every chart shares: colours, markers, fonts (:data:`FONT`, never the caller's rcParams) and an
Agg canvas per figure (no pyplot state, so the CLI runs headless)."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Iterable
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dse import metrics
from dse.analysis.fmt import is_missing, value_text
from dse.analysis.loading import METAPARAMS

BYPASS_COLORS = {"none": "#1f77b4", "simple": "#2ca02c", "complex": "#d62728"}
STATUS_STYLE = {"diverged": ("X", "#d62728"), "failed": ("v", "#333333"), "pruned": ("|", "#7f7f7f"),
                "rejected": ("s", "#bcbd22"), "running": (".", "#7f7f7f")}
OTHER_COLORS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#ff7f0e"]
# a metric's curve style by its split (the name's first word); other metrics get OTHER_COLORS
SPLIT_STYLE = {"val": {"color": "#1f77b4", "marker": "o", "ls": "-"},
               "test": {"color": "#ff7f0e", "marker": "s", "ls": "--"}}
DPI = 130
CHANCE_MARGIN = 10.0  # percentage points: nearer than this (or the data's span), chance is drawn
FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "xtick.labelsize": 9, "ytick.labelsize": 9}
# a decorator (matplotlib's context manager is a ContextDecorator): FONT while a chart is built
styled = matplotlib.rc_context(FONT)


def chance_line(ax: Axes, level: float | None, lo: float, hi: float) -> None:
    """Chance accuracy as a line when the accuracies drawn (``lo`` to ``hi`` %) come within
    :data:`CHANCE_MARGIN` points (or their span) of it: zoomed, noise at chance looks like a trend."""
    if level is None or not math.isfinite(lo) or lo - 100 * level > max(CHANCE_MARGIN, hi - lo):
        return
    pct = 100 * level
    ax.axhline(pct, color="black", ls="-.", lw=1.0, zorder=1, label=f"chance ({pct:g} %)")
    ax.set_ylim(min(lo, pct) - 0.06 * (max(hi, pct) - min(lo, pct)), None)


def new_figure(w: float, h: float) -> Figure:
    """A ``w`` x ``h`` inch Figure on its own Agg canvas."""
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def context_title(df: pd.DataFrame | dict[str, Any]) -> str:
    """``study 'demo' · fashion_mnist · 30 epochs``: where the numbers come from."""
    frame = pd.DataFrame([df]) if isinstance(df, dict) else df
    studies, data, epochs = (sorted({value_text(v) for v in frame[c].dropna()}) if c in frame else []
                             for c in ("study", "data", "max_epochs"))
    subset = sorted({"all" if is_missing(v) else value_text(v) for v in frame.get("subset", [])})
    parts = [("study " if len(studies) < 2 else "studies ") + ", ".join(studies or ["?"])]
    parts.append(", ".join(data) or "dataset not recorded")
    unit = "epoch" if epochs == ["1"] else "epochs"
    parts.append(f"{'/'.join(epochs)} {unit}" if epochs else "epochs not recorded")
    if subset not in ([], ["all"]):  # no subset: the whole training set, said only beside one
        parts.append(f"subset {'/'.join(subset)}")
    return " · ".join(parts)


def fixed_text(fixed: dict[str, Any], skip: Iterable[str] = ()) -> str:
    """The metaparameters a sweep held fixed, for its subtitle."""
    return "  ".join(f"{k}={value_text(fixed[k])}" for k in ["model", *METAPARAMS]
                     if k in fixed and k not in set(skip) and not is_missing(fixed[k]))


def wrap(text: str, width: int = 110) -> str:
    """Break a long ``k=v  k=v`` line at separators so suptitles never run off the figure."""
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False)) if text else ""


def bypass_kinds(values: pd.Series) -> pd.Series:
    """Bypass kinds as text, "unknown" where a source did not record one (some Optuna studies)."""
    return values.map(lambda v: v if isinstance(v, str) and v else "unknown").astype(object)


def bypass_color(kind: Any) -> str:
    """The bypass kind's colour; grey for kinds :data:`BYPASS_COLORS` does not know."""
    return BYPASS_COLORS.get(str(kind), "#7f7f7f")


def accuracy_name(metric: str) -> str:
    """``val_top1`` -> ``val top-1``: the registry's label (a name it lacks as it is)."""
    return getattr(metrics.REGISTRY.get(metric), "label", metric)


def metric_style(metric: str, i: int = 0) -> dict[str, Any]:
    """A metric curve's colour, marker and line style: by its split, else ``OTHER_COLORS[i]``."""
    other = {"color": OTHER_COLORS[i % len(OTHER_COLORS)], "marker": "^", "ls": "-."}
    return SPLIT_STYLE.get(metric.split("_")[0], other)


def topk_panels(names: Iterable[str]) -> list[tuple[int, list[str]]]:
    """Accuracies by :attr:`~dse.metrics.Metric.topk`, a panel each: top-5 near 99 % would flatten top-1."""
    topk = {n: metrics.REGISTRY[n].topk or 1 for n in names}
    return [(k, [n for n in topk if topk[n] == k]) for k in sorted(set(topk.values()))]
