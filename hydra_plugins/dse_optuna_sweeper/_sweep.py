"""The study loop behind ``hydra/sweeper=dse_optuna``: validate, ask, check budgets, launch, tell.

Order matters for the promises in docs/OPTUNA.md:

1. Everything the user typed is validated (search space, objectives, constraints, sampler, pruner,
   storage URL, and job configs composed at every choice and range end) *before* the storage is
   created, so bad input costs a one-line :class:`~dse.errors.ConfigError` and writes nothing.
2. Trials are claimed with ask-then-check: a worker asks a trial (the storage hands out unique,
   increasing numbers), then counts the budget-using trials numbered below it; if those already
   fill ``n_trials`` the new trial is discarded. Numbers order the claims of every worker, so
   however many workers race, at most ``n_trials`` trials ever use the budget.
3. A point whose size/params/MACs break a budget is rejected from its model spec, without
   training, as a FAIL trial with user attr ``rejected``: failed trials never enter Optuna's
   Pareto front or best trial, and rejected ones do not use the budget.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from dse.errors import ConfigError
from dse.signals import SignalGate, stop_signals
from dse.validate import check_study_name, validate
from hydra_plugins.dse_optuna_sweeper._optuna import (
    StorageSpec,
    check_sampler,
    make_pruner,
    make_sampler,
    open_storage,
    parse_storage,
    pruner_spec,
)
from hydra_plugins.dse_optuna_sweeper._space import SearchSpace, build_search_space, quote
from hydra_plugins.dse_optuna_sweeper.config import DEFAULT_OBJECTIVES

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna
    from hydra.core.utils import JobReturn
    from hydra.plugins.launcher import Launcher
    from hydra.types import HydraContext

log = logging.getLogger(__name__)

# What dse-train's task returns (dse.train.run.summarize): the names objectives may use.
KNOWN_METRICS = ("val_top1", "val_top5", "val_loss", "test_top1", "test_top5", "test_loss",
                 "size_mib", "size_mb", "size_bytes", "params", "macs", "epochs",
                 "train_seconds", "images_per_s")
# Known from the model spec alone (dse.model.analyze), so budgets on them are checked pre-training.
ANALYTIC_METRICS = ("params", "macs", "size_bytes", "size_mib", "size_mb")
DIRECTIONS = ("maximize", "minimize")
FAILED_STATUSES = ("failed", "diverged")
ENV_PREFIX = "DSE_OPTUNA_"
_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: str  # maximize | minimize


@dataclass(frozen=True)
class Constraint:
    """``metric <= bound`` or ``metric >= bound``; Optuna calls a trial feasible when value <= 0."""

    metric: str
    op: str
    bound: float

    @property
    def key(self) -> str:
        return f"{self.metric}{self.op}{self.bound:g}"

    def violation(self, value: float) -> float:
        """Relative excess over the bound (scale-free, so MACs and MiB can be summed)."""
        excess = value - self.bound if self.op == "<=" else self.bound - value
        return excess / abs(self.bound) if self.bound else excess


@dataclass
class Settings:
    """The sweeper's configuration after validation."""

    study_name: str
    storage: StorageSpec
    n_trials: int
    n_jobs: int
    objectives: list[Objective]
    constraints: list[Constraint]
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    max_failure_rate: float
    max_rejections: int
    heartbeat_interval: int | None
    grace_period: int | None
    results_file: str
    space: SearchSpace

    @property
    def metric_names(self) -> list[str]:
        return [o.metric for o in self.objectives]

    @property
    def pre_constraints(self) -> list[Constraint]:
        return [c for c in self.constraints if c.metric in ANALYTIC_METRICS]


# ----------------------------------------------------------------------------- validation
def _plain(value: Any) -> Any:
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _int(raw: Mapping[str, Any], key: str, lo: int, default: Any = None,
         optional: bool = False) -> int | None:
    value = raw.get(key, default)
    if value is None and optional:
        return None
    try:
        ok = not isinstance(value, bool) and float(value).is_integer() and int(value) >= lo
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(f"hydra.sweeper.{key}", f"must be an integer >= {lo} (got {value!r})")
    return int(value)


def parse_objectives(raw: Any) -> list[Objective]:
    """``[[metric, direction], ...]`` (a single flat pair is accepted too)."""
    field = "hydra.sweeper.objectives"
    raw = _plain(raw)
    if (isinstance(raw, list) and len(raw) == 2 and all(isinstance(x, str) for x in raw)
            and raw[1].lower() in DIRECTIONS):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(field, "must be a non-empty list of [metric, maximize|minimize] pairs")
    out: list[Objective] = []
    for item in raw:
        if isinstance(item, str) and ":" in item:
            item = item.split(":", 1)
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ConfigError(field, f"{item!r} is not a [metric, direction] pair")
        metric, direction = str(item[0]).strip(), str(item[1]).strip().lower()
        if direction not in DIRECTIONS:
            raise ConfigError(field, f"direction of {metric!r} must be maximize or minimize "
                                     f"(got {item[1]!r})")
        if metric not in KNOWN_METRICS:
            raise ConfigError(field, f"the job returns no metric {metric!r}; known metrics: "
                                     f"{', '.join(KNOWN_METRICS)}")
        if any(o.metric == metric for o in out):
            raise ConfigError(field, f"metric {metric!r} is listed twice")
        out.append(Objective(metric, direction))
    return out


def parse_constraints(raw: Any) -> list[Constraint]:
    """``["size_mib <= 5", "macs <= 2e7"]``: metric, ``<=`` or ``>=``, a number."""
    field = "hydra.sweeper.constraints"
    raw = _plain(raw) or []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError(field, "must be a list like ['size_mib <= 5', 'macs <= 2e7']")
    out: list[Constraint] = []
    for item in raw:
        m = _CONSTRAINT_RE.match(str(item))
        if not m:
            raise ConfigError(field, f"{item!r} is not 'metric <= number' or 'metric >= number'")
        metric, op, num = m.groups()
        if metric not in KNOWN_METRICS:
            raise ConfigError(field, f"unknown metric {metric!r} in {item!r}; known metrics: "
                                     f"{', '.join(KNOWN_METRICS)}")
        try:
            bound = float(num)
        except ValueError:
            bound = math.nan
        if not math.isfinite(bound):
            raise ConfigError(field, f"the bound in {item!r} must be a finite number")
        out.append(Constraint(metric, op, bound))
    return out


def validate_settings(raw: Mapping[str, Any], arguments: Sequence[str]) -> Settings:
    """Check every setting of the sweeper; raises ConfigError naming the first bad key."""
    study_name = raw.get("study_name")
    if study_name is None or not str(study_name).strip():
        raise ConfigError("hydra.sweeper.study_name", "is required")
    check_study_name(study_name, "hydra.sweeper.study_name")  # the same rule as study.name
    objectives = parse_objectives(raw.get("objectives", DEFAULT_OBJECTIVES))
    constraints = parse_constraints(raw.get("constraints"))
    sampler = dict(_plain(raw.get("sampler")) or {})
    sampler["name"] = check_sampler(sampler.get("name", "tpe"), sampler.get("qmc_type", "sobol"))
    seed = sampler.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError("hydra.sweeper.sampler.seed", f"must be an integer >= 0 or null "
                                                        f"(got {seed!r})")
    for key, lo in (("n_startup_trials", 0), ("population_size", 2)):
        _int(sampler, key, lo, {"n_startup_trials": 10, "population_size": 50}[key])
    pruner = pruner_spec(_plain(raw.get("pruner")) or {})
    rate = raw.get("max_failure_rate", 0.5)
    try:
        rate = float(rate)
    except (TypeError, ValueError):
        rate = math.nan
    if not 0.0 <= rate <= 1.0:
        raise ConfigError("hydra.sweeper.max_failure_rate", f"must be in [0, 1] (got "
                                                            f"{raw.get('max_failure_rate')!r})")
    heartbeat = _int(raw, "heartbeat_interval", 1, 60, optional=True)
    grace = _int(raw, "grace_period", 1, None, optional=True)
    if heartbeat is not None and grace is not None and grace < heartbeat:
        raise ConfigError("hydra.sweeper.grace_period", f"must be >= heartbeat_interval "
                                                        f"({heartbeat}), got {grace}")
    results_file = str(raw.get("results_file") or "optimization_results.yaml")
    if Path(results_file).name != results_file:
        raise ConfigError("hydra.sweeper.results_file", "must be a file name (it is written "
                                                        "in hydra.sweep.dir)")
    space = build_search_space(_plain(raw.get("params")), arguments)
    if not space.params:
        raise ConfigError("hydra.sweeper.params", "searches nothing: give at least one "
                                                  "choice(), range() or interval()")
    return Settings(
        study_name=str(study_name), storage=parse_storage(raw.get("storage")),
        n_trials=_int(raw, "n_trials", 1, 20) or 1, n_jobs=_int(raw, "n_jobs", 1, 1) or 1,
        objectives=objectives, constraints=constraints, sampler=sampler, pruner=pruner,
        max_failure_rate=rate, max_rejections=_int(raw, "max_rejections", 1, 1000) or 1,
        heartbeat_interval=heartbeat, grace_period=grace, results_file=results_file, space=space,
    )


def effective_pruner(settings: Settings) -> dict[str, Any]:
    """The pruner jobs should use: none for several objectives or without a per-epoch metric."""
    spec = dict(settings.pruner)
    if spec["name"] == "none":
        return spec
    if len(settings.objectives) > 1:
        log.info("dse_optuna: pruning is off: Optuna prunes single-objective studies only")
        return {"name": "none", "monitor": None}
    metric = settings.objectives[0].metric
    if not spec.get("monitor"):
        if not metric.startswith("val_"):
            log.warning("dse_optuna: pruning is off: objective %r has no per-epoch validation "
                        "metric; set hydra.sweeper.pruner.monitor", metric)
            return {"name": "none", "monitor": None}
        spec["monitor"] = "val/" + metric[len("val_"):]
    return spec


# ----------------------------------------------------------------------------- helpers
def env_overrides(env: Mapping[str, str]) -> list[str]:
    """Per-job environment through ``hydra.job.env_set`` (honoured by every launcher)."""
    return [f"++hydra.job.env_set.{k}={quote(str(v))}" for k, v in env.items()]


def suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    """``trial.suggest_*`` for a distribution (what ``study.ask(distributions)`` does inside)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def analytic_metrics(job_cfg: Any) -> dict[str, float]:
    """Params, MACs and sizes of the job's network from its spec (pure Python, no torch)."""
    from dse.model import analyze, build_spec

    report = analyze(build_spec(job_cfg.model), int(job_cfg.data.image_size))
    return {"params": report.params, "macs": report.macs, "size_bytes": report.size_bytes_fp32,
            "size_mib": report.size_mib, "size_mb": report.size_mb}


def _invalid(job_cfg: DictConfig) -> ConfigError | None:
    """What dse-train would refuse in this job config (None if it would train it)."""
    try:
        validate(job_cfg)
    except ConfigError as e:
        return e
    return None


def _owns(param: str, field: str) -> bool:
    """Does searching ``param`` (a key or a config group) set ``field``?"""
    key = param.split("@", 1)[0]
    return field == key or field.startswith(f"{key}.")


def _counts(trial: optuna.trial.FrozenTrial) -> bool:
    """Does this trial use the n_trials budget?

    Running and finished trials do; failures only when a job really ran (user attr ``error``):
    rejected points, trials discarded in a race and trials failed by the heartbeat (their worker
    died) do not, so a rerun refills the budget.
    """
    from optuna.trial import TrialState

    if trial.state in (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED):
        return True
    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def _is_failure(trial: optuna.trial.FrozenTrial) -> bool:
    from optuna.trial import TrialState

    return trial.state == TrialState.FAIL and "error" in trial.user_attrs


def _one_line(text: Any) -> str:
    lines = [ln.strip() for ln in str(text).strip().splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _jsonable(value: Any) -> Any:
    value = _plain(value)
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return str(value)


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's notes that do not apply to ask-and-tell with heartbeats."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed.*")
        yield


class _Heartbeat:
    """Records heartbeats of the trials being trained, so a killed worker's trials go stale.

    ``Study.optimize`` runs such a thread itself; ask-and-tell has to, through the storage's public
    ``record_heartbeat``.
    """

    def __init__(self, storage: Any, interval: int | None) -> None:
        self.storage = storage
        self.interval = interval if hasattr(storage, "record_heartbeat") else None
        self.trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, trial_id: int) -> None:
        if self.interval:
            self.storage.record_heartbeat(trial_id)

    def __enter__(self) -> _Heartbeat:
        if self.interval:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="dse-optuna-heartbeat",
                                            daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            # a beat blocked on a locked database must not hold up a stop: the thread is a daemon
            self._thread.join(timeout=5.0)
            self._thread = None

    def _run(self) -> None:
        assert self.interval
        while not self._stop.wait(self.interval):
            for tid in list(self.trial_ids):
                try:
                    self.storage.record_heartbeat(tid)
                except Exception as e:  # a missed beat must not kill the sweep
                    log.warning("dse_optuna: heartbeat failed: %s", _one_line(e))


# ----------------------------------------------------------------------------- the sweep
class StudyRunner:
    """One worker's share of a study, driven by Hydra's launcher."""

    def __init__(self, settings: Settings, hydra_context: HydraContext, config: DictConfig,
                 launcher: Launcher) -> None:
        self.s = settings
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = launcher
        self.pruner = effective_pruner(settings)
        self.job_idx = 0
        self.rejections_in_a_row = 0
        self.returns: list[Sequence[JobReturn]] = []
        self.study: optuna.Study | None = None
        self.storage: Any = None
        self.study_id: int | None = None
        self.gate = SignalGate()

    # -- configuration -------------------------------------------------------
    def job_config(self, overrides: list[str]) -> DictConfig:
        return self.hydra_context.config_loader.load_sweep_config(self.config, overrides)

    def probe(self) -> None:
        """Compose and validate job configs that use every choice and both ends of every range
        once, so typos in keys, group options or value types, and values dse-train refuses
        (:func:`dse.validate.validate`), fail before the storage exists, not trial by trial.

        Choices are combined across parameters (composition costs ~0.4 s here), so this takes
        max(2, most choices of one parameter) compositions, plus a few where a point is invalid.
        """
        from optuna.distributions import CategoricalDistribution

        params = self.s.space.params.items()
        n = max([2, *(len(p.distribution.choices) for _, p in params
                      if isinstance(p.distribution, CategoricalDistribution))])
        points = []
        for k in range(n):
            point = {}
            for name, p in params:
                d = p.distribution
                point[name] = (d.choices[k % len(d.choices)]
                               if isinstance(d, CategoricalDistribution)
                               else (d.low if k % 2 == 0 else d.high))
            points.append(point)
        cfg = None
        for point in points:
            overrides = self.s.space.overrides(point)
            try:
                job_cfg = self.job_config(overrides)
            except Exception as e:
                raise ConfigError("hydra.sweeper.params", f"cannot compose a job config with "
                                                          f"{' '.join(overrides)}: {_one_line(e)}"
                                  ) from None
            self._refuse_invalid(point, job_cfg)
            cfg = cfg if cfg is not None else job_cfg
        assert cfg is not None
        if self.s.pre_constraints:
            try:
                cfg.model  # noqa: B018 - existence check
                cfg.data.image_size  # noqa: B018
            except Exception:
                raise ConfigError("hydra.sweeper.constraints",
                                  "budgets on params/macs/size need model.* and "
                                  "data.image_size in the job config") from None

    def _refuse_invalid(self, point: Mapping[str, Any], job_cfg: DictConfig) -> None:
        """Raise if this probe point is invalid because of one searched value or the fixed input.

        A point can also be invalid only as a combination (more pools than a small ``n_fire`` has
        layers): other points are fine, so that is left to the trials. To tell them apart, the
        offending field is checked again with the fixed overrides plus one searched value at a
        time (the parameters owning the field first) and with the fixed overrides alone.
        """
        error = _invalid(job_cfg)
        if error is None:
            return
        params = self.s.space.params
        owners = [n for n in params if _owns(n, error.field)]
        for name in [*owners, None, *(n for n in params if n not in owners)]:
            one = [] if name is None else [params[name].override(point[name])]
            try:
                alone = _invalid(self.job_config([*self.s.space.fixed, *one]))
            except Exception:  # the value composes only together with other searched values
                continue
            if alone is None or alone.field != error.field:
                continue
            if name is None:
                raise alone
            detail = alone.message if alone.field == name else str(alone)
            raise ConfigError(name, f"search space value {point[name]!r}: {detail}")

    # -- storage -------------------------------------------------------------
    def open(self) -> optuna.Study:
        """Create or load the study; a storage that cannot be opened leaves no files behind."""
        import optuna

        spec = self.s.storage
        made: list[Path] = []
        if spec.path is not None:
            parent = spec.path.parent
            for p in [parent, *parent.parents]:
                if p.exists():
                    break
                made.append(p)
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError("hydra.sweeper.storage", f"cannot create {parent}: "
                                                           f"{e.strerror or e}") from None
        try:
            study = self._create_study()
        except Exception as e:
            # Remove the folders we made, if still empty; never a database file, which may be
            # another worker's that is being created at this very moment.
            for p in made:  # deepest first
                with suppress(OSError):
                    p.rmdir()
            raise ConfigError("hydra.sweeper.storage", f"cannot open {spec.display}: "
                                                       f"{_one_line(e)}") from None
        wanted = [optuna.study.StudyDirection.MAXIMIZE if o.direction == "maximize"
                  else optuna.study.StudyDirection.MINIMIZE for o in self.s.objectives]
        if list(study.directions) != wanted:
            have = [d.name.lower() for d in study.directions]
            raise ConfigError("hydra.sweeper.objectives",
                              f"study {self.s.study_name!r} in {spec.display} has directions "
                              f"{have}, not {[o.direction for o in self.s.objectives]}; "
                              "use another study name")
        names = study.metric_names
        if names is not None and list(names) != self.s.metric_names:
            raise ConfigError("hydra.sweeper.objectives",
                              f"study {self.s.study_name!r} in {spec.display} optimizes "
                              f"{list(names)}, not {self.s.metric_names}; use another study name")
        if names is None:
            with _quiet_optuna():
                study.set_metric_names(self.s.metric_names)
        with _quiet_optuna():
            self.study = optuna.load_study(study_name=self.s.study_name, storage=self.storage,
                                           sampler=self.sampler_for(None),
                                           pruner=make_pruner(self.pruner))
        self.study_id = self.storage.get_study_id_from_name(self.s.study_name)
        return self.study

    def _create_study(self) -> optuna.Study:
        """create_study, retried while another worker is creating the same tables."""
        import optuna
        from optuna.exceptions import StorageInternalError
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        for attempt in range(8):
            try:
                with _quiet_optuna():
                    self.storage = open_storage(self.s.storage,
                                                heartbeat_interval=self.s.heartbeat_interval,
                                                grace_period=self.s.grace_period)
                    return optuna.create_study(
                        study_name=self.s.study_name, storage=self.storage, load_if_exists=True,
                        directions=[o.direction for o in self.s.objectives],
                        sampler=optuna.samplers.RandomSampler(),
                        pruner=optuna.pruners.NopPruner())
            except (SQLAlchemyError, StorageInternalError) as e:
                # a worker starting at the same moment is creating the tables (SQLite: "table
                # ... already exists", "locked"; PostgreSQL: duplicate type or key)
                text = f"{e} {e.__cause__ or ''}".lower()
                racing = isinstance(e, (IntegrityError, StorageInternalError)) or any(
                    s in text for s in ("already exists", "duplicate", "locked", "busy"))
                if not racing or attempt == 7:
                    raise
                time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
        raise AssertionError("unreachable")

    def sampler_for(self, number: int | None) -> optuna.samplers.BaseSampler:
        """The sampler that draws trial ``number``'s point, seeded with ``seed + number``.

        Seeding per trial number (Optuna's samplers keep their history in the storage, not in
        the object) makes a study reproducible however it is resumed, and keeps concurrent
        workers from drawing the same random points. QMC keeps one seed: its points come from
        one scrambled sequence, indexed through the storage.
        """
        conf = self.s.sampler
        seed = conf.get("seed")
        if seed is not None and number is not None and conf["name"] != "qmc":
            seed = int(seed) + number
        return make_sampler(conf["name"], seed,
                            n_startup_trials=int(conf.get("n_startup_trials", 10)),
                            population_size=int(conf.get("population_size", 50)),
                            qmc_type=str(conf.get("qmc_type", "sobol")))

    def fail_stale(self) -> None:
        import optuna

        assert self.study is not None
        with _quiet_optuna():
            optuna.storages.fail_stale_trials(self.study)

    def used(self, below: int | None = None) -> int:
        """Trials using the budget (those numbered below ``below`` when given)."""
        assert self.study is not None
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if _counts(t) and (below is None or t.number < below))

    def failures(self) -> int:
        assert self.study is not None
        return sum(1 for t in self.study.get_trials(deepcopy=False) if _is_failure(t))

    # -- one trial -----------------------------------------------------------
    def trial_id(self, trial: optuna.Trial) -> int:
        assert self.study_id is not None
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def prepare(self, trial: optuna.Trial) -> tuple[list[str], dict[str, float]] | None:
        """Overrides of an asked trial, or None when it was rejected (told FAIL) pre-training."""
        from optuna.trial import TrialState

        assert self.study is not None
        point = self.s.space.overrides(trial.params)
        analytic: dict[str, float] = {}
        reason = None
        if self.s.pre_constraints:
            try:
                analytic = analytic_metrics(self.job_config(point))
            except Exception as e:  # an invalid design point (e.g. the net shrinks to 0x0)
                reason = _one_line(e)
            if reason is None:
                broken = []
                for c in self.s.pre_constraints:
                    v = c.violation(float(analytic[c.metric]))
                    trial.set_constraint(c.key, v)
                    if v > 0:
                        broken.append(f"{c.metric}={analytic[c.metric]:g} breaks "
                                      f"{c.metric} {c.op} {c.bound:g}")
                reason = "; ".join(broken) or None
        if reason is not None:
            if analytic:
                trial.set_user_attr("analytic", analytic)
            trial.set_user_attr("rejected", reason)
            self.study.tell(trial, state=TrialState.FAIL)
            self.rejections_in_a_row += 1
            log.info("dse_optuna: trial %d rejected without training: %s", trial.number, reason)
            if self.rejections_in_a_row >= self.s.max_rejections:
                raise ConfigError("hydra.sweeper.constraints",
                                  f"{self.rejections_in_a_row} sampled points in a row were "
                                  "rejected; loosen the constraints or the search space")
            return None
        self.rejections_in_a_row = 0
        tid = self.trial_id(trial)
        env = {
            f"{ENV_PREFIX}STORAGE": self.s.storage.url,
            f"{ENV_PREFIX}STUDY": self.s.study_name,
            f"{ENV_PREFIX}TRIAL_ID": str(tid),
            f"{ENV_PREFIX}TRIAL_NUMBER": str(trial.number),
            f"{ENV_PREFIX}PRUNER": json.dumps(self.pruner, separators=(",", ":")),
        }
        return [*point, *env_overrides(env), f"hydra.sweep.subdir={trial.number}"], analytic

    def finish(self, trial: optuna.Trial, ret: JobReturn, analytic: Mapping[str, float]
               ) -> str | None:
        """Tell the job's outcome; returns an error message when the sweep must stop."""
        import optuna
        from optuna.trial import TrialState

        assert self.study is not None
        fatal = None
        try:
            out_dir = ret.hydra_cfg.hydra.runtime.output_dir if ret.hydra_cfg else None
        except Exception:
            out_dir = None
        if out_dir:
            trial.set_user_attr("output_dir", str(out_dir))
        try:
            result = ret.return_value
        except optuna.TrialPruned as e:
            self.study.tell(trial, state=TrialState.PRUNED)
            log.info("dse_optuna: trial %d pruned: %s", trial.number, _one_line(e) or "pruned")
            return None
        except Exception as e:  # the job raised: a failed trial, the study goes on
            error = f"{type(e).__name__}: {_one_line(e)}".rstrip(": ")
            trial.set_user_attr("error", error)
            self.study.tell(trial, state=TrialState.FAIL)
            log.warning("dse_optuna: trial %d failed: %s", trial.number, error, exc_info=e)
            return None
        result = _plain(result)
        if isinstance(result, (int, float)) and not isinstance(result, bool):
            result = {self.s.objectives[0].metric: result} if len(self.s.objectives) == 1 else {}
        if not isinstance(result, Mapping):
            return self._fail(trial, f"the job returned {type(result).__name__}, not a dict")
        status = str(result.get("status") or "ok").lower()
        # one attribute, not one per metric: every attribute is a database commit
        trial.set_user_attr("result", _jsonable({k: v for k, v in result.items()
                                                 if k != "error" and v is not None}))
        if status == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            log.info("dse_optuna: trial %d pruned", trial.number)
            return None
        if status in FAILED_STATUSES:
            return self._fail(trial, str(result.get("error") or status), status)
        if status != "ok":
            return self._fail(trial, f"the job returned unknown status {status!r}")
        values: list[float] = []
        for o in self.s.objectives:
            if o.metric not in result:
                fatal = (f"the job returned no metric {o.metric!r} (it returned "
                         f"{', '.join(sorted(map(str, result)))})")
                self._fail(trial, fatal)
                return fatal
            v = _as_finite(result[o.metric])
            if not math.isfinite(v):
                return self._fail(trial, f"objective {o.metric} is {result[o.metric]!r}")
            values.append(v)
        violations: dict[str, float] = {}
        for c in self.s.constraints:
            raw = result.get(c.metric, analytic.get(c.metric))
            if raw is None:
                fatal = f"the job returned no metric {c.metric!r} for constraint {c.key!r}"
                self._fail(trial, fatal)
                return fatal
            value = _as_finite(raw)
            if not math.isfinite(value):
                return self._fail(trial, f"constraint metric {c.metric} is {raw!r}")
            violations[c.key] = c.violation(value)
            if not (c in self.s.pre_constraints and c.metric in analytic):  # set pre-training
                trial.set_constraint(c.key, violations[c.key])
        if violations:
            trial.set_user_attr("constraints", violations)
        self.study.tell(trial, values)
        shown = zip(self.s.metric_names, values, strict=True)
        log.info("dse_optuna: trial %d: %s", trial.number,
                 " ".join(f"{m}={v:.6g}" for m, v in shown))
        return None

    def _fail(self, trial: optuna.Trial, error: str, status: str = "failed") -> None:
        from optuna.trial import TrialState

        assert self.study is not None
        trial.set_user_attr("error", error)
        self.study.tell(trial, state=TrialState.FAIL)
        log.warning("dse_optuna: trial %d %s: %s", trial.number, status, error)

    def interrupt(self, trial: optuna.Trial, why: str) -> None:
        from optuna.trial import TrialState

        assert self.study is not None
        trial.set_user_attr("interrupted", why)
        self.study.tell(trial, state=TrialState.FAIL)

    def discard(self, trial: optuna.Trial) -> None:
        from optuna.trial import TrialState

        assert self.study is not None
        trial.set_user_attr("discarded", "n_trials already claimed by other workers")
        self.study.tell(trial, state=TrialState.FAIL)

    # -- the loop ------------------------------------------------------------
    def run(self) -> None:
        assert self.study is not None
        s = self.s
        self.fail_stale()
        log.info("dse_optuna: study %r in %s: %d of %d trials done or running; sampler %s, "
                 "objectives %s", s.study_name, s.storage.display, self.used(), s.n_trials,
                 s.sampler["name"], ", ".join(f"{o.direction} {o.metric}" for o in s.objectives))
        heartbeat = _Heartbeat(self.storage, s.heartbeat_interval)
        full = False
        while not full:
            self.fail_stale()
            room = s.n_trials - self.used()
            if room <= 0:
                break
            pending: list[optuna.Trial] = []  # asked here and not told yet
            try:
                full = self._run_batch(min(s.n_jobs, room), heartbeat, pending)
            except BaseException as e:
                # ^C, SIGTERM, a crashed launcher: tell what was left running, so it neither holds
                # the budget nor waits out the heartbeat's grace period; a rerun refills it
                why = f"{type(e).__name__}: {_one_line(e)}".rstrip(": ")
                for trial in pending:
                    with suppress(Exception):  # already told (a rejection that raised)
                        self.interrupt(trial, why)
                raise
            failures = self.failures()
            if failures > s.max_failure_rate * s.n_trials:
                self.report()
                raise SystemExit(
                    f"dse_optuna: stopping study {s.study_name!r}: {failures} failed trials "
                    f"exceed max_failure_rate={s.max_failure_rate:g} of n_trials={s.n_trials}")

    def _run_batch(self, size: int, heartbeat: _Heartbeat, pending: list[optuna.Trial]) -> bool:
        """Ask up to ``size`` trainable trials, launch them, tell them; True once n_trials is
        claimed by this and other workers."""
        assert self.study is not None
        s = self.s
        full = False
        batch: list[tuple[optuna.Trial, list[str], dict[str, float]]] = []
        while len(batch) < size:
            with _quiet_optuna():
                trial = self.study.ask()  # claims the next number, samples nothing yet
            pending.append(trial)
            heartbeat.beat(self.trial_id(trial))  # from now on a dead worker's trial goes stale
            self.gate.deliver()  # a stop held during ask acts now that the trial can be told
            if self.used(below=trial.number) >= s.n_trials:  # another worker got there first
                self.discard(trial)
                pending.remove(trial)
                full = True
                break
            self.study.sampler = self.sampler_for(trial.number)
            with _quiet_optuna():
                for name, dist in s.space.distributions.items():
                    suggest(trial, name, dist)
            prepared = self.prepare(trial)
            if prepared is None:  # rejected and told
                pending.remove(trial)
            else:
                batch.append((trial, *prepared))
        if not batch:
            return full
        heartbeat.trial_ids.update(self.trial_id(t) for t, _, _ in batch)
        log.info("dse_optuna: launching trial(s) %s",
                 ", ".join(str(t.number) for t, _, _ in batch))
        try:
            with heartbeat, self.gate.open():
                rets = self.launcher.launch([ov for _, ov, _ in batch],
                                            initial_job_idx=self.job_idx)
        finally:
            heartbeat.trial_ids.clear()
        self.job_idx += len(batch)
        self.returns.append(rets)
        errors = []
        for (trial, _, analytic), ret in zip(batch, rets, strict=True):
            errors.append(self.finish(trial, ret, analytic))
            pending.remove(trial)
        fatal = [e for e in errors if e]
        if fatal:
            raise ConfigError("hydra.sweeper.objectives", fatal[0])
        return full

    # -- results -------------------------------------------------------------
    def best(self) -> list[optuna.trial.FrozenTrial]:
        """Feasible, non-dominated COMPLETE trials (the best one for a single objective)."""
        from optuna.trial import TrialState

        assert self.study is not None
        signs = [1.0 if o.direction == "minimize" else -1.0 for o in self.s.objectives]
        done = [t for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.values is not None and all(v <= 0 for v in t.constraints.values())]
        keyed = [(t, [sg * v for sg, v in zip(signs, t.values, strict=True)]) for t in done]

        def dominates(b: list[float], a: list[float]) -> bool:
            pairs = list(zip(b, a, strict=True))
            return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)

        front = [(t, a) for t, a in keyed if not any(dominates(b, a) for _, b in keyed)]
        front.sort(key=lambda ta: (ta[1], ta[0].number))
        return [t for t, _ in front][:1] if len(self.s.objectives) == 1 else [t for t, _ in front]

    def report(self) -> Path:
        """Write ``optimization_results.yaml`` in the sweep dir and print the best trials."""
        import yaml
        from optuna.trial import TrialState

        assert self.study is not None
        trials = self.study.get_trials(deepcopy=False)
        states = {
            "complete": sum(t.state == TrialState.COMPLETE for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials),
            "failed": sum(_is_failure(t) for t in trials),
            "rejected": sum("rejected" in t.user_attrs for t in trials),
            "discarded": sum("discarded" in t.user_attrs for t in trials),
            "interrupted": sum("interrupted" in t.user_attrs for t in trials),
            "stale": sum(t.state == TrialState.FAIL and not {"error", "rejected", "discarded",
                                                             "interrupted"} & set(t.user_attrs)
                         for t in trials),
            "running": sum(t.state == TrialState.RUNNING for t in trials),
        }
        best = self.best()

        def entry(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
            return {"number": t.number, "params": dict(t.params),
                    "values": dict(zip(self.s.metric_names, t.values, strict=True)),
                    **({"output_dir": t.user_attrs["output_dir"]}
                       if "output_dir" in t.user_attrs else {})}

        doc: dict[str, Any] = {
            "study_name": self.s.study_name,
            "storage": self.s.storage.display,
            "objectives": [{"metric": o.metric, "direction": o.direction}
                           for o in self.s.objectives],
            "constraints": [f"{c.metric} {c.op} {c.bound:g}" for c in self.s.constraints],
            "n_trials": self.s.n_trials,
            "trials": states,
        }
        if len(self.s.objectives) == 1:
            doc["best_params"] = dict(best[0].params) if best else None
            doc["best_value"] = best[0].values[0] if best else None
            doc["best"] = entry(best[0]) if best else None
        else:
            doc["pareto"] = [entry(t) for t in best]
        out_dir = Path(str(self.config.hydra.sweep.dir))
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / self.s.results_file
        path.write_text(yaml.safe_dump(_jsonable(doc), sort_keys=False))
        print(format_table(self.s.metric_names, best, states,
                           "best trial" if len(self.s.objectives) == 1 else "Pareto set"))
        log.info("dse_optuna: results in %s", path)
        return path


def format_table(metrics: list[str], trials: Sequence[optuna.trial.FrozenTrial],
                 states: Mapping[str, int], title: str) -> str:
    """A plain-text table of the best trials: number, objective values, parameters."""
    names = sorted({k for t in trials for k in t.params})
    header = ["trial", *metrics, *names]
    rows = [[str(t.number), *(f"{v:.6g}" for v in t.values),
             *(_fmt(t.params.get(k)) for k in names)] for t in trials]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    counts = ", ".join(f"{v} {k}" for k, v in states.items() if v)
    lines = [f"{title} ({len(trials)}; trials: {counts or 'none'})",
             "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def run_sweep(raw_settings: Mapping[str, Any], arguments: Sequence[str],
              hydra_context: HydraContext, config: DictConfig, launcher: Launcher
              ) -> list[Sequence[JobReturn]]:
    """Entry point of :meth:`DseOptunaSweeper.sweep`."""
    settings = validate_settings(raw_settings, arguments)
    runner = StudyRunner(settings, hydra_context, config, launcher)
    runner.probe()
    runner.open()
    # kill/scancel (SIGTERM) tells the running trials, as Ctrl-C does; both wait for storage
    # calls to finish and act at once while jobs run
    with stop_signals(), runner.gate.held():
        runner.run()
    runner.report()
    return runner.returns


def _as_finite(x: object) -> float:
    """``float(x)``, or NaN when the job returned something that is not a number."""
    try:
        return float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan
