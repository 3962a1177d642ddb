"""What one design point's training returns to Hydra's sweepers: its seeds' rows, summarised
(torch-free: a sweeper or a test's stand-in app builds it without the training stack)."""

from __future__ import annotations

import math
from typing import Any

from dse.metrics import LATENCY, LOGGED, analytic_values

# means over the ok seeds: the record's measured metrics, the run's speed, its inference latency
AVERAGED = (*LOGGED, "train_seconds", "images_per_s", *LATENCY)


def summarize(rows: list[dict[str, Any]], report: Any) -> dict[str, Any]:
    """What the sweeper reads: mean metrics over the ok seeds, plus the analytic size."""
    ok = [r for r in rows if r["status"] == "ok"]
    out: dict[str, Any] = {
        "status": "ok" if ok else rows[0]["status"], "error": None if ok else rows[0].get("error"),
        **analytic_values(report),
        "seeds": len(rows), "run_ids": [r["run_id"] for r in rows],
        "epochs": max((int(r.get("epochs") or 0) for r in rows), default=0),
    }
    for key in AVERAGED:
        vals = [float(r[key]) for r in ok if r.get(key) is not None and not _isnan(r[key])]
        out[key] = sum(vals) / len(vals) if vals else None
    return out


def _isnan(v: Any) -> bool:
    try:
        return math.isnan(float(v))
    except (TypeError, ValueError):
        return True
