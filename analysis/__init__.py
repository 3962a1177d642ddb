"""dse's charts and report from a dse store or an Optuna storage (docs/REPORTS.md, "From Python");
names are imported on first use, so dse-report refuses a bad path or format before pandas loads."""

from __future__ import annotations

from importlib import import_module
from typing import Any

FORMATS = ("png", "svg", "pdf")  # image formats dse-report writes (matplotlib savefig formats)

_MODULES = {
    "loading": "load normalize", "source": "resolve LoadError", "commands": "sweep_commands",
    "frames": "sr_frame pct3x3_frame bypass_frame sweep_frame pareto_frame edf_frame edf_summary",
    "plots": "plot_sweep plot_bypass plot_pareto plot_edf plot_importance", "paper_check": "paper_check",
    "report": "write_report status_counts", "knobs": "good_ranges importance_frame",
    "verdicts": "study_verdicts describe"}
_EXPORTS = {name: f"{__name__}.{m}" for m, names in _MODULES.items() for name in names.split()}
__all__ = ["FORMATS", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
