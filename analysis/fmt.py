"""How one value reads in the report's titles, labels and tables, defined once (so ``sr=0.125``
never reads ``0.12500`` elsewhere). Only pandas and numpy, so every analysis module can use it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def is_missing(v: Any) -> bool:
    """None or a NA scalar; containers and text never are (``pd.isna`` on them is not one bool)."""
    return v is None or (not isinstance(v, (str, list, tuple, dict)) and bool(pd.isna(v)))


def value_text(v: Any) -> str:
    """A metaparameter as it reads: 0.125 not 0.12500, true not True, - for NA."""
    if is_missing(v):
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (float, np.floating)):
        return f"{float(v):g}"
    return str(v)


def pm_percent(mean: Any, std: Any) -> str:
    """``92.27 ± 0.14`` in percent; a lone seed has no std, so it shows just the mean."""
    if is_missing(mean):
        return "-"
    if is_missing(std):
        return f"{100 * float(mean):.2f}"
    return f"{100 * float(mean):.2f} ± {100 * float(std):.2f}"


def number(v: Any, digits: int = 2) -> str:
    """``1,234.57``: thousands separated, so sizes and errors line up in a right-aligned column."""
    return "-" if is_missing(v) else f"{float(v):,.{digits}f}"


def integer(v: Any) -> str:
    """``1,234`` for counts and parameters; - for NA (a run that never reached the count)."""
    return "-" if is_missing(v) else f"{int(v):,}"
