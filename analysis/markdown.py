"""report.md's tables through dse's one table renderer (:func:`dse.text.table`).

Not pandas' ``to_markdown``: it needs the optional tabulate package, so the report's layout would
change with what happens to be installed. Cells are text before the renderer sees them.
"""

from __future__ import annotations

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


def to_markdown(df: pd.DataFrame) -> str:
    """A GitHub pipe table of ``df`` (index dropped); numeric-looking columns right-aligned."""
    rows = [[_text(v) for v in r] for r in df.astype(object).itertuples(index=False)]
    right = [bool(rows) and all(_NUMERIC.match(r[i]) or r[i] == "-" for r in rows)
             for i in range(len(df.columns))]
    return table([_text(c) for c in df.columns], rows,
                 align=["right" if r else "left" for r in right], markdown=True)
