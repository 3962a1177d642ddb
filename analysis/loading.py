"""Any results source (a dse store, an Optuna storage; *where* it is: :mod:`dse.analysis.source`) as one
pandas frame with the run record's columns (docs/CONTRACTS.md); bad input raises ``LoadError``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from dse.analysis.fmt import is_missing
from dse.analysis.source import ARG, LoadError, Source, resolve, unknown_study
from dse.errors import ConfigError, first_line
from dse.store import ResultsStore
from dse.store.record import CONFIG_KEYS, FINISHED, run_dtypes
from dse.store.record import STATUSES as RUN_STATUSES
from dse.storefile import DB_NAME, OPTUNA_DB
from dse.sweep import trials

# Every column NA-capable: a run that failed before testing has no test_top1 (not 0 %).
COLUMNS: dict[str, str] = run_dtypes(nullable=True)
# A design point's metaparameters (the record's model.* columns) and what makes accuracies
# comparable (its data.* and trainer.* columns): one Pareto front is drawn per equal setting.
METAPARAMS = [c for c, k in CONFIG_KEYS.items() if k.startswith("model.") and c != "model"] + [
    "pool_after"]  # RunRecord.from_config joins model.pool_after's list into text
SETTING = [c for c, k in CONFIG_KEYS.items() if k.split(".")[0] in ("data", "trainer")]
CONTEXT = ["study", "model", *SETTING]
# The tables' order: finished first, the store's other statuses, then those only Optuna trials have.
STATUSES = list(dict.fromkeys([*FINISHED, *RUN_STATUSES, *trials.KINDS]))

# Optuna parameter names are Hydra override keys (``model.sr``): the record's own mapping read back.
_PARAM_ALIASES = {key: col for col, key in CONFIG_KEYS.items()}


def normalize(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every contract column, in contract order, nullable: no chart asks whether one exists."""
    out = df.reindex(columns=[*COLUMNS, *(c for c in df.columns if c not in COLUMNS)])
    for col, dtype in COLUMNS.items():
        try:
            if dtype in ("Int64", "float64"):
                num = pd.to_numeric(out[col], errors="coerce")
                out[col] = (num.round() if dtype == "Int64" else num).astype(dtype)
            elif dtype == "boolean":
                out[col] = out[col].map(_to_bool).astype("boolean")
            else:
                out[col] = out[col].astype(object).where(out[col].notna(), None)
        except (TypeError, ValueError):
            pass  # leave a column we cannot coerce as it is; charts skip what they cannot read
    out = out.reset_index(drop=True)
    out["status"] = out["status"].fillna("ok").astype(str)
    return out


def drop_repeated_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, config_hash, seed), ok first: a seed counted twice would shrink the std."""
    key = ["study", "config_hash", "seed"]
    keyed = df[df[key].notna().all(axis=1) & (df["config_hash"].astype(str) != "")]
    keyed = keyed.sort_values("status", key=lambda s: s != "ok", kind="stable")  # ok rows first
    return df.drop(index=keyed.index[keyed.duplicated(key)]).reset_index(drop=True)


def _to_bool(v: Any) -> Any:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return pd.NA if is_missing(v) else bool(v)


def _read_dse(src: Source) -> pd.DataFrame:
    """All runs of a dse store, never creating one; the store's refusal becomes a LoadError."""
    try:
        store = ResultsStore(src.url if src.path is None else src.path, create=False)
    except ConfigError as e:
        raise LoadError(ARG, e.message) from None
    with store:
        return store.frame()


def _param_column(name: str) -> str:
    """``model.sr`` -> ``sr``; ``model.stem.channels`` -> ``stem_channels``; others keep dots."""
    if name.startswith("model.") and name not in _PARAM_ALIASES:
        return name[len("model."):].replace(".", "_")
    return _PARAM_ALIASES.get(name, name)


def _optuna(url: str) -> tuple[Any, dict[str, list[tuple[str, str, float]]]]:
    """The Optuna storage at ``url``, opened as the sweeper opens it, and each study's budgets."""
    import optuna

    from dse.sweep.storage import open_storage, parse_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(parse_storage(url))
    return storage, {s.study_name: trials.budgets(s.user_attrs)
                     for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}


def _read_optuna(src: Source, study: str | None) -> pd.DataFrame:
    """Optuna trials as run records; what they lack (model size, say) from a dse store beside."""
    import optuna

    try:
        storage, budgets = _optuna(src.url)
    except Exception as e:  # noqa: BLE001 - schema/version errors from Optuna or SQLAlchemy
        raise LoadError(ARG, f"cannot read Optuna storage: {first_line(e)}") from None
    if study is not None and study not in budgets:
        raise unknown_study(study, src.url, budgets)
    names = [study] if study is not None else list(budgets)
    rows: list[dict[str, Any]] = []
    for name in names:
        st = optuna.load_study(study_name=name, storage=storage)
        n = len(st.directions)
        metric_names = st.metric_names or (["value"] if n == 1 else [f"value_{i}" for i in range(n)])
        rows += [_trial_row(name, t, metric_names) for t in st.get_trials(deepcopy=False)
                 if trials.kind(t) != "discarded"]  # claimed over budget by a racing worker
    df = _fill_from_sibling_store(pd.DataFrame(rows), src)
    df.attrs["budgets"] = {n: budgets[n] for n in names}
    return df


def _sibling_budgets(src: Source) -> dict[str, list[tuple[str, str, float]]]:
    """The budgets of the Optuna storage beside a dse store (which has none): a bonus, never an error."""
    if src.path is None:
        return {}
    try:
        sibling = resolve(src.path.resolve().parent / OPTUNA_DB)
        return _optuna(sibling.url)[1] if sibling.kind == "optuna" else {}
    except Exception:  # noqa: BLE001 - not an Optuna storage, or none there
        return {}


def _trial_row(study: str, t: Any, metric_names: list[str]) -> dict[str, Any]:
    """One trial as a run record: what the sweeper stored with it, its params, its values."""
    status, error = trials.run_status(t)
    row: dict[str, Any] = {"study": study, "trial": t.number, "status": status, "error": error}
    row.update({_param_column(k): v for k, v in trials.recorded_values(t).items()})
    row.update({_param_column(k): v for k, v in t.params.items()})
    row.update(zip(metric_names, t.values or [], strict=False))
    row.update({col: when.isoformat() for col, when in (("started_at", t.datetime_start),
                                                        ("finished_at", t.datetime_complete)) if when})
    row.setdefault("run_id", f"{study}-trial-{t.number}")
    if "overrides" not in row:
        row["overrides"] = " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}"
                                    for k, v in t.params.items())
    return row


def _fill_from_sibling_store(df: pd.DataFrame, src: Source) -> pd.DataFrame:
    """Fill trial columns that are missing (size, accuracies, metaparameters) from results.db."""
    if src.path is None or df.empty:
        return df
    store = src.path.resolve().parent / DB_NAME
    if not store.is_file() or store == src.path.resolve():
        return df
    try:
        runs = normalize(_read_dse(resolve(store)))
    except Exception:  # noqa: BLE001 - the sibling store is a bonus, never an error
        return df
    runs = runs[runs["trial"].notna()].drop_duplicates(["study", "trial"], keep="last")
    runs = runs.set_index(["study", "trial"])
    keyed = df.assign(trial=df["trial"].astype("Int64")).set_index(["study", "trial"])
    other = runs.drop(columns=["status", "run_id"]).reindex(keyed.index)
    new = other.columns.difference(keyed.columns, sort=False)
    return keyed.fillna(other).join(other[new]).reset_index()


def load(source: str | Path | Source | pd.DataFrame, study: str | None = None) -> pd.DataFrame:
    """Every run of ``source`` (a path, URL or frame; optionally one study), repeated seeds dropped, and
    ``attrs["budgets"]``; no runs is a :class:`LoadError` (an empty chart would look like a result)."""
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
        known = {str(s) for s in df["study"].dropna()}
        if study not in known:
            raise unknown_study(study, where, known)
        df = df[df["study"] == study].reset_index(drop=True)
    if df.empty:
        raise LoadError(ARG, f"{where} holds no runs")
    return df


def status_order(statuses: pd.Series) -> list[str]:
    """The statuses present, in :data:`STATUSES` order, unknown ones after them."""
    seen = set(statuses)
    return [s for s in STATUSES if s in seen] + sorted(seen - set(STATUSES))


def config_of(row_config: Any) -> dict[str, Any]:
    """The resolved config stored with a run (JSON text), or {} when absent or unreadable."""
    if isinstance(row_config, dict):
        return row_config
    try:
        value = json.loads(row_config)
    except (TypeError, ValueError):  # absent (NA) or not JSON
        return {}
    return value if isinstance(value, dict) else {}
