"""Which knobs matter and where, over the ok runs, and how report.md words it: pycls good ranges (the
best x % of the error EDF and ``get_filters``' seeded bootstrap of where the best run falls) and
Optuna's fANOVA (seeded) and PED-ANOVA importances over an in-memory study of the runs."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from dse.analysis import frames as F
from dse.analysis.fmt import integer, number, to_markdown, value_text
from dse.analysis.style import accuracy_name

GOOD_FRACTION = 0.25  # "the best x %": pycls samples 25 % of a sweep; PED-ANOVA's target too
BOOTSTRAPS = 2500  # pycls get_filters' b
PERCENTILES = (2.5, 50.0, 97.5)  # pycls: alpha = 5 %
SEED = 0  # the bootstrap's and fANOVA's forest's
MIN_RUNS = 8  # scored runs below which importances and good ranges are skipped: too noisy to read
EVALUATORS = {"fanova": "fANOVA", "ped_anova": "PED-ANOVA"}  # column -> name in charts and tables

RANGE_COLUMNS = ["knob", "kind", "all", "best", "bootstrap", "best_low", "best_high",
                 "boot_low", "boot_median", "boot_high"]
IMPORTANCE_COLUMNS = ["knob", *EVALUATORS, "values", "kind"]


def knobs(runs: pd.DataFrame) -> list[str]:
    """The columns that vary among ``runs``, in the order the charts name metaparameters."""
    return [c for c in F.varying_columns(runs) if c != "study"]


def too_few(n: int) -> str | None:
    """Why ``n`` scored runs are too few for good ranges or importances, or None."""
    if n < MIN_RUNS:
        return f"only {n} ok runs with an accuracy (need >= {MIN_RUNS})" if n else "no ok run has an accuracy"
    return None


def coverage(runs: pd.DataFrame, cols: list[str]) -> tuple[int, int]:
    """(combinations of the knobs' values the runs hold, those of a full grid of them)."""
    if not cols:
        return 0, 0
    text = runs[cols].map(value_text)
    return len(text.drop_duplicates()), int(np.prod([text[c].nunique() for c in cols]))


def coverage_note(seen: int, grid: int) -> str:
    """A sentence for report.md when the runs are not a full grid of their knobs, else ""."""
    if seen >= grid:
        return ""
    return (f" The runs cover {seen} of the {grid} combinations of these knobs' values (not a "
            "full grid), so each knob's numbers also reflect where the others were held.")


def is_numeric(values: pd.Series) -> bool:
    """Every value a number (not a bool); one missing makes it categorical: fANOVA needs all."""
    types = pd.api.types
    return not (values.isna().any() or types.is_bool_dtype(values)) and types.is_numeric_dtype(values)


def choices(values: pd.Series, knob: str) -> list[str]:
    """A categorical knob's values as text, bypass kinds in none/simple/complex order."""
    seen = sorted({value_text(v) for v in values})
    if knob == "bypass":
        seen.sort(key=F.bypass_rank)
    return seen


def winners(errors: np.ndarray, fraction: float, seed: int = SEED, draws: int = BOOTSTRAPS) -> np.ndarray:
    """Indices of the bootstrap's winners: the lowest error of each draw of ``fraction`` x n runs."""
    n = len(errors)
    size = max(1, int(n * fraction))
    samples = np.random.default_rng(seed).integers(0, n, size=(draws, size))
    return samples[np.arange(draws), np.argmin(errors[samples], axis=1)]


def _counts(values: pd.Series, knob: str, percent: bool = False) -> str:
    """``simple ×3, none ×1`` (or ``simple 62 %, none 38 %``), most frequent first."""
    counts = values.map(value_text).value_counts()
    order = {v: i for i, v in enumerate(choices(values, knob))}
    items = sorted(counts.items(), key=lambda kv: (-kv[1], order.get(kv[0], 99)))
    return ", ".join(f"{v} {100 * c / len(values):.0f} %" if percent else f"{v} ×{c}" for v, c in items)


def _span(lo: float, hi: float) -> str:
    return value_text(lo) if lo == hi else f"{value_text(lo)} – {value_text(hi)}"


def _knob_row(knob: str, runs: pd.DataFrame, best: pd.DataFrame, won: pd.DataFrame) -> dict:
    """One knob's row: its values over every run, over the best runs and over the winners."""
    if not is_numeric(runs[knob]):
        return {"knob": knob, "kind": "categorical", "all": ", ".join(choices(runs[knob], knob)),
                "best": _counts(best[knob], knob), "bootstrap": _counts(won[knob], knob, True)}
    all_v, best_v, won_v = (f[knob].astype(float) for f in (runs, best, won))
    lo, med, hi = np.percentile(won_v.to_numpy(), PERCENTILES)
    return {"knob": knob, "kind": "numeric", "all": _span(all_v.min(), all_v.max()),
            "best": _span(best_v.min(), best_v.max()),
            "bootstrap": _span(lo, hi) + (f" (median {value_text(med)})" if lo != hi else ""),
            "best_low": best_v.min(), "best_high": best_v.max(), "boot_low": lo, "boot_median": med,
            "boot_high": hi}


def good_ranges(df: pd.DataFrame, fraction: float = GOOD_FRACTION, metric: str | None = None,
                seed: int = SEED) -> pd.DataFrame:
    """One row per knob: ``all`` (values seen), ``best`` (over the best ``fraction``), ``bootstrap``
    (95 % range of the best run), numeric knobs also as numbers (``best_low`` ... ``boot_high``)."""
    edf = F.edf_frame(df, metric, by=[])
    attrs = {"metric": edf.attrs.get("metric"), "fraction": fraction, "n_runs": len(edf),
             "bootstraps": BOOTSTRAPS, "seed": seed}
    if reason := too_few(len(edf)):
        return F.skipped_frame(RANGE_COLUMNS, reason, **attrs)
    runs = df.loc[edf["run"]].reset_index(drop=True)
    cols = knobs(runs)
    if not cols:
        return F.skipped_frame(RANGE_COLUMNS, "no metaparameter varies among the ok runs", **attrs)
    best = edf[edf["edf"] <= fraction + 1e-12]  # else the lowest error, with its ties
    best = best if len(best) else edf[edf["error"] == edf["error"].min()]
    won = runs.iloc[winners(edf["error"].to_numpy(float), fraction, seed)]
    out = pd.DataFrame([_knob_row(k, runs, runs.loc[best.index], won) for k in cols], columns=RANGE_COLUMNS)
    out.attrs.update(attrs, n_best=len(best), error_cutoff=float(best["error"].max()),
                     coverage=coverage(runs, cols))
    return out


def knob_study(runs: pd.DataFrame, cols: list[str], metric: str) -> Any:
    """An in-memory Optuna study, a COMPLETE trial per run, each knob's distribution from its values."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, Any] = {}
    cast: dict[str, Callable[[Any], Any]] = {}
    for c in cols:
        v = runs[c]
        if not is_numeric(v):
            dists[c], cast[c] = CategoricalDistribution(choices(v, c)), value_text
        elif bool(np.all(np.mod(v.astype(float), 1) == 0)):
            dists[c], cast[c] = IntDistribution(int(v.min()), int(v.max())), int
        else:
            dists[c], cast[c] = FloatDistribution(float(v.min()), float(v.max())), float
    study = optuna.create_study(direction="maximize")
    study.add_trials([create_trial(params={c: cast[c](r[c]) for c in cols}, distributions=dists,
                                   value=float(r[metric])) for _, r in runs.iterrows()])
    return study


def importance_frame(df: pd.DataFrame, metric: str | None = None,
                     fraction: float = GOOD_FRACTION, seed: int = SEED) -> pd.DataFrame:
    """One row per knob, most important first: ``fanova``, ``ped_anova`` (each summing to 1),
    ``values`` (distinct values seen), ``kind``; skipped below :data:`MIN_RUNS` runs or 2 knobs."""
    metric = metric or F.pick_metric(df)
    ok = F.ok_runs(df)
    runs = ok[ok[metric].notna()] if metric in ok.columns else ok.iloc[0:0]
    cols = knobs(runs)
    attrs = {"metric": metric, "n_runs": len(runs), "fraction": fraction, "seed": seed}
    few = f"only {cols[0]} varies" if cols else "no metaparameter varies"
    reason = too_few(len(runs)) or (f"{few} among the ok runs: an importance needs two knobs to compare"
                                    if len(cols) < 2 else None)
    if reason is not None:
        return F.skipped_frame(IMPORTANCE_COLUMNS, reason, n_points=0, **attrs)
    from optuna import importance as oi

    evaluators = {"fanova": oi.FanovaImportanceEvaluator(seed=seed),
                  "ped_anova": oi.PedAnovaImportanceEvaluator(target_quantile=fraction)}
    study = knob_study(runs, cols, metric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API and "few trials" notices
        scores = {e: oi.get_param_importances(study, evaluator=ev) for e, ev in evaluators.items()}
    out = pd.DataFrame({"knob": cols, **{e: [scores[e][c] for c in cols] for e in EVALUATORS},
                        "values": [runs[c].astype(str).nunique() for c in cols],
                        "kind": ["numeric" if is_numeric(runs[c]) else "categorical" for c in cols]})
    out = out.sort_values(list(EVALUATORS), ascending=False, kind="stable", ignore_index=True)
    out.attrs.update(attrs, n_points=int(F.point_key(runs).nunique()), coverage=coverage(runs, cols))
    return out


def ranges_section(df: pd.DataFrame) -> list[str]:
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
