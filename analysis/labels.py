"""Small point labels that overlap neither each other nor the markers (the Pareto front's numbers).

A greedy repel, not a layout solver: a front has a few dozen points, and a fixed list of offsets
tried nearest-first keeps each label close and the result the same on every run. In display
pixels, so it runs after the figure's layout.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.font_manager import FontProperties

_RING = [(9, 9), (9, -15), (-17, 9), (-17, -15), (12, -3), (-22, -3), (-3, 12), (-3, -19)]
CANDIDATES = [(dx * k, dy * k) for k in (1.0, 1.7, 2.5, 3.4) for dx, dy in _RING]  # points, nearest first
FRONT_RADIUS = 7.0  # points: the front's 70-pt^2 rings
OTHER_RADIUS = 4.0  # points: a plain design point's marker


def _overlap(box: np.ndarray, taken: np.ndarray, axbox: Any) -> float:
    """Area of ``box`` (x0, y0, x1, y1) covering the ``taken`` boxes (markers and placed labels),
    plus more than any overlap if it leaves the axes."""
    w = np.minimum(box[2], taken[:, 2]) - np.maximum(box[0], taken[:, 0])
    h = np.minimum(box[3], taken[:, 3]) - np.maximum(box[1], taken[:, 1])
    outside = box[0] < axbox.x0 or box[2] > axbox.x1 or box[1] < axbox.y0 or box[3] > axbox.y1
    return float(np.sum(np.where((w > 0) & (h > 0), w * h, 0.0))) + 1e6 * outside


def place_labels(ax: Any, xs: Sequence[float], ys: Sequence[float], texts: Sequence[str],
                 avoid_xy: np.ndarray | None = None, avoid_r: Sequence[float] | None = None,
                 fontsize: float = 8) -> list[Any]:
    """Label points clear of each other and of the markers (``avoid_xy``: other markers in data
    coordinates, ``avoid_r``: their radii in points): each takes the first free offset of
    :data:`CANDIDATES`, else the least-covering one, with a leader line to its point."""
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    scale = fig.dpi / 72.0  # display pixels per point
    axbox = ax.get_window_extent(renderer)
    pts = ax.transData.transform(np.column_stack([xs, ys])) if len(xs) else np.zeros((0, 2))
    others = (ax.transData.transform(avoid_xy) if avoid_xy is not None and len(avoid_xy)
              else np.zeros((0, 2)))
    radii = np.concatenate([np.full(len(pts), FRONT_RADIUS),
                            np.asarray(avoid_r, float) if avoid_r is not None
                            else np.full(len(others), OTHER_RADIUS)])[:, None] * scale
    marks = np.vstack([pts, others])
    taken = np.hstack([marks - radii, marks + radii])
    font = FontProperties(size=fontsize, weight="bold")
    out = []
    for (px, py), x, y, text in zip(pts, xs, ys, texts, strict=True):
        tw, th, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
        w, h = tw + 4, th + 3
        best, best_cost = CANDIDATES[0], float("inf")
        for dx, dy in CANDIDATES:
            x0, y0 = px + dx * scale, py + dy * scale
            cost = _overlap(np.array([x0, y0, x0 + w, y0 + h]), taken, axbox)
            if cost < best_cost:
                best, best_cost = (dx, dy), cost
            if cost == 0:
                break
        out.append(_annotate(ax, text, (x, y), best, fontsize))
        x0, y0 = px + best[0] * scale, py + best[1] * scale
        taken = np.vstack([taken, [x0, y0, x0 + w, y0 + h]])
    return out


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
