"""dse's charts and report: the frames behind the paper's Figure 3a/3b and Table 3, a Pareto front,
pycls-style error EDFs and good ranges, knob importances, verdicts over seeds and the paper check,
from a dse results store or an Optuna storage.

From Python (notebooks restyle from the same frames the CLI draws)::

    import analysis
    df = analysis.load("runs/demo")        # or "sqlite:///runs/demo/optuna.db", study="demo"
    analysis.sr_frame(df)                  # Figure 3a: accuracy (mean, std over seeds) vs SR
    analysis.pareto_frame(df)              # design points, Pareto flags and labels
    analysis.importance_frame(df)          # fANOVA / PED-ANOVA importance per knob
    analysis.paper_check(analysis.study_verdicts(df))  # each paper claim: agrees / disagrees / ...
    analysis.write_report(df, "runs/demo/report")

Names are imported on first use, so ``dse-report`` answers bad input before pandas and matplotlib
load.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

FORMATS = ("png", "svg", "pdf")  # image formats dse-report writes (matplotlib savefig formats)

_EXPORTS = {
    "load": "analysis.loading", "normalize": "analysis.loading", "resolve": "analysis.source",
    "LoadError": "analysis.source",
    "sr_frame": "analysis.frames", "pct3x3_frame": "analysis.frames",
    "bypass_frame": "analysis.frames", "sweep_frame": "analysis.frames",
    "pareto_frame": "analysis.frames", "edf_frame": "analysis.frames",
    "edf_summary": "analysis.frames", "status_counts": "analysis.status",
    "plot_sweep": "analysis.plots", "plot_bypass": "analysis.plots",
    "plot_pareto": "analysis.plots", "plot_edf": "analysis.plots",
    "sweep_commands": "analysis.commands", "write_report": "analysis.report",
    "importance_frame": "analysis.importance", "good_ranges": "analysis.ranges",
    "study_verdicts": "analysis.verdicts", "describe": "analysis.verdicts",
    "paper_check": "analysis.paper_check", "plot_importance": "analysis.plots",
}
__all__ = ["FORMATS", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
