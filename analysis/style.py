"""What every chart of :mod:`analysis.plots` shares, so the charts read alike wherever they are drawn.

* accuracy in percent, model size in MiB (2^20 bytes of fp32 weights): the unit of the ``size_mib``
  objective and budgets, so a chart reads in the numbers the sweep was given (:mod:`dse.metrics`
  converts; the tables add MB for the paper's mixed "MB");
* one colour per bypass kind everywhere (:data:`BYPASS_COLORS`), one marker per run status;
* every title names the study, the dataset and the epochs (:func:`context_title`);
* fonts come from :data:`FONT` while a chart is built, never from the caller's rcParams.

Figures are :class:`matplotlib.figure.Figure` objects on an Agg canvas, so drawing never touches a
GUI backend or pyplot's global figure list: the CLI works headless and a notebook can restyle the
returned Figure.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import matplotlib
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from analysis.fmt import is_missing, value_text
from analysis.frames import METAPARAMS

BYPASS_COLORS = {"none": "#1f77b4", "simple": "#2ca02c", "complex": "#d62728"}
STATUS_STYLE = {"diverged": ("X", "#d62728"), "failed": ("v", "#333333"),
                "pruned": ("|", "#7f7f7f"), "rejected": ("s", "#bcbd22"),
                "running": (".", "#7f7f7f")}
P = ParamSpec("P")
R = TypeVar("R")
DPI = 130
FONT = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9,
        "xtick.labelsize": 9, "ytick.labelsize": 9}


def styled(fn: Callable[P, R]) -> Callable[P, R]:
    """Apply :data:`FONT` while a chart is built, without touching the caller's rcParams."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with matplotlib.rc_context(FONT):
            return fn(*args, **kwargs)

    return wrapper


def new_figure(w: float, h: float) -> Figure:
    """A ``w`` x ``h`` inch Figure on its own Agg canvas (see the module docstring for why)."""
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def context_title(df: pd.DataFrame | dict[str, Any]) -> str:
    """``study 'demo' · fashion_mnist · 30 epochs``: where the numbers come from."""
    def values(col: str) -> list[str]:
        if isinstance(df, dict):
            v = df.get(col)
            return [] if is_missing(v) else [value_text(v)]
        return sorted({value_text(v) for v in df[col].dropna()}) if col in df else []

    studies, data, epochs, subset = (values(c) for c in ("study", "data", "max_epochs", "subset"))
    parts = [("study " if len(studies) < 2 else "studies ") + ", ".join(studies or ["?"])]
    parts.append(", ".join(data) or "dataset not recorded")
    unit = "epoch" if epochs == ["1"] else "epochs"
    parts.append(f"{'/'.join(epochs)} {unit}" if epochs else "epochs not recorded")
    if subset:
        parts.append(f"subset {'/'.join(subset)}")
    return " · ".join(parts)


def fixed_text(fixed: dict[str, Any], skip: Iterable[str] = ()) -> str:
    """The metaparameters a sweep held fixed, for its subtitle."""
    keys = [k for k in ["model", *METAPARAMS]
            if k in fixed and k not in set(skip) and not is_missing(fixed[k])]
    return "  ".join(f"{k}={value_text(fixed[k])}" for k in keys)


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
    """``val_top1`` -> ``val top-1``: the metric as axis labels and titles name it."""
    return metric.replace("_top1", " top-1").replace("_top5", " top-5")
