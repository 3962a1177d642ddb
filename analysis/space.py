"""The design space a store's runs span: which knobs vary (:func:`analysis.frames.varying_columns`
but the study), and what Optuna parameter each is; importances and good ranges both start here, so
they look at the same knobs over the same runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from analysis import frames as F
from analysis.fmt import value_text

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution

MIN_RUNS = 8  # scored runs below which importances and good ranges are skipped: too noisy to read


def scored_runs(df: pd.DataFrame, metric: str | None = None) -> tuple[pd.DataFrame, str | None]:
    """The ok runs that have ``metric`` (default: the ranking accuracy, :func:`F.pick_metric`)."""
    metric = metric or F.pick_metric(df)
    ok = F.ok_runs(df)
    if metric is None or metric not in ok.columns:
        return ok.iloc[0:0], metric
    return ok[ok[metric].notna()], metric


def knobs(runs: pd.DataFrame) -> list[str]:
    """The columns that vary among ``runs``, in the order the charts name metaparameters."""
    return [c for c in F.varying_columns(runs) if c != "study"]


def coverage(runs: pd.DataFrame, cols: list[str]) -> tuple[int, int]:
    """(combinations of the knobs' values the runs hold, those of a full grid of them)."""
    if not cols:
        return 0, 0
    text = runs[cols].map(value_text)
    return len(text.drop_duplicates()), int(np.prod([text[c].nunique() for c in cols]))


def coverage_note(seen: int, grid: int) -> str:
    """A sentence for report.md when the runs are not a full grid of their knobs, else ""."""
    if seen >= grid:
        return ""
    return (f" The runs cover {seen} of the {grid} combinations of these knobs' values (not a "
            "full grid), so each knob's numbers also reflect where the others were held.")


def is_numeric(values: pd.Series) -> bool:
    """Every value a number (not a bool); a missing value makes it categorical (fANOVA needs one
    in every trial)."""
    if values.isna().any() or pd.api.types.is_bool_dtype(values):
        return False
    return bool(pd.api.types.is_numeric_dtype(values))


def choices(values: pd.Series, knob: str) -> list[str]:
    """A categorical knob's values as text, bypass kinds in none/simple/complex order."""
    seen = sorted({value_text(v) for v in values})
    if knob == "bypass":
        seen.sort(key=F.bypass_rank)
    return seen


def distribution(values: pd.Series, knob: str) -> BaseDistribution:
    """The Optuna distribution of a knob's swept values: int or float between the extremes seen,
    else categorical."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if is_numeric(values):
        lo, hi = values.min(), values.max()
        if bool(np.all(np.mod(values.astype(float), 1) == 0)):
            return IntDistribution(int(lo), int(hi))
        return FloatDistribution(float(lo), float(hi))
    return CategoricalDistribution(choices(values, knob))


def param_value(v: Any, dist: BaseDistribution) -> Any:
    """One run's value of a knob as its distribution holds it."""
    from optuna.distributions import FloatDistribution, IntDistribution

    if isinstance(dist, IntDistribution):
        return int(v)
    if isinstance(dist, FloatDistribution):
        return float(v)
    return value_text(v)
