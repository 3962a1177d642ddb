"""The DataFrame behind every chart (charts only draw these, so tests check numbers, not pixels): only ok
runs count; std is the sample std (ddof=1); an unsupported frame is empty, ``attrs["skipped"]`` says why."""

from __future__ import annotations

import copy
import json
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from dse import metrics
from dse.analysis.fmt import is_missing, value_text
from dse.analysis.loading import CONTEXT, METAPARAMS, SETTING, config_of
from dse.analysis.paper import PAPER_CONTEXT, PRESETS
from dse.metrics import MB, MIB, to_mb, to_mib
from dse.model.spec import BYPASS_KINDS
from dse.store.record import CONFIG_KEYS, NON_SEMANTIC, config_hash

# the columns a point's label may name: what it ran on and its metaparameters
LABELLED = ["study", "model", "data", "trainer", "max_epochs", *METAPARAMS]


def accuracies() -> list[str]:
    """The registry's top-k accuracies, top-1 first; read per call, so a metric added is charted."""
    reg = metrics.REGISTRY
    return sorted((n for n, m in reg.items() if m.topk), key=lambda n: reg[n].topk)


def bypass_rank(kind: Any) -> int:
    """A bypass kind's place in the charts' none/simple/complex order (unknown kinds last)."""
    return BYPASS_KINDS.index(kind) if kind in BYPASS_KINDS else 9


def skipped_frame(columns: list[str], reason: str, **attrs: Any) -> pd.DataFrame:
    """An empty frame saying why the data does not support it (``attrs["skipped"]``)."""
    out = pd.DataFrame(columns=columns)
    out.attrs.update(attrs, skipped=reason)
    return out


def ok_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Runs that finished and are design points (not diverged, failed, pruned or running)."""
    return df[df["status"] == "ok"]


def pick_metric(df: pd.DataFrame) -> str | None:
    """The accuracy that ranks design points: val top-1 (one chosen on test flatters it), else test top-1."""
    ok = ok_runs(df)
    return next((m for m in ("val_top1", "test_top1") if m in ok and ok[m].notna().any()), None)


def _cell(v: Any) -> str:
    """A stable text form of one cell for grouping keys (NA-safe, lists included)."""
    if isinstance(v, (list, tuple, dict)):
        return json.dumps(v, sort_keys=True)
    if is_missing(v):
        return "<NA>"
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return str(v)


def context_key(df: pd.DataFrame, swept: str | None) -> pd.Series:
    """Per run, everything that must be equal for runs to share a sweep but ``swept``: its columns,
    and the :func:`~dse.store.config_hash` of its config without ``swept`` (another ``trainer.lr``)."""
    *parents, leaf = CONFIG_KEYS[swept].split(".") if swept in CONFIG_KEYS else [None]

    def hidden(text: Any) -> str:
        cfg = node = copy.deepcopy(config_of(text))
        for key in parents:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
        return config_hash(cfg) if cfg else ""

    if df.empty:
        return pd.Series([], index=df.index, dtype=object)
    cols = [c for c in METAPARAMS + CONTEXT if c != swept and c in df.columns]
    text = df[cols].apply(lambda r: "|".join(_cell(v) for v in r), axis=1)
    return (text + "|" + df["config"].map(hidden)).astype(object)


def point_key(df: pd.DataFrame) -> pd.Series:
    """Per run, its design point: study + config_hash, else study + every column (Optuna trials)."""
    h = df["config_hash"].astype(object)
    key = h.where(h.notna(), context_key(df, None))
    return (df["study"].map(_cell) + "/" + key.map(_cell)).astype(object)


def _aggregate(ok: pd.DataFrame, bad: pd.DataFrame, by: str, metrics: list[str]) -> pd.DataFrame:
    """Mean / std / count of each metric per value of ``by``, sizes beside; a value with no ok run
    gets a row too (``n`` 0): the chart marks it."""
    g = ok.groupby(by, sort=False, dropna=False)
    stats = g[metrics].agg(["mean", "std", "count"])
    stats.columns = [f"{m}_{'n' if s == 'count' else s}" for m, s in stats.columns]
    out = pd.DataFrame({"n": g.size()}).join(stats).reindex(list(dict.fromkeys([*ok[by], *bad[by]])))
    counts = ["n", *(f"{m}_n" for m in metrics)]
    out[counts] = out[counts].fillna(0).astype(int)
    sizes = pd.concat([ok, bad]).groupby(by, sort=False, dropna=False)[["params", "size_bytes", "macs"]]
    out = _with_sizes(out.join(sizes.first()))  # the first known value: equal for all runs of a value
    out["seeds"] = _seeds(g).reindex(out.index).fillna("")
    out["n_bad"] = bad.groupby(by, dropna=False).size().reindex(out.index).fillna(0).astype(int)
    out.index.name = by
    return out.reset_index()


def _seeds(g: Any) -> pd.Series:
    return g["seed"].agg(lambda s: ",".join(str(x) for x in sorted(s.dropna())))


def _with_sizes(out: pd.DataFrame) -> pd.DataFrame:
    """``size_bytes`` also in MB and MiB (the paper's labels and the ``size_mib`` objective)."""
    size = pd.to_numeric(out["size_bytes"], errors="coerce").astype(float)
    return out.assign(size_mb=to_mb(size), size_mib=to_mib(size))


def sweep_frame(df: pd.DataFrame, param: str) -> pd.DataFrame:
    """Mean ± std over seeds of each accuracy per value of ``param`` in the group of ok runs sharing all
    else (:func:`context_key`) with the most values, then runs, then nearest :data:`PAPER_CONTEXT`."""
    ok = ok_runs(df)
    ok = ok[ok[param].notna()] if param in ok.columns else ok.iloc[0:0]
    empty = skipped_frame([param, "n"], f"no ok run records {param}", param=param, fixed={},
                          metrics=[], groups=0)
    if ok.empty:
        return empty
    keys_all = context_key(df, param)
    keys = keys_all.loc[ok.index]
    paper = PAPER_CONTEXT.get(param, {})
    off_paper = sum((ok[c].map(_cell) != _cell(v)).astype(int) for c, v in paper.items())
    stats = (pd.DataFrame({"key": keys, "v": ok[param].map(_cell), "off": off_paper})
             .groupby("key").agg(values=("v", "nunique"), runs=("v", "size"), off=("off", "min"))
             .reset_index().sort_values(["values", "runs", "off", "key"],
                                        ascending=[False, False, True, True]))
    candidates = stats[stats["values"] >= 2]
    if candidates.empty:
        empty.attrs["skipped"] = (f"no group of ok runs varies only {param} with the rest fixed (values "
                                  f"seen: {', '.join(sorted({_cell(v) for v in ok[param]}))}; need >= 2 "
                                  "in one fixed group)")
        return empty
    best = candidates.iloc[0]["key"]
    sel = ok[keys == best]
    bad = df[(keys_all == best) & (df["status"] != "ok")]
    classes = pd.to_numeric(sel["num_classes"], errors="coerce").max()
    charted = [m for m in accuracies() if m in sel and sel[m].notna().any()  # top-k: over k classes
               and (metrics.REGISTRY[m].topk == 1 or not classes <= metrics.REGISTRY[m].topk)]
    out = _aggregate(sel, bad, param, charted)
    out = out.sort_values(param, kind="stable", ignore_index=True, key=lambda s: s.map(bypass_rank)
                          if param == "bypass" else pd.to_numeric(s, errors="coerce"))
    out.attrs.update(param=param, metrics=charted, groups=len(candidates), n_runs=len(sel), n_bad=len(bad),
                     fixed={c: sel[c].iloc[0] for c in METAPARAMS + CONTEXT if c != param and c in sel},
                     runs=sel.index.tolist())
    return out


def chance(num_classes: Any, k: int = 1) -> float | None:
    """The top-``k`` accuracy of guessing (k / classes, at most 1), None when classes are unknown."""
    n = pd.to_numeric(num_classes, errors="coerce")
    return None if pd.isna(n) or n <= 0 else min(1.0, k / float(n))


# Figure 3a, Figure 3b and Table 3: accuracy and size against SR, pct3x3 and the bypass kind.
sr_frame = partial(sweep_frame, param="sr")
pct3x3_frame = partial(sweep_frame, param="pct3x3")
bypass_frame = partial(sweep_frame, param="bypass")


def varying_columns(frame: pd.DataFrame) -> list[str]:
    """The :data:`LABELLED` columns a point's label names: several values, not implied by the preset."""
    keys = {c: frame[c].map(_cell) for c in LABELLED if c in frame.columns}
    varying = [c for c in LABELLED if c in keys and keys[c].nunique() > 1]
    if "model" in varying:
        implied = [c for c in varying if c != "model"
                   and (keys[c].groupby(keys["model"]).nunique() <= 1).all()]
        varying = [c for c in varying if c not in implied]
    return varying


def describe(row: pd.Series, cols: list[str]) -> str:
    """``sr=0.25 pct3x3=0.5 bypass=simple``: a point's varying metaparameters."""
    return " ".join(f"{c}={value_text(row.get(c))}" for c in cols)


def pareto_mask(size: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """True where no other point is as small, as accurate and strictly better in one (ties kept)."""
    size, acc = np.asarray(size, dtype=float), np.asarray(acc, dtype=float)
    le = size[None, :] <= size[:, None]  # [i, j]: j no bigger than i
    ge = acc[None, :] >= acc[:, None]
    strict = (size[None, :] < size[:, None]) | (acc[None, :] > acc[:, None])
    return ~(le & ge & strict).any(axis=1)


# A budget on any of these is a line on the size axis; the value is its bytes per unit.
_SIZE_BUDGETS = {"size_bytes": 1, "size_mb": MB, "size_mib": MIB}


def setting_of(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """Per row, its data setting as text (``subset=500 max_epochs=1``); a missing value is unknown."""
    unknown = {c: "all" if c == "subset" else "?" for c in cols}  # no subset: the whole training set
    text = [" ".join(f"{c}={unknown[c] if is_missing(v) else value_text(v)}" for c, v in r.items())
            for _, r in df.reindex(columns=cols).astype(object).iterrows()]
    return pd.Series(text, index=df.index, dtype=object)


def with_data_keys(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus a ``data.<key>`` column per hashed data key no column shows (augment): a setting too."""
    shown = {k.split(".", 1)[1] for k in CONFIG_KEYS.values() if k.startswith("data.")} | NON_SEMANTIC["data"]
    data = [config_of(text).get("data") or {} for text in df["config"]]
    keys = pd.DataFrame([{k: v for k, v in d.items() if k not in shown} for d in data], index=df.index)
    return df.join(keys.add_prefix("data."))


def budget_lines(df: pd.DataFrame, cost: str) -> list[tuple[str, float]]:
    """The studies' budgets (``attrs["budgets"]``) on ``cost``'s axis, once each: (text, x in its unit)."""
    out: dict[str, float] = {}
    for study in sorted({str(s) for s in df["study"].dropna()}) if "study" in df else []:
        for metric, op, bound in (df.attrs.get("budgets") or {}).get(study, []):
            if cost == "size_bytes" and metric in _SIZE_BUDGETS:
                x = to_mib(float(bound) * _SIZE_BUDGETS[metric])
            elif metric == cost:
                x = float(bound)
            else:
                continue
            out.setdefault(f"{metric} {op} {bound:g}", x)
    return list(out.items())


def pareto_frame(df: pd.DataFrame, metric: str | None = None, cost: str = "size_bytes") -> pd.DataFrame:
    """One row per design point (means over seeds: a lucky seed never makes the front); ``pareto`` marks
    the non-dominated ones (max ``metric``, min ``cost``) per data ``setting``, numbered in ``label``."""
    metric = metric or pick_metric(df)
    ok = ok_runs(df)
    cols = ["point", "pareto", "label", "cost"]
    if metric is None or ok.empty:
        return skipped_frame(cols, "no ok run has an accuracy", metric=metric, cost=cost)
    has_cost = ok[cost].notna() if cost in ok.columns else pd.Series(False, index=ok.index)
    ok = ok[ok[metric].notna() & ok["size_bytes"].notna() & has_cost]
    if ok.empty:
        what = "a model size" if cost == "size_bytes" else cost
        hint = (" (it is measured by training with trainer.latency=true)"
                if metrics.REGISTRY[cost].latency else "")
        return skipped_frame(cols, f"no ok run has both {metric} and {what}{hint}", metric=metric, cost=cost)
    ok = with_data_keys(ok).assign(point=point_key(ok))
    g = ok.groupby("point", sort=False)
    first = g.first()  # metaparameters and sizes are equal within a point
    hidden = [c for c in first.columns if c.startswith("data.")]
    keep = [c for c in ["study", "model", *SETTING, *hidden, *METAPARAMS, "params", "size_bytes", "macs",
                        "config_hash"] if c in first.columns]
    out = first[keep].assign(n=g.size(), acc_mean=g[metric].mean(), acc_std=g[metric].std(ddof=1),
                             cost=g[cost].mean().astype(float), seeds=_seeds(g))
    if cost not in out.columns:
        out[cost] = out["cost"]
    out = _with_sizes(out.reset_index())
    out["preset"] = out["model"].isin(PRESETS)
    keys = {c: out[c].map(_cell) for c in [*SETTING, *hidden] if c in out.columns}
    setting = [c for c in keys if keys[c].nunique() > 1 and not (  # a hidden key the dataset implies
        c in hidden and (keys[c].groupby(keys["data"]).nunique() <= 1).all())]
    out["setting"] = setting_of(out, setting)
    out["pareto"] = False
    for rows in out.groupby("setting", sort=False).groups.values():
        sel = out.loc[rows]
        out.loc[rows, "pareto"] = pareto_mask(sel["cost"].to_numpy(float), sel["acc_mean"].to_numpy(float))
    out = out.sort_values([*setting, "cost", "acc_mean"], ascending=[True] * (len(setting) + 1)
                          + [False], na_position="last", ignore_index=True)
    cols = [c for c in varying_columns(out) if c not in setting]
    out["desc"] = out.apply(lambda r: describe(r, cols), axis=1)
    labels = np.zeros(len(out), dtype=int)
    labels[out["pareto"].to_numpy()] = np.arange(1, int(out["pareto"].sum()) + 1)
    out["label"] = labels
    out.attrs.update(metric=metric, cost=cost, varying=cols, setting=setting,
                     settings=list(dict.fromkeys(out["setting"])), budgets=budget_lines(df, cost))
    return out


def fronts_frame(fronts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every point on one of ``fronts`` (cost -> :func:`pareto_frame`), its number and cost on each."""
    labels = [f"{c}_label" for c in fronts]
    points = pd.concat(fronts.values(), ignore_index=True).drop_duplicates("point")
    keep = [c for c in ["point", "setting", *LABELLED, "acc_mean", "acc_std", "n", "size_mb", "preset"]
            if c in points.columns]
    out = points[keep].reset_index(drop=True)
    for cost, pts in fronts.items():
        by_point = pts.set_index("point")
        out[f"{cost}_label"] = out["point"].map(by_point["label"]).fillna(0).astype(int)
        out[cost] = out["point"].map(by_point["cost"]).astype(float)
    out = out[(out[labels] > 0).any(axis=1)].reset_index(drop=True)
    cols = varying_columns(out)
    out["desc"] = out.apply(lambda r: describe(r, cols), axis=1, result_type="reduce")
    out.attrs.update(costs=list(fronts))
    return out


def edf_frame(df: pd.DataFrame, metric: str | None = None, by: list[str] | None = None) -> pd.DataFrame:
    """pycls-style error EDFs: per group (``by``, default whichever of study / model / bypass / data
    setting vary), each ok run's error 1 - metric, the ECDF at it and its ``run`` label in ``df``."""
    metric = metric or pick_metric(df)
    ok = ok_runs(df)
    if metric is None or ok.empty or not ok[metric].notna().any():
        return skipped_frame(["group", "error", "edf", "n"], "no ok run has an accuracy",
                             metric=metric, by=by or [])
    ok = ok[ok[metric].notna()]
    if by is None:  # a curve never pools data settings, as a front does not
        ok = ok.assign(setting=setting_of(ok, [c for c in SETTING if ok[c].map(_cell).nunique() > 1]))
        by = [c for c in ("study", "model", "bypass", "setting") if ok[c].map(_cell).nunique() > 1]
    group = (ok[by].apply(lambda r: " / ".join(_cell(v) for v in r), axis=1).astype(object)
             if by else pd.Series("all", index=ok.index, dtype=object))
    out = pd.DataFrame({"group": group, "error": 1.0 - ok[metric].astype(float), **{c: ok[c] for c in by},
                        "run": ok.index})
    out["n"] = out.groupby("group")["error"].transform("size").astype(int)
    out["edf"] = out.groupby("group")["error"].rank(method="max") / out["n"]
    out = out.sort_values([*by, "error"], ignore_index=True, key=lambda s: s if s.name == "error"
                          else s.map(bypass_rank if s.name == "bypass" else _cell))
    out.attrs.update(metric=metric, by=by)
    return out


def edf_summary(edf: pd.DataFrame) -> pd.DataFrame:
    """n, min and mean error per EDF curve (the numbers in the chart's legend)."""
    g = edf.groupby("group", sort=False)["error"]
    return pd.DataFrame({"n": g.size(), "min_error": g.min(), "mean_error": g.mean(),
                         "median_error": g.median()}).reset_index()
