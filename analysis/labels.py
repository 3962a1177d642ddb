"""Small point labels that overlap neither each other nor the markers (the Pareto front's numbers).

A greedy repel, not a layout solver: a front has a few dozen points, and a fixed list of offsets
tried nearest-first keeps each label close and the result the same on every run. In display
pixels, so it runs after the figure's layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.font_manager import FontProperties
from matplotlib.transforms import Bbox

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in display pixels

_RING = [(9, 9), (9, -15), (-17, 9), (-17, -15), (12, -3), (-22, -3), (-3, 12), (-3, -19)]
CANDIDATES = [(dx * k, dy * k) for k in (1.0, 1.7, 2.5, 3.4) for dx, dy in _RING]  # points, nearest first
FRONT_RADIUS = 7.0  # points: the front's 70-pt^2 rings
OTHER_RADIUS = 4.0  # points: a plain design point's marker


@dataclass
class _Crowd:
    """What a new label must not cover: the labels placed so far, the markers (squares of
    half-side ``radii``) and the outside of the axes (costlier than any overlap)."""

    marks: np.ndarray
    radii: np.ndarray
    axbox: Bbox
    placed: list[Box] = field(default_factory=list)

    def overlap(self, box: Box) -> float:
        """Area of ``box`` covering labels and markers, plus a penalty if it leaves the axes."""
        x0, y0, x1, y1 = box
        area = 0.0
        for p in self.placed:
            w = min(x1, p[2]) - max(x0, p[0])
            h = min(y1, p[3]) - max(y0, p[1])
            if w > 0 and h > 0:
                area += w * h
        for (mx, my), r in zip(self.marks, self.radii, strict=True):
            w = min(x1, mx + r) - max(x0, mx - r)
            h = min(y1, my + r) - max(y0, my - r)
            if w > 0 and h > 0:
                area += w * h
        ax = self.axbox
        if x0 < ax.x0 or x1 > ax.x1 or y0 < ax.y0 or y1 > ax.y1:
            area += 1e6
        return area

    def best_offset(self, px: float, py: float, w: float, h: float, scale: float) -> tuple[float, float]:
        """The first free offset of :data:`CANDIDATES` for a ``w`` x ``h`` box at (px, py), else the
        least-covering one."""
        best, best_cost = CANDIDATES[0], float("inf")
        for dx, dy in CANDIDATES:
            x0 = px + dx * scale
            y0 = py + dy * scale
            cost = self.overlap((x0, y0, x0 + w, y0 + h))
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
            if cost == 0:
                break
        return best


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str],
                 avoid_xy: np.ndarray | None = None, avoid_r: Sequence[float] | None = None,
                 fontsize: float = 8) -> list[Any]:
    """Label points clear of each other and of the markers (``avoid_xy``: other markers in data
    coordinates, ``avoid_r``: their radii in points), a leader line to each point."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0  # display pixels per point
    pts, crowd = _crowd(ax, renderer, xs, ys, avoid_xy, avoid_r, scale)
    font = FontProperties(size=fontsize, weight="bold")
    out = []
    for (px, py), x, y, text in zip(pts, xs, ys, texts, strict=True):
        tw, th, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
        w, h = tw + 4, th + 3
        dx, dy = crowd.best_offset(px, py, w, h, scale)
        out.append(_annotate(ax, text, (x, y), (dx, dy), fontsize))
        x0, y0 = px + dx * scale, py + dy * scale
        crowd.placed.append((x0, y0, x0 + w, y0 + h))
    return out


def _crowd(ax: Any, renderer: Any, xs: Sequence[float], ys: Sequence[float],
           avoid_xy: np.ndarray | None, avoid_r: Sequence[float] | None,
           scale: float) -> tuple[np.ndarray, _Crowd]:
    """The labelled points in pixels, and a :class:`_Crowd` of them and the markers to avoid."""
    axbox = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    others = (ax.transData.transform(avoid_xy) if avoid_xy is not None and len(avoid_xy)
              else np.zeros((0, 2)))
    radii = np.concatenate([np.full(len(pts), FRONT_RADIUS * scale),
                            (np.asarray(avoid_r, float) * scale if avoid_r is not None
                             else np.full(len(others), OTHER_RADIUS * scale))])
    return pts, _Crowd(np.vstack([pts, others]), radii, axbox)


def _annotate(ax: Any, text: str, xy: tuple[float, float], offset: tuple[float, float],
              fontsize: float) -> Any:
    """One label ``offset`` points from its point on a white box with a thin leader, out of the
    (already final) layout."""
    ann = ax.annotate(text, xy, xytext=offset, textcoords="offset points",
                      fontsize=fontsize, fontweight="bold", ha="left", va="bottom",
                      bbox={"boxstyle": "round,pad=0.12", "fc": "white", "ec": "none",
                            "alpha": 0.8},
                      arrowprops={"arrowstyle": "-", "lw": 0.7, "color": "0.3",
                                  "shrinkA": 0, "shrinkB": 4}, zorder=7)
    ann.set_in_layout(False)
    return ann
