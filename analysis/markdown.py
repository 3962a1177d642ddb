"""Markdown tables for report.md: pandas' ``to_markdown`` when tabulate is installed, else our own.

tabulate is not a dse dependency (and not in the default environment), so the report must not need
it; when it is there, pandas' renderer is used so output matches what notebooks produce. Cells are
formatted to strings before either renderer sees them, so both give the same numbers.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pandas as pd

from analysis.fmt import is_missing
from dse.text import table

_NUMERIC = re.compile(r"^[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?( ± [\d.]+)?%?$")


def _text(v: Any) -> str:
    """One cell as Markdown-safe text: pipes escaped, line breaks flattened, NA as '-'."""
    if is_missing(v):
        return "-"
    return str(v).replace("|", "\\|").replace("\r", " ").replace("\n", " ").strip() or "-"


def has_tabulate() -> bool:
    """Whether pandas can render Markdown itself (it needs the optional tabulate package)."""
    return importlib.util.find_spec("tabulate") is not None


def to_markdown(df: pd.DataFrame, use_tabulate: bool | None = None) -> str:
    """A GitHub pipe table of ``df`` (index dropped); numeric-looking columns right-aligned."""
    cells = df.astype(object).map(_text) if len(df) else df.astype(str)
    cells.columns = [_text(c) for c in df.columns]
    if use_tabulate is None:
        use_tabulate = has_tabulate()
    if use_tabulate:
        return cells.to_markdown(index=False, disable_numparse=True)
    rows = cells.values.tolist()
    headers = list(cells.columns)
    right = [bool(rows) and all(_NUMERIC.match(r[i]) or r[i] == "-" for r in rows)
             for i in range(len(headers))]
    return table(headers, rows, align=["right" if r else "left" for r in right], markdown=True)
