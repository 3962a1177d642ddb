"""Text in and out of the tools: comma lists, tables (cells arrive formatted: only layout is decided
here) and durations."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

Align = Literal["left", "right"] | None
MD_MIN_WIDTH = 3  # a Markdown rule cell needs three dashes


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: how every option that takes a list reads it."""
    return [t.strip() for t in str(text).split(",") if t.strip()]


def comma_ints(text: str) -> list[int]:
    """``"8,6"`` -> ``[8, 6]`` (an argparse ``type``: its ValueError is the option's usage error)."""
    return [int(t) for t in comma_list(text)]


def duration(seconds: float) -> str:
    """``45s``, ``12m05s``, ``3h07m``: an ETA a person reads at a glance."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def table(header: Sequence[str], rows: Iterable[Sequence[str]], *,
          align: Sequence[Align] | None = None, markdown: bool = False, pad: bool = True) -> str:
    """``header`` and ``rows`` as plain text (two spaces apart, a dashed rule) or, ``markdown=True``,
    a pipe table (``pad=False``: cells unpadded); ``align`` per column: right, left or None."""
    body = [list(r) for r in rows]
    aligns = list(align) if align is not None else [None] * len(header)
    if markdown and not pad:
        return "\n".join([_pipes(header), "|" + "|".join(_rule(3 + bool(a), a) for a in aligns) + "|",
                          *(_pipes(r) for r in body)])
    least = MD_MIN_WIDTH if markdown else 0
    widths = [max([least, len(h), *(len(r[i]) for r in body)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.rjust(w) if a == "right" else c.ljust(w)
                  for c, w, a in zip(cells, widths, aligns, strict=True)]
        return _pipes(padded) if markdown else "  ".join(padded).rstrip()

    rule = ("|" + "|".join(_rule(w + 2, a) for w, a in zip(widths, aligns, strict=True)) + "|"
            if markdown else "  ".join("-" * w for w in widths))
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def _pipes(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _rule(width: int, align: Align) -> str:
    """One Markdown rule cell of ``width`` (>= 2) characters, with its alignment colon."""
    return (":" if align == "left" else "-") + "-" * (width - 2) + (":" if align == "right" else "-")
