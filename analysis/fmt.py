"""How one value reads in the report's titles, labels and tables, defined once (so ``sr=0.125``
never reads ``0.12500`` elsewhere), and report.md's tables through dse's one table renderer."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from dse.text import table

_NUMERIC = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?( ± [\d.]+)?%?$")


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


def pm_percent(frame: pd.DataFrame, name: str) -> list[str]:
    """``<name>_mean`` ± ``<name>_std`` in percent (``92.27 ± 0.14``); a lone seed has no std."""
    pairs = zip(frame[f"{name}_mean"], frame[f"{name}_std"], strict=True)
    return ["-" if is_missing(m) else f"{100 * m:.2f}" + ("" if is_missing(s) else f" ± {100 * s:.2f}")
            for m, s in pairs]


def number(v: Any) -> str:
    """``1,234.57``: thousands separated, so sizes and errors line up in a right-aligned column."""
    return "-" if is_missing(v) else f"{float(v):,.2f}"


def integer(v: Any) -> str:
    """``1,234`` for counts and parameters; - for NA (a run that never reached the count)."""
    return "-" if is_missing(v) else f"{int(v):,}"


def _text(v: Any) -> str:
    """One cell as Markdown-safe text: pipes escaped, line breaks flattened, NA as '-'."""
    text = "" if is_missing(v) else str(v).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return text.strip() or "-"


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub pipe table of ``df``; not pandas' ``to_markdown``, which changes with tabulate installed."""
    rows = [[_text(v) for v in r] for r in df.astype(object).itertuples(index=False)]
    align = ["right" if rows and all(_NUMERIC.match(r[i]) or r[i] == "-" for r in rows) else "left"
             for i in range(len(df.columns))]
    return table([_text(c) for c in df.columns], rows, align=align, markdown=True)
