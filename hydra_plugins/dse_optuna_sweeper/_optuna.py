"""Storages, samplers and pruners from plain settings; shared by the sweeper and the jobs.

The sweeper and the training job (``dse.sweep.pruning``) must open the *same* storage and build the
*same* pruner from what travels between them (a URL and a JSON string in environment variables), so
both directions of that translation live here, in one place. Validation (:func:`parse_storage`,
:func:`check_sampler`, :func:`pruner_spec`) never touches the storage, which is why the sweeper can
reject bad input before anything is written.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

SAMPLERS = ("tpe", "nsgaii", "gp", "random", "qmc")
PRUNERS = ("median", "hyperband", "threshold", "none")
QMC_TYPES = ("sobol", "halton", "lhs")
JOURNAL_PREFIX = "journal:"
STORAGE_FIELD = "hydra.sweeper.storage"


@dataclass(frozen=True)
class StorageSpec:
    """A validated storage: ``url`` is absolute, so jobs in other dirs open the same one."""

    kind: str  # "rdb" or "journal"
    url: str  # what jobs receive in DSE_OPTUNA_STORAGE (password included, never logged)
    path: Path | None  # the file behind a SQLite or journal storage, else None
    display: str  # the URL with its password hidden, for logs and results files


def parse_storage(url: str | None, cwd: Path | None = None) -> StorageSpec:
    """Validate a storage URL without opening it; relative file paths become absolute.

    ``journal:PATH`` (also ``journal:///abs/path`` and ``journal://rel/path``) selects Optuna's
    JournalStorage over a file; anything else must be an SQLAlchemy URL whose driver is installed.
    """
    if url is None or not str(url).strip():
        raise ConfigError(STORAGE_FIELD, "is required (an SQLAlchemy URL or journal:PATH)")
    url = str(url).strip()
    cwd = cwd or Path.cwd()
    if url.startswith(JOURNAL_PREFIX):
        raw = url[len(JOURNAL_PREFIX):]
        raw = raw[2:] if raw.startswith("//") else raw
        if not raw:
            raise ConfigError(STORAGE_FIELD, f"{url!r} names no file (use journal:PATH)")
        path = Path(raw).expanduser()
        path = path if path.is_absolute() else (cwd / path)
        if path.is_dir():
            raise ConfigError(STORAGE_FIELD, f"{path} is a directory, not a journal file")
        return StorageSpec("journal", f"{JOURNAL_PREFIX}{path}", path, f"{JOURNAL_PREFIX}{path}")

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(STORAGE_FIELD, f"cannot parse {url!r} as a database URL or "
                                         f"journal:PATH ({e})") from None
    path: Path | None = None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if not db or db == ":memory:" or db.startswith("file::memory:"):
            raise ConfigError(STORAGE_FIELD, "an in-memory SQLite database cannot be shared with "
                                             "the jobs or resumed; give it a file")
        path = Path(db).expanduser()
        path = path if path.is_absolute() else (cwd / path)
        if path.is_dir():
            raise ConfigError(STORAGE_FIELD, f"{path} is a directory, not a database file")
        parsed = parsed.set(database=str(path))
    try:
        dialect = parsed.get_dialect()
        dialect.import_dbapi()
    except NoSuchModuleError:
        raise ConfigError(STORAGE_FIELD, f"unknown database kind {parsed.drivername!r} in "
                                         f"{parsed.render_as_string()!r}") from None
    except ImportError as e:
        hint = " (pip install 'dse[postgres]')" if "postgres" in parsed.drivername else ""
        raise ConfigError(STORAGE_FIELD, f"the driver for {parsed.drivername!r} is not "
                                         f"installed: {e}{hint}") from None
    return StorageSpec("rdb", parsed.render_as_string(hide_password=False), path,
                       parsed.render_as_string(hide_password=True))


def open_storage(spec: StorageSpec, *, heartbeat_interval: int | None = None,
                 grace_period: int | None = None,
                 stale_callback: Callable[..., None] | None = None) -> optuna.storages.BaseStorage:
    """Open (and, for a new database, create) the storage ``spec`` describes.

    Heartbeats exist only for RDB storages in Optuna; a journal storage ignores those settings,
    so stale trials of a killed worker stay RUNNING there (see docs/OPTUNA.md).
    """
    import optuna

    if spec.kind == "journal":
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        assert spec.path is not None
        return JournalStorage(JournalFileBackend(str(spec.path)))
    engine_kwargs: dict[str, Any] = {}
    if spec.url.startswith("sqlite"):
        # several workers share one file: wait for the write lock rather than fail at once
        engine_kwargs["connect_args"] = {"timeout": 120}
    else:
        engine_kwargs["pool_pre_ping"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            spec.url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval,
            grace_period=grace_period, heartbeat_stale_trial_callback=stale_callback)


def check_sampler(name: str, qmc_type: str = "sobol") -> str:
    """Validate a sampler name before any storage exists; returns it lower-cased."""
    key = str(name).lower()
    if key not in SAMPLERS:
        raise ConfigError("hydra.sweeper.sampler.name",
                          f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    if key == "qmc" and str(qmc_type).lower() not in QMC_TYPES:
        raise ConfigError("hydra.sweeper.sampler.qmc_type",
                          f"unknown QMC type {qmc_type!r}; choose one of {', '.join(QMC_TYPES)}")
    return key


def make_sampler(name: str, seed: int | None, *, n_startup_trials: int = 10,
                 population_size: int = 50, qmc_type: str = "sobol",
                 ) -> optuna.samplers.BaseSampler:
    """Build a seeded sampler; constraints reach it through ``Trial.set_constraint``."""
    import optuna

    key = check_sampler(name, qmc_type)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if key == "tpe":
            return optuna.samplers.TPESampler(seed=seed, n_startup_trials=n_startup_trials)
        if key == "nsgaii":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)
        if key == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)
        if key == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        return optuna.samplers.QMCSampler(qmc_type=str(qmc_type).lower(), scramble=True,
                                          seed=seed)


def pruner_spec(conf: Any) -> dict[str, Any]:
    """Validate pruner settings into the JSON-able dict that jobs receive in DSE_OPTUNA_PRUNER."""
    get = conf.get if hasattr(conf, "get") else (lambda k, d=None: getattr(conf, k, d))
    name = str(get("name", "median") or "none").lower()
    if name not in PRUNERS:
        raise ConfigError("hydra.sweeper.pruner.name",
                          f"unknown pruner {name!r}; choose one of {', '.join(PRUNERS)}")
    spec: dict[str, Any] = {"name": name, "monitor": get("monitor", None)}
    if name == "median":
        for key, lo in (("n_startup_trials", 0), ("n_warmup_steps", 0), ("interval_steps", 1)):
            spec[key] = _int_at_least(get(key, lo), lo, f"hydra.sweeper.pruner.{key}")
    elif name == "threshold":
        for key in ("n_warmup_steps", "interval_steps"):
            lo = 1 if key == "interval_steps" else 0
            spec[key] = _int_at_least(get(key, lo), lo, f"hydra.sweeper.pruner.{key}")
        for key in ("lower", "upper"):
            value = get(key, None)
            try:
                spec[key] = None if value is None else float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"hydra.sweeper.pruner.{key}",
                                  f"must be a number (got {value!r})") from None
        if spec["lower"] is None and spec["upper"] is None:
            raise ConfigError("hydra.sweeper.pruner.lower", "the threshold pruner needs lower "
                                                            "and/or upper")
    elif name == "hyperband":
        spec["min_resource"] = _int_at_least(get("min_resource", 1), 1,
                                             "hydra.sweeper.pruner.min_resource")
        max_r = get("max_resource", "auto")
        spec["max_resource"] = ("auto" if str(max_r) == "auto" else
                                _int_at_least(max_r, 1, "hydra.sweeper.pruner.max_resource"))
        spec["reduction_factor"] = _int_at_least(get("reduction_factor", 3), 2,
                                                 "hydra.sweeper.pruner.reduction_factor")
    return spec


def make_pruner(spec: dict[str, Any] | str | None) -> optuna.pruners.BasePruner:
    """The pruner a :func:`pruner_spec` dict (or its JSON) describes; ``None`` means no pruning."""
    import optuna

    if isinstance(spec, str):
        spec = json.loads(spec) if spec.strip() else None
    if not spec or spec.get("name") in (None, "none"):
        return optuna.pruners.NopPruner()
    if spec["name"] == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=spec["n_startup_trials"],
                                           n_warmup_steps=spec["n_warmup_steps"],
                                           interval_steps=spec["interval_steps"])
    if spec["name"] == "threshold":
        return optuna.pruners.ThresholdPruner(lower=spec["lower"], upper=spec["upper"],
                                              n_warmup_steps=spec["n_warmup_steps"],
                                              interval_steps=spec["interval_steps"])
    if spec["name"] == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=spec["min_resource"],
                                              max_resource=spec["max_resource"],
                                              reduction_factor=spec["reduction_factor"])
    raise ValueError(f"unknown pruner {spec['name']!r}")


def _int_at_least(value: Any, lo: int, field: str) -> int:
    try:
        ok = not isinstance(value, bool) and float(value).is_integer() and int(value) >= lo
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(field, f"must be an integer >= {lo} (got {value!r})")
    return int(value)
