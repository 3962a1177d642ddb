"""report.md's answers (which knob matters, where the good region is, whether a difference is real,
how it compares with the paper), worded from the frames of the statistics modules."""

from __future__ import annotations

import pandas as pd

from dse.analysis.fmt import integer, number, to_markdown
from dse.analysis.knobs import EVALUATORS, coverage_note, good_ranges
from dse.analysis.paper_check import NEAR, paper_check
from dse.analysis.style import accuracy_name
from dse.analysis.verdicts import CONFIDENCE, MIN_POINTS, MIN_SEEDS, Verdicts, describe, study_verdicts


def importance_text(frame: pd.DataFrame) -> list[str]:
    """The importance section's body: what the evaluators saw, and the table behind the chart."""
    a = frame.attrs
    table = pd.DataFrame({"knob": frame["knob"],
                          **{name: frame[col].map("{:.3f}".format) for col, name in EVALUATORS.items()},
                          "values seen": frame["values"].map(integer), "kind": frame["kind"]})
    return [f"Importance of {accuracy_name(a['metric'])} over the {a['n_runs']} ok runs the "
            f"evaluators saw ({a['n_points']} design points; each seed is one trial, so seed "
            "noise is part of what they must explain). The runs become an in-memory Optuna "
            "study (one COMPLETE trial per run, distributions inferred from the values swept, "
            f"categorical for text knobs); fANOVA is seeded ({a['seed']}), PED-ANOVA asks which "
            f"knobs set the best {100 * a['fraction']:.0f} % of runs apart. Each column sums to 1. "
            "On a few dozen runs fANOVA's forest is noisy: read the order, not the decimals."
            + coverage_note(*a["coverage"]), "", to_markdown(table), ""]


def _ranges_section(df: pd.DataFrame) -> list[str]:
    ranges = good_ranges(df)
    a = ranges.attrs
    lines = [f"## Good ranges (best {100 * a['fraction']:.0f} % of runs)", ""]
    if a.get("skipped"):
        return lines + [f"*Skipped:* {a['skipped']}.", ""]
    table = pd.DataFrame({"knob": ranges["knob"], "values seen": ranges["all"],
                          f"best {100 * a['fraction']:.0f} % of runs": ranges["best"],
                          "where the best run falls (bootstrap 95 %)": ranges["bootstrap"]})
    return lines + [
        f"pycls style: the {a['n_runs']} ok runs ranked on one error EDF (error = 1 − "
        f"{accuracy_name(a['metric'])}); the best {100 * a['fraction']:.0f} % are the "
        f"{a['n_best']} runs with error ≤ {number(100 * a['error_cutoff'])} %. The bootstrap is "
        f"pycls's `get_filters`: {a['bootstraps']} draws of {100 * a['fraction']:.0f} % of the "
        "runs, the lowest error of each kept, and the 2.5–97.5 percentiles of the winners' values "
        f"(seed {a['seed']}); for a categorical knob, how often each value wins."
        + coverage_note(*a["coverage"]), "", to_markdown(table), ""]


def _verdicts_section(verdicts: list[Verdicts]) -> list[str]:
    pct = f"{100 * CONFIDENCE:.0f} %"
    lines = ["## Verdicts", "",
             f"Accuracy differences in percentage points, tested over seeds at {pct} confidence. "
             f"A sweep value counts with >= {MIN_SEEDS} ok seeds, a trend needs >= {MIN_POINTS} "
             "such values. Seed noise is the pooled within-value sample std; the knee is the "
             "smallest value no later value beats by more than the 95 % least significant "
             "difference (LSD = t · σ · √(1/n_i + 1/n_j)); the rise is a t-test of the plateau's "
             "seeds against the first value's on that pooled seed noise (the LSD's error term), "
             "\"distinguishable from seed noise\" when p < 0.05; bypass kinds are compared by "
             "Welch's t-test.", ""]
    for v in verdicts:
        bypass = v.frames["bypass"]
        if len(verdicts) > 1:
            lines += [f"### study {v.study}", ""]
        lines += [f"- **SR:** {describe(v.sr)}", f"- **pct3x3:** {describe(v.pct3x3)}"]
        if bypass.attrs.get("skipped"):
            lines += [f"- **bypass:** not enough data: {bypass.attrs['skipped']}.", ""]
        elif not v.bypass:
            lines += ["- **bypass:** only one bypass kind in the sweep.", ""]
        else:
            lines += ["- **bypass** (Welch's t-test over seeds, each pair):",
                      *(f"  - {c.text()}." for c in v.bypass), ""]
    return lines


def _paper_section(verdicts: list[Verdicts]) -> list[str]:
    table = paper_check(verdicts)
    if table["study"].nunique() <= 1:
        table = table.drop(columns="study")
    return ["## Paper check", "",
            "Each claim of the SqueezeNet paper (ImageNet; Figure 3 in top-5, Table 3 in top-1) "
            "against this study's ranking accuracy, from the verdicts above: *agrees*, "
            "*disagrees* (including a difference the seeds cannot tell from noise, since the "
            f"paper reports one) or *not enough data*. \"Near 50 %\" means a knee within "
            f"{100 * NEAR:g} points of 50 %. Sizes: the study's own when its networks are the "
            "paper's, else the paper's network as dse's generator builds it at the study's "
            "swept values (analysis/paper.py holds the paper's numbers).", "",
            to_markdown(table), ""]


def findings_sections(df: pd.DataFrame) -> list[str]:
    """The good ranges, verdicts and paper check sections (importances are a chart's section)."""
    verdicts = study_verdicts(df)
    return [*_ranges_section(df), *_verdicts_section(verdicts), *_paper_section(verdicts)]
