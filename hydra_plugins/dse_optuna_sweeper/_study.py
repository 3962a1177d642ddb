"""The study in its storage, shared by several workers: created while another worker may be
creating the same tables, the budget counted over every worker's trials, heartbeats, and at the end
its results: the Pareto set (Optuna's ``study.best_trials``, sorted best first),
``optimization_results.yaml`` and a printed table.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict
from itertools import takewhile
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.distributions import check_distribution_compatibility
from optuna.exceptions import StorageInternalError
from optuna.trial import FrozenTrial
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dse.errors import ConfigError, first_line
from dse.sweep import trials
from dse.sweep.pruners import make_pruner, sampler_for
from dse.sweep.storage import StorageSpec, open_storage
from dse.text import table
from hydra_plugins.dse_optuna_sweeper._outcome import jsonable
from hydra_plugins.dse_optuna_sweeper._settings import Settings

log = logging.getLogger(__name__)
_CREATE_ATTEMPTS = 8


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's notes that do not apply to ask-and-tell with heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed.*")
        yield


class OpenStudy:
    """This worker's handle on the shared study (created if new, checked against the settings)."""

    def __init__(self, settings: Settings, pruner: dict[str, Any]) -> None:
        self.s = settings
        made = _make_parent(settings.storage)
        try:
            self.storage, self.study = self._create(pruner)
        except Exception as e:
            # Remove the folders we made, if still empty; never a database file, which may be
            # another worker's that is being created at this very moment.
            for p in made:  # deepest first
                with suppress(OSError):
                    p.rmdir()
            raise ConfigError("hydra.sweeper.storage", f"cannot open {settings.storage.display}: "
                                                       f"{first_line(e)}") from None
        self._check(self.study)
        self.study_id = self.storage.get_study_id_from_name(settings.study_name)
        self.distributions = self._resumed_space()

    def _resumed_space(self) -> dict[str, Any]:
        """The settings' distributions, except where the study sampled a parameter from another kind
        (a ``choice`` a later dse made an ``int``): Optuna refuses two kinds in one study, so a
        resumed study keeps its own, and says so."""
        stored = {name: dist for t in reversed(self.study.get_trials(deepcopy=False))
                  for name, dist in t.distributions.items()}  # the first trial's wins
        space = dict(self.s.space.distributions)
        for name, dist in space.items():
            try:
                check_distribution_compatibility(stored.get(name, dist), dist)
            except ValueError:
                log.warning("dse_optuna: %s: study %r sampled it from %s, so resuming keeps that "
                            "(this config's %s needs a new study.name)", name,
                            self.s.study_name, stored[name], dist)
                space[name] = stored[name]
        return space

    def _create(self, pruner: dict[str, Any]) -> tuple[Any, optuna.Study]:
        """create_study, retried while another worker is creating the same tables."""
        s = self.s
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                with quiet_optuna():
                    storage = open_storage(s.storage, heartbeat_interval=s.heartbeat_interval,
                                           grace_period=s.grace_period)
                    return storage, optuna.create_study(
                        study_name=s.study_name, storage=storage, load_if_exists=True,
                        directions=[o.direction for o in s.objectives],
                        sampler=sampler_for(s.sampler, None), pruner=make_pruner(pruner))
            except (SQLAlchemyError, StorageInternalError) as e:
                # a worker starting at the same moment is creating the tables (SQLite: "table
                # ... already exists", "locked"; PostgreSQL: duplicate type or key)
                text = f"{e} {e.__cause__ or ''}".lower()
                racing = isinstance(e, (IntegrityError, StorageInternalError)) or any(
                    s in text for s in ("already exists", "duplicate", "locked", "busy"))
                if not racing or attempt == _CREATE_ATTEMPTS - 1:
                    raise
                time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
        raise AssertionError("unreachable")

    def _check(self, study: optuna.Study) -> None:
        """Refuse a study whose directions or metric names differ from the settings'; record the
        budgets it is run under (this worker's, :data:`dse.sweep.trials.STUDY_CONSTRAINTS`)."""
        s, names = self.s, study.metric_names
        for verb, have, want in (("has directions", [d.name.lower() for d in study.directions],
                                  [o.direction for o in s.objectives]),
                                 ("optimizes", names and list(names), s.metric_names)):
            if have is not None and have != want:
                raise ConfigError("hydra.sweeper.objectives", f"study {s.study_name!r} in "
                                  f"{s.storage.display} {verb} {have}, not {want}; use another study name")
        if names is None:
            with quiet_optuna():
                study.set_metric_names(s.metric_names)
        study.set_user_attr(trials.STUDY_CONSTRAINTS, [asdict(c) for c in s.constraints])

    def trial_id(self, trial: optuna.Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def beat(self, trial_ids: Iterable[int]) -> None:
        """Record a heartbeat for each trial (a journal storage has none): from its first beat on,
        a trial whose worker dies goes stale."""
        for tid in trial_ids if hasattr(self.storage, "record_heartbeat") else ():
            try:
                self.storage.record_heartbeat(tid)
            except Exception as e:  # a missed beat must not kill the sweep
                log.warning("dse_optuna: heartbeat failed: %s", first_line(e))

    @contextmanager
    def beating(self, trial_ids: list[int]) -> Iterator[None]:
        """Beat for the trials while they train, as ``Study.optimize``'s thread does for its own
        (ask-and-tell must run one itself, through the storage's public ``record_heartbeat``)."""
        stop = threading.Event()

        def run() -> None:
            while not stop.wait(self.s.heartbeat_interval):
                self.beat(trial_ids)

        thread = threading.Thread(target=run, name="dse-optuna-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5.0)  # a beat blocked on a locked database must not hold up a stop

    def set_constraints(self, trial: optuna.Trial, violations: list[float]) -> None:
        """A trial's constraint values (feasible when all <= 0), as the list in ``system_attrs``:
        Optuna 5's ``Trial.set_constraint`` writes one key each, which optuna-dashboard 0.21 ignores."""
        self.storage.set_trial_system_attr(self.trial_id(trial), trials.CONSTRAINTS_SYSTEM_ATTR,
                                           [float(v) for v in violations])

    def fail_stale(self) -> None:
        with quiet_optuna():
            optuna.storages.fail_stale_trials(self.study)

    def epochs(self) -> int:
        return epochs_trained(self.study)

    def used(self, below: int | None = None) -> int:
        """Trials using the budget (those numbered below ``below`` when given), every worker's."""
        return sum(1 for t in self.study.get_trials(deepcopy=False)
                   if trials.uses_budget(t) and (below is None or t.number < below))


def _make_parent(spec: StorageSpec) -> list[Path]:
    """Create the folder of a file storage; returns the folders made (deepest first)."""
    if spec.path is None:
        return []
    parent = spec.path.parent
    made = list(takewhile(lambda p: not p.exists(), [parent, *parent.parents]))
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError("hydra.sweeper.storage", f"cannot create {parent}: {e.strerror or e}") from None
    return made


def best(study: optuna.Study, settings: Settings) -> list[FrozenTrial]:
    """Feasible, non-dominated COMPLETE trials, best first (one trial for a single objective)."""
    signs = [1.0 if o.direction == "minimize" else -1.0 for o in settings.objectives]
    front = sorted(study.best_trials, key=lambda t: (
        [s * v for s, v in zip(signs, t.values, strict=True)], t.number))
    return front[:1] if len(settings.objectives) == 1 else front


def epochs_trained(study: optuna.Study) -> int:
    """Epochs the budget-using trials trained, every worker's (:func:`dse.sweep.trials.epochs`): what
    ``total_epochs`` limits."""
    return sum(trials.epochs(t) for t in study.get_trials(deepcopy=False) if trials.uses_budget(t))


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials of each kind (:data:`dse.sweep.trials.KINDS`), every kind listed."""
    seen = Counter(trials.kind(t) for t in study.get_trials(deepcopy=False))
    return {k: seen.get(k, 0) for k in trials.KINDS}


def _entry(t: FrozenTrial, metric_names: list[str]) -> dict[str, Any]:
    out = {"number": t.number, "params": dict(t.params),
           "values": dict(zip(metric_names, t.values, strict=True))}
    if trials.OUTPUT_DIR in t.user_attrs:
        out[trials.OUTPUT_DIR] = t.user_attrs[trials.OUTPUT_DIR]
    return out


def write_results(study: optuna.Study, settings: Settings, sweep_dir: Path) -> Path:
    """Write the results file in the sweep dir and print the best trials; returns the file."""
    front, states = best(study, settings), counts(study)
    names = settings.metric_names
    doc: dict[str, Any] = {
        "study_name": settings.study_name, "storage": settings.storage.display,
        "objectives": [{"metric": o.metric, "direction": o.direction} for o in settings.objectives],
        "constraints": [str(c) for c in settings.constraints],
        "n_trials": settings.n_trials, "trials": states,
        "epochs_trained": epochs_trained(study),
    }
    if len(settings.objectives) == 1:
        doc["best_params"] = dict(front[0].params) if front else None
        doc["best_value"] = front[0].values[0] if front else None
        doc["best"] = _entry(front[0], names) if front else None
    else:
        doc["pareto"] = [_entry(t, names) for t in front]
    broken = infeasible(study, settings)
    if broken:
        doc["infeasible"] = broken
    sweep_dir.mkdir(parents=True, exist_ok=True)
    path = sweep_dir / settings.results_file
    path.write_text(yaml.safe_dump(jsonable(doc), sort_keys=False))
    print(_printed("best trial" if len(settings.objectives) == 1 else "Pareto set", names, front,
                   states, broken))
    log.info("dse_optuna: results in %s", path)
    return path


def infeasible(study: optuna.Study, settings: Settings) -> dict[str, int]:
    """Complete trials that break each constraint (by its text; a trial may break several):
    Optuna keeps them off the Pareto set, so this is where they went."""
    seen: Counter[str] = Counter()
    for t in study.get_trials(deepcopy=False):
        values = t.system_attrs.get(trials.CONSTRAINTS_SYSTEM_ATTR) or []
        if trials.kind(t) == "complete":
            seen.update(str(c) for c, v in zip(settings.constraints, values, strict=False) if v > 0)
    return dict(seen)


def _printed(title: str, metrics: list[str], front: Sequence[FrozenTrial], states: Mapping[str, int],
             broken: Mapping[str, int]) -> str:
    """A plain-text table of the best trials (number, objective values, parameters), or the one line
    that says why there are none."""
    shown = ", ".join(f"{v} {k}" for k, v in states.items() if v) or "none"
    if not front:
        why = ("no trial is feasible (" + ", ".join(f"{n} broke {c}" for c, n in broken.items()) + ")"
               if broken else "no complete trial")
        return f"{title}: empty, {why}; trials: {shown}"
    names = sorted({k for t in front for k in t.params})
    rows = [[str(t.number), *(f"{v:.6g}" for v in t.values),
             *(f"{v:.6g}" if isinstance(v := t.params.get(k), float) else str(v) for k in names)]
            for t in front]
    return f"{title} ({len(front)}; trials: {shown})\n" + table(["trial", *metrics, *names], rows)
