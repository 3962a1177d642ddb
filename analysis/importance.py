"""Which knob matters: Optuna's fANOVA (seeded) and PED-ANOVA (the best
:data:`~dse.analysis.ranges.GOOD_FRACTION` of runs) importances, normalised. The scored runs (one trial
per run, so seed noise is in the data) become an in-memory Optuna study, distributions inferred."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from dse.analysis import frames as F
from dse.analysis.fmt import value_text
from dse.analysis.ranges import GOOD_FRACTION, choices, coverage, is_numeric, knobs, too_few

EVALUATORS = {"fanova": "fANOVA", "ped_anova": "PED-ANOVA"}  # column -> name in charts and tables
SEED = 0  # fANOVA's forest
COLUMNS = ["knob", *EVALUATORS, "values", "kind"]


def knob_study(runs: pd.DataFrame, cols: list[str], metric: str) -> Any:
    """An in-memory, maximising Optuna study with one COMPLETE trial per run, each knob's
    distribution from the values swept: int or float between the extremes seen, else categorical."""
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
    ``values`` (distinct values seen), ``kind``. ``attrs``: metric, n_runs, n_points, fraction,
    seed, coverage; ``skipped`` below :data:`~dse.analysis.ranges.MIN_RUNS` scored runs or 2 varying knobs."""
    metric = metric or F.pick_metric(df)
    ok = F.ok_runs(df)
    runs = ok[ok[metric].notna()] if metric in ok.columns else ok.iloc[0:0]
    cols = knobs(runs)
    attrs = {"metric": metric, "n_runs": len(runs), "fraction": fraction, "seed": seed}
    few = f"only {cols[0]} varies" if cols else "no metaparameter varies"
    reason = too_few(len(runs)) or (f"{few} among the ok runs: an importance needs two knobs to compare"
                                    if len(cols) < 2 else None)
    if reason is not None:
        return F.skipped_frame(COLUMNS, reason, n_points=0, **attrs)
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
