"""The study in its storage, shared by several workers: created while another worker may be
creating the same tables, the budget counted over every worker's trials, and heartbeats."""

from __future__ import annotations

import logging
import random
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict
from itertools import takewhile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dse.errors import ConfigError, first_line
from dse.sweep import trials
from dse.sweep.pruners import make_pruner
from dse.sweep.storage import StorageSpec, open_storage
from hydra_plugins.dse_optuna_sweeper._samplers import sampler_for
from hydra_plugins.dse_optuna_sweeper._settings import Settings

if TYPE_CHECKING:  # pragma: no cover - typing only
    import optuna

log = logging.getLogger(__name__)
_CREATE_ATTEMPTS = 8


@contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's notes that do not apply to ask-and-tell with heartbeats."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message=".*Heartbeat of storage is supposed.*")
        yield


class Heartbeat:
    """Beats for the trials being trained, so a killed worker's trials go stale (``Study.optimize``
    runs such a thread itself; ask-and-tell must, through the storage's public ``record_heartbeat``)."""

    def __init__(self, storage: Any, interval: int | None) -> None:
        self.storage = storage
        self.interval = interval if hasattr(storage, "record_heartbeat") else None
        self.trial_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat(self, trial_id: int) -> None:
        if self.interval:
            self.storage.record_heartbeat(trial_id)

    def __enter__(self) -> Heartbeat:
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
                    log.warning("dse_optuna: heartbeat failed: %s", first_line(e))


class OpenStudy:
    """This worker's handle on the shared study (created if new, checked against the settings)."""

    def __init__(self, settings: Settings, pruner: dict[str, Any]) -> None:
        import optuna

        self.s = settings
        made = _make_parent(settings.storage)
        try:
            self.storage, study = self._create()
        except Exception as e:
            # Remove the folders we made, if still empty; never a database file, which may be
            # another worker's that is being created at this very moment.
            for p in made:  # deepest first
                with suppress(OSError):
                    p.rmdir()
            raise ConfigError("hydra.sweeper.storage", f"cannot open {settings.storage.display}: "
                                                       f"{first_line(e)}") from None
        self._check(study)
        with quiet_optuna():
            self.study = optuna.load_study(study_name=settings.study_name, storage=self.storage,
                                           sampler=sampler_for(settings.sampler, None),
                                           pruner=make_pruner(pruner))
        self.study_id = self.storage.get_study_id_from_name(settings.study_name)
        self.distributions = self._resumed_space()

    def _resumed_space(self) -> dict[str, Any]:
        """The settings' distributions, except where the study sampled a parameter from another kind
        (a ``choice`` a later dse made an ``int``): Optuna refuses two kinds in one study, so a
        resumed study keeps its own, and says so."""
        from optuna.distributions import check_distribution_compatibility

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

    def _create(self) -> tuple[Any, optuna.Study]:
        """create_study, retried while another worker is creating the same tables."""
        import optuna
        from optuna.exceptions import StorageInternalError
        from sqlalchemy.exc import IntegrityError, SQLAlchemyError

        s = self.s
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                with quiet_optuna():
                    storage = open_storage(s.storage, heartbeat_interval=s.heartbeat_interval,
                                           grace_period=s.grace_period)
                    return storage, optuna.create_study(
                        study_name=s.study_name, storage=storage, load_if_exists=True,
                        directions=[o.direction for o in s.objectives],
                        sampler=optuna.samplers.RandomSampler(), pruner=optuna.pruners.NopPruner())
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
        s, where = self.s, self.s.storage.display
        have = [d.name.lower() for d in study.directions]
        if have != [o.direction for o in s.objectives]:
            raise ConfigError("hydra.sweeper.objectives",
                              f"study {s.study_name!r} in {where} has directions {have}, not "
                              f"{[o.direction for o in s.objectives]}; use another study name")
        names = study.metric_names
        if names is not None and list(names) != s.metric_names:
            raise ConfigError("hydra.sweeper.objectives",
                              f"study {s.study_name!r} in {where} optimizes {list(names)}, not "
                              f"{s.metric_names}; use another study name")
        if names is None:
            with quiet_optuna():
                study.set_metric_names(s.metric_names)
        study.set_user_attr(trials.STUDY_CONSTRAINTS, [asdict(c) for c in s.constraints])

    def trial_id(self, trial: optuna.Trial) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, trial.number)

    def set_constraints(self, trial: optuna.Trial, violations: list[float]) -> None:
        """A trial's constraint values (feasible when all <= 0), as the list in ``system_attrs``:
        Optuna 5's ``Trial.set_constraint`` writes one key each, which optuna-dashboard 0.21 ignores."""
        self.storage.set_trial_system_attr(self.trial_id(trial), trials.CONSTRAINTS_SYSTEM_ATTR,
                                           [float(v) for v in violations])

    def fail_stale(self) -> None:
        import optuna

        with quiet_optuna():
            optuna.storages.fail_stale_trials(self.study)

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
        raise ConfigError("hydra.sweeper.storage", f"cannot create {parent}: "
                                                   f"{e.strerror or e}") from None
    return made
