"""Which knob matters: Optuna's fANOVA (seeded) and PED-ANOVA (the best
:data:`~analysis.ranges.GOOD_FRACTION` of runs, as the good ranges read) importances, normalised.

Every source takes one path: the scored runs (one trial per run, so seed noise is in the data)
become an in-memory Optuna study, each knob's distribution inferred by :mod:`analysis.space`.
"""

from __future__ import annotations

import warnings

import pandas as pd

from analysis.frames import point_key
from analysis.ranges import GOOD_FRACTION
from analysis.space import MIN_RUNS, coverage, distribution, knobs, param_value, scored_runs

EVALUATORS = {"fanova": "fANOVA", "ped_anova": "PED-ANOVA"}  # column -> name in charts and tables
SEED = 0  # fANOVA's forest
COLUMNS = ["knob", *EVALUATORS, "values", "kind"]


def knob_study(runs: pd.DataFrame, cols: list[str], metric: str):
    """An in-memory, maximising Optuna study with one COMPLETE trial per run."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists = {c: distribution(runs[c], c) for c in cols}
    study = optuna.create_study(direction="maximize")
    study.add_trials([
        create_trial(params={c: param_value(r[c], dists[c]) for c in cols}, distributions=dists,
                     value=float(r[metric]))
        for _, r in runs.iterrows()])
    study.set_user_attr("kinds", {c: "categorical" if isinstance(d, CategoricalDistribution)
                                  else "numeric" for c, d in dists.items()})
    return study


def evaluate(study, fraction: float = GOOD_FRACTION, seed: int = SEED) -> dict[str, dict[str, float]]:
    """Evaluator column -> knob -> normalised importance."""
    from optuna.importance import (
        FanovaImportanceEvaluator,
        PedAnovaImportanceEvaluator,
        get_param_importances,
    )

    evaluators = {"fanova": FanovaImportanceEvaluator(seed=seed),
                  "ped_anova": PedAnovaImportanceEvaluator(target_quantile=fraction)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # experimental-API and "few trials" notices
        return {name: get_param_importances(study, evaluator=ev) for name, ev in evaluators.items()}


def _skip_reason(runs: pd.DataFrame, cols: list[str]) -> str | None:
    if len(runs) < MIN_RUNS:
        return f"only {len(runs)} ok runs with an accuracy (need >= {MIN_RUNS})"
    if len(cols) < 2:
        what = f"only {cols[0]} varies" if cols else "no metaparameter varies"
        return f"{what} among the ok runs: an importance needs two knobs to compare"
    return None


def importance_frame(df: pd.DataFrame, metric: str | None = None,
                     fraction: float = GOOD_FRACTION, seed: int = SEED) -> pd.DataFrame:
    """One row per knob, most important first: ``fanova``, ``ped_anova`` (each summing to 1),
    ``values`` (distinct values seen), ``kind``. ``attrs``: metric, n_runs, n_points, fraction,
    seed, coverage; ``skipped`` below :data:`MIN_RUNS` scored runs or two varying knobs."""
    runs, metric = scored_runs(df, metric)
    cols = knobs(runs)
    out = pd.DataFrame(columns=COLUMNS)
    out.attrs.update(metric=metric, n_runs=len(runs), n_points=0, fraction=fraction, seed=seed)
    reason = "no ok run has an accuracy" if metric is None or runs.empty else _skip_reason(runs,
                                                                                          cols)
    if reason is not None:
        out.attrs["skipped"] = reason
        return out
    study = knob_study(runs, cols, metric)
    scores = evaluate(study, fraction, seed)
    kinds = study.user_attrs["kinds"]
    out = pd.DataFrame({"knob": cols, **{e: [scores[e][c] for c in cols] for e in EVALUATORS},
                        "values": [runs[c].astype(str).nunique() for c in cols],
                        "kind": [kinds[c] for c in cols]})
    out = out.sort_values(list(EVALUATORS), ascending=False, kind="stable").reset_index(drop=True)
    out.attrs.update(metric=metric, n_runs=len(runs), n_points=int(point_key(runs).nunique()),
                     fraction=fraction, seed=seed, coverage=coverage(runs, cols))
    return out
