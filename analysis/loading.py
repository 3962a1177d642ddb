"""Turn any results source into one pandas frame with the run-record columns of docs/CONTRACTS.md.

Every chart and table in :mod:`analysis` reads this one frame, so how a result was stored (a dse
results store, an Optuna storage) is dealt with here and nowhere else; *where* it is (a study
folder ``runs/<study>/`` meaning its ``results.db``, an SQLite file, any SQLAlchemy URL) is
:mod:`analysis.source`'s job.

Bad input raises :class:`~analysis.source.LoadError` (a :class:`dse.errors.ConfigError`), which
``dse-report`` turns into the project's one-line, exit-2 error.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from analysis.source import ARG, LoadError, Source, resolve
from dse.errors import ConfigError, first_line
from dse.store.record import CONFIG_KEYS, run_dtypes
from dse.storefile import OPTUNA_DB, sqlite_url
from dse.sweep import trials

# The run record's columns (docs/CONTRACTS.md) -> pandas dtype, all NA-capable: a run that failed
# before testing has no test_top1 (not 0 %), and an Optuna trial has no seed.
COLUMNS: dict[str, str] = run_dtypes(nullable=True)

# Metaparameters of a design point (what a sweep varies) and the fixed context a sweep must share.
METAPARAMS = ["base_e", "incr_e", "freq", "n_fire", "sr", "pct3x3", "dropout", "bypass",
              "batch_norm", "stem_channels", "stem_kernel", "stem_stride", "pool_after"]
# What a run's accuracy means (the data it saw, how long and how it trained): accuracies compare,
# and one Pareto front is drawn, only among runs whose setting is equal.
SETTING = ["data", "trainer", "image_size", "num_classes", "subset", "max_epochs"]
CONTEXT = ["study", "model", *SETTING]
STATUSES = ["ok", "diverged", "failed", "pruned", "rejected", "running"]

# Optuna parameter names are Hydra override keys (``model.sr``): the record's own mapping read back.
_PARAM_ALIASES = {key: col for col, key in CONFIG_KEYS.items()}


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """Give ``df`` every contract column, in contract order, with nullable dtypes.

    Stores written by older code, Optuna trials and hand-made test frames all lack some columns;
    filling them with NA here means no chart has to ask whether a column exists.
    """
    out = df.copy()
    for col, dtype in COLUMNS.items():
        if col not in out.columns:
            empty = {"float64": np.nan, "object": None}.get(dtype, pd.NA)
            out[col] = pd.Series(empty, index=out.index, dtype=dtype)
            continue
        try:
            if dtype == "Int64":
                out[col] = pd.to_numeric(out[col], errors="coerce").round().astype("Int64")
            elif dtype == "float64":
                out[col] = pd.to_numeric(out[col], errors="coerce").astype("float64")
            elif dtype == "boolean":
                out[col] = out[col].map(_to_bool).astype("boolean")
            else:
                out[col] = out[col].astype(object).where(out[col].notna(), None)
        except (TypeError, ValueError):
            pass  # leave a column we cannot coerce as it is; charts skip what they cannot read
    extra = [c for c in out.columns if c not in COLUMNS]
    out = out[list(COLUMNS) + extra].reset_index(drop=True)
    out["status"] = out["status"].fillna("ok").astype(str)
    return out


def drop_repeated_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, config_hash, seed): its first ok row, else its first row.

    A seed stored twice (two sweeps that raced before the store had claims, ``study.rerun``, a
    failed seed trained again) is one seed: counted twice, its copy would shrink the std toward 0.
    Rows without a hash or seed (Optuna trials) are all kept.
    """
    key = ["study", "config_hash", "seed"]
    keyed = df[key].notna().all(axis=1) & (df["config_hash"].astype(str) != "")
    first_ok = df[keyed]
    first_ok = first_ok.assign(_bad=first_ok["status"] != "ok").sort_values("_bad", kind="stable")
    repeated = first_ok.index[first_ok.duplicated(key)]
    return df.drop(index=repeated).reset_index(drop=True)


def _to_bool(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return pd.NA
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _read_dse(src: Source) -> pd.DataFrame:
    """All runs of a dse store, through :class:`dse.store.ResultsStore` (it owns the schema).

    ``create=False``: a report never initialises a store; the store's own refusal (newer schema,
    not a store) becomes a LoadError with the store's words.
    """
    from dse.store import ResultsStore

    try:
        store = ResultsStore(src.url if src.path is None else src.path, create=False)
    except ConfigError as e:
        raise LoadError(ARG, e.message) from None
    try:
        return store.frame()
    finally:
        store.close()


def _param_column(name: str) -> str:
    """``model.sr`` -> ``sr``; ``model.stem.channels`` -> ``stem_channels``; others keep dots."""
    if name in _PARAM_ALIASES:
        return _PARAM_ALIASES[name]
    if name.startswith("model."):
        return name[len("model."):].replace(".", "_")
    return name


def _read_optuna(src: Source, study: str | None) -> pd.DataFrame:
    """Optuna trials as run records: params -> metaparameter columns, values -> named objectives.

    Objective names come from ``study.metric_names`` (set by dse's sweeper); a value named like a
    record column (``val_top1``) fills that column, so every chart works on Optuna studies too.
    Columns the trials lack (model size, say) are filled from a dse store beside the storage when
    one records the same study and trial numbers.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        storage = optuna.storages.RDBStorage(src.url, skip_table_creation=True)
        names = optuna.get_all_study_names(storage)
    except Exception as e:  # noqa: BLE001 - schema/version errors from Optuna or SQLAlchemy
        raise LoadError(ARG, f"cannot read Optuna storage: {first_line(e)}") from None
    if study is not None and study not in names:
        raise LoadError("--study", f"unknown study {study!r} in {src.url} "
                                   f"(known: {', '.join(sorted(names)) or 'none'})")
    rows: list[dict[str, Any]] = []
    budgets: dict[str, list[tuple[str, str, float]]] = {}
    for name in [study] if study is not None else names:
        st = optuna.load_study(study_name=name, storage=storage)
        budgets[name] = trials.budgets(st.user_attrs)
        metric_names = st.metric_names or (
            ["value"] if len(st.directions) == 1 else
            [f"value_{i}" for i in range(len(st.directions))])
        rows += [_trial_row(name, t, metric_names) for t in st.get_trials(deepcopy=False)
                 if trials.kind(t) != "discarded"]  # claimed over budget by a racing worker
    df = pd.DataFrame(rows)
    if not df.empty:
        df = _fill_from_sibling_store(df, src)
    df.attrs["budgets"] = budgets
    return df


def _sibling_budgets(src: Source) -> dict[str, list[tuple[str, str, float]]]:
    """The budgets of the Optuna studies in an ``optuna.db`` beside a dse store (the sweeper's
    default storage): its runs' results.db does not record the sweep's constraints."""
    sibling = src.path.resolve().parent / OPTUNA_DB if src.path is not None else None
    if sibling is None or not sibling.is_file():
        return {}
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = optuna.storages.RDBStorage(sqlite_url(sibling), skip_table_creation=True)
        return {s.study_name: trials.budgets(s.user_attrs)
                for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    except Exception:  # noqa: BLE001 - the sibling storage is a bonus, never an error
        return {}


def _trial_row(study: str, t: Any, metric_names: list[str]) -> dict[str, Any]:
    """One trial as a run record: what the sweeper stored with it (:mod:`dse.sweep.trials`), its
    params under their column names, its values under the study's metric names."""
    status, error = trials.run_status(t)
    row: dict[str, Any] = {"study": study, "trial": t.number, "status": status, "error": error}
    row.update({_param_column(k): v for k, v in trials.recorded_values(t).items()})
    row.update({_param_column(k): v for k, v in t.params.items()})
    row.update(zip(metric_names, t.values or [], strict=False))
    if t.datetime_start is not None:
        row["started_at"] = t.datetime_start.isoformat()
    if t.datetime_complete is not None:
        row["finished_at"] = t.datetime_complete.isoformat()
    row.setdefault("run_id", f"{study}-trial-{t.number}")
    if "overrides" not in row:
        row["overrides"] = " ".join(f"{k}={_override_value(v)}" for k, v in t.params.items())
    return row


def _override_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _fill_from_sibling_store(df: pd.DataFrame, src: Source) -> pd.DataFrame:
    """Fill trial columns that are missing (size, accuracies, metaparameters) from results.db."""
    if src.path is None:
        return df
    store = src.path.resolve().parent / "results.db"
    if not store.is_file() or store == src.path.resolve():
        return df
    try:
        runs = normalize(_read_dse(resolve(store)))
    except Exception:  # noqa: BLE001 - the sibling store is a bonus, never an error
        return df
    runs = runs[runs["trial"].notna()]
    if runs.empty:
        return df
    runs = runs.drop_duplicates(["study", "trial"], keep="last").set_index(["study", "trial"])
    keyed = df.assign(trial=df["trial"].astype("Int64")).set_index(["study", "trial"])
    for col in runs.columns:
        if col in ("status", "run_id"):
            continue
        other = runs[col].reindex(keyed.index)
        if col not in keyed.columns:
            keyed[col] = other.to_numpy()
        else:
            keyed[col] = keyed[col].where(keyed[col].notna(), other.to_numpy())
    return keyed.reset_index()


def load(source: str | Path | Source | pd.DataFrame, study: str | None = None) -> pd.DataFrame:
    """Every run of ``source`` (optionally one study) as a frame with the contract's columns.

    ``source`` may also be a DataFrame (a notebook's own filtered frame): it is only normalized
    (and, like every source, rid of repeated seeds: :func:`drop_repeated_seeds`).
    Raises :class:`LoadError` when there is nothing to report on, because an empty chart would
    look like a result. ``attrs["budgets"]``: per study, the sweep's constraints as (metric, op,
    bound) (:func:`dse.sweep.trials.budgets`; from an Optuna storage, or one beside a dse store);
    a frame passed in keeps its own.
    """
    if isinstance(source, pd.DataFrame):
        df = normalize(source)
        where = "the frame"
    else:
        src = source if isinstance(source, Source) else resolve(source)
        df = _read_dse(src) if src.kind == "dse" else _read_optuna(src, study)
        where = src.url
        if df is None or df.empty:
            raise LoadError(ARG, f"{where} holds no runs yet")
        budgets = df.attrs.get("budgets") if src.kind == "optuna" else _sibling_budgets(src)
        df = normalize(df)
        df.attrs["budgets"] = budgets or {}
    df = drop_repeated_seeds(df)
    if study is not None:
        known = sorted(str(s) for s in df["study"].dropna().unique())
        if study not in known:
            raise LoadError("--study", f"unknown study {study!r} in {where} "
                                       f"(known: {', '.join(known) or 'none'})")
        df = df[df["study"] == study].reset_index(drop=True)
    if df.empty:
        raise LoadError(ARG, f"{where} holds no runs")
    return df


def config_of(row_config: Any) -> dict[str, Any]:
    """The resolved config stored with a run (JSON text), or {} when absent or unreadable."""
    if isinstance(row_config, dict):
        return row_config
    if not isinstance(row_config, str) or not row_config.strip():
        return {}
    try:
        value = json.loads(row_config)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
