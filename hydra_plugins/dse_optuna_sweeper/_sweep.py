"""The study loop behind ``hydra/sweeper=dse_optuna``: validate, ask, check budgets, launch, tell, in
the order that keeps docs/OPTUNA.md's promises. All input is validated (:mod:`._settings`) before the
storage exists. A worker asks a trial (numbered uniquely by the storage) and discards it if the
budget-using trials numbered below it fill ``n_trials``: however many workers race, at most
``n_trials`` use the budget. A point over a size/params/MACs budget is told FAIL marked ``rejected``
(:mod:`dse.sweep.trials`) without training."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import Any

import optuna
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import TrialState

from dse.errors import ConfigError, first_line
from dse.metrics import analytic_values
from dse.signals import SignalGate, stop_signals
from dse.sweep import trials
from dse.sweep.handoff import Handoff
from dse.sweep.pruners import sampler_for
from dse.text import duration
from dse.validate import model_report
from hydra_plugins.dse_optuna_sweeper._outcome import budget_check, decide
from hydra_plugins.dse_optuna_sweeper._settings import (
    Compose,
    Settings,
    effective_pruner,
    probe,
    validate_settings,
)
from hydra_plugins.dse_optuna_sweeper._space import quote
from hydra_plugins.dse_optuna_sweeper._study import OpenStudy, counts, quiet_optuna, write_results

log = logging.getLogger(__name__)
Prepared = tuple[optuna.Trial, list[str], dict[str, float]]  # trial, job overrides, analytic


def suggest(trial: optuna.Trial, name: str, dist: Any) -> Any:
    """``trial.suggest_*`` for a distribution (what ``study.ask(distributions)`` does inside)."""
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, dist.choices)
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


class StudyRunner:
    """One worker's share of a study, driven by Hydra's launcher."""

    def __init__(self, settings: Settings, db: OpenStudy, pruner: dict[str, Any], job_config: Compose,
                 launcher: Launcher, sweep_dir: Path) -> None:
        self.s, self.db, self.study, self.pruner = settings, db, db.study, pruner
        self.job_config, self.launcher, self.sweep_dir = job_config, launcher, sweep_dir
        self.rejections_in_a_row = 0
        self.returns: list[Sequence[JobReturn]] = []  # per batch: its jobs are this worker's trials
        self.gate = SignalGate()

    @property
    def moasha(self) -> bool:
        """MOASHA ranks each trial's exact analytic objectives: its job needs them before training."""
        return self.pruner["name"] == "moasha"

    # -- one trial -----------------------------------------------------------
    def prepare(self, trial: optuna.Trial) -> Prepared | None:
        """The job of an asked trial, or None when it was rejected (told FAIL) pre-training."""
        point = self.s.space.overrides(trial.params)
        analytic: dict[str, float] = {}
        reason = None
        if self.s.pre_constraints or self.moasha:
            try:
                analytic = analytic_values(model_report(self.job_config(point)))
            except Exception as e:  # an invalid design point (e.g. the net shrinks to 0x0)
                reason = first_line(e)
            else:
                violations, reason = budget_check(analytic, self.s.pre_constraints)
                if reason is not None:
                    self.db.set_constraints(trial, list(violations.values()))
        if reason is not None:
            return self.reject(trial, reason, analytic)
        if self.moasha:
            trial.set_user_attr(trials.ANALYTIC, analytic)
        self.rejections_in_a_row = 0
        handoff = Handoff(self.s.storage.url, self.s.study_name, self.db.trial_id(trial),
                          trial.number, self.pruner)
        return trial, [*point, *handoff.overrides(quote), f"hydra.sweep.subdir={trial.number}"], analytic

    def reject(self, trial: optuna.Trial, reason: str, analytic: dict[str, float]) -> None:
        """Tell a point refused before training; stop once ``max_rejections`` come in a row."""
        if analytic:
            trial.set_user_attr(trials.ANALYTIC, analytic)
        self.give_back(trial, trials.REJECTED, reason)
        self.rejections_in_a_row += 1
        log.info("dse_optuna: trial %d rejected without training: %s", trial.number, reason)
        if self.rejections_in_a_row >= self.s.max_rejections:
            raise ConfigError("hydra.sweeper.constraints",
                              f"{self.rejections_in_a_row} sampled points in a row were "
                              "rejected; loosen the constraints or the search space")

    def finish(self, trial: optuna.Trial, ret: JobReturn, analytic: Mapping[str, float]) -> str | None:
        """Tell the job's outcome; returns an error message when the sweep must stop."""
        if out_dir := ret.hydra_cfg and OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir"):
            trial.set_user_attr(trials.OUTPUT_DIR, str(out_dir))
        outcome = decide(lambda: ret.return_value, self.s.objectives, self.s.constraints, analytic)
        for key, value in outcome.attrs.items():
            trial.set_user_attr(key, value)
        if outcome.state == "complete":
            if self.s.constraints:
                self.db.set_constraints(trial, outcome.violations)
            self.study.tell(trial, outcome.values)
            log.info("dse_optuna: trial %d: %s", trial.number, outcome.note)
        elif outcome.state == "pruned":
            self.study.tell(trial, state=TrialState.PRUNED)
            log.info("dse_optuna: trial %d pruned: %s", trial.number, outcome.note or "pruned")
        else:
            self.study.tell(trial, state=TrialState.FAIL)
            log.warning("dse_optuna: trial %d %s", trial.number, outcome.note, exc_info=outcome.exc)
        return outcome.fatal

    def give_back(self, trial: optuna.Trial, mark: str, why: str) -> None:
        """Tell a trial FAIL with a mark that keeps it off the budget (rejected, interrupted, discarded)."""
        trial.set_user_attr(mark, why)
        self.study.tell(trial, state=TrialState.FAIL)

    # -- the loop ------------------------------------------------------------
    def run(self) -> None:
        s, db = self.s, self.db
        db.fail_stale()
        log.info("dse_optuna: study %r in %s: %d of %d trials done or running; sampler %s, "
                 "objectives %s", s.study_name, s.storage.display, db.used(), s.n_trials,
                 s.sampler["_target_"], ", ".join(f"{o.direction} {o.metric}" for o in s.objectives))
        started = time.time()
        full = False
        while not full:
            db.fail_stale()
            room = s.n_trials - db.used()
            if room <= 0 or self._epochs_spent():
                break
            pending: list[optuna.Trial] = []  # asked here and not told yet
            try:
                full = self._run_batch(min(s.n_jobs, room), pending)
            except BaseException as e:
                # ^C, SIGTERM, a crashed launcher: tell what was left running, so it neither holds
                # the budget nor waits out the heartbeat's grace period; a rerun refills it
                why = first_line(e, typed=True)
                for trial in pending:
                    with suppress(Exception):  # already told (a rejection that raised)
                        self.give_back(trial, trials.INTERRUPTED, why)
                raise
            seen = counts(self.study)
            self._progress(seen, started)
            failures = seen["failed"]
            if failures > s.max_failure_rate * s.n_trials:
                write_results(self.study, s, self.sweep_dir)
                raise SystemExit(
                    f"dse_optuna: stopping study {s.study_name!r}: {failures} failed trials "
                    f"exceed max_failure_rate={s.max_failure_rate:g} of n_trials={s.n_trials}")

    def _epochs_spent(self) -> bool:
        """Whether the trials have trained ``total_epochs`` (checked before each batch, so a batch
        started under it may end over it, by at most ``n_jobs`` trials per worker)."""
        if self.s.total_epochs is None or (spent := self.db.epochs()) < self.s.total_epochs:
            return False
        log.info("dse_optuna: study %r has trained %d epochs of total_epochs=%d; no more trials",
                 self.s.study_name, spent, self.s.total_epochs)
        return True

    def _progress(self, seen: dict[str, int], started: float) -> None:
        """``[7/20] trials finished · 1 failed · ETA 4m10s``, over every worker's trials; the ETA
        is this worker's pace, so with several workers it errs long."""
        done = seen["complete"] + seen["pruned"] + seen["failed"]
        left = max(0, self.s.n_trials - done)
        eta = (time.time() - started) / max(1, sum(map(len, self.returns))) * left
        epochs = f" · {self.db.epochs()}/{self.s.total_epochs} epochs" if self.s.total_epochs else ""
        log.info("dse_optuna: [%d/%d] trials finished · %d failed%s%s", done, self.s.n_trials,
                 seen["failed"], epochs, f" · ETA {duration(eta)}" if left else "")

    def _ask(self, pending: list[optuna.Trial]) -> optuna.Trial | None:
        """A new trial with its point sampled, or None when other workers filled n_trials."""
        with quiet_optuna():
            trial = self.study.ask()  # claims the next number, samples nothing yet
        pending.append(trial)
        self.db.beat([self.db.trial_id(trial)])
        self.gate.deliver()  # a stop held during ask acts now that the trial can be told
        if self.db.used(below=trial.number) >= self.s.n_trials:  # another worker got there first
            self.give_back(trial, trials.DISCARDED, "n_trials already claimed by other workers")
            pending.remove(trial)
            return None
        self.study.sampler = sampler_for(self.s.sampler, trial.number)
        with quiet_optuna():
            for name, dist in self.db.distributions.items():
                suggest(trial, name, dist)
        return trial

    def _run_batch(self, size: int, pending: list[optuna.Trial]) -> bool:
        """Ask up to ``size`` trainable trials, launch them, tell them; True once n_trials is
        claimed by this and other workers."""
        full = False
        batch: list[Prepared] = []
        while len(batch) < size:
            trial = self._ask(pending)
            if trial is None:
                full = True
                break
            prepared = self.prepare(trial)
            if prepared is None:  # rejected and told
                pending.remove(trial)
            else:
                batch.append(prepared)
        if not batch:
            return full
        numbers = [t.number for t, _, _ in batch]
        # the launcher numbers its lines first, first + 1, ...: the trial numbers unless the batch
        # has gaps (rejected points, other workers' trials), where the lines' ++study.trial says
        gaps = numbers != list(range(numbers[0], numbers[0] + len(numbers)))
        log.info("dse_optuna: launching trial(s) %s%s", ", ".join(map(str, numbers)),
                 f" as jobs #{numbers[0]}-#{numbers[0] + len(numbers) - 1}" if gaps else "")
        with self.db.beating([self.db.trial_id(t) for t, _, _ in batch]), self.gate.open():
            rets = self.launcher.launch([ov for _, ov, _ in batch], initial_job_idx=numbers[0])
        self.returns.append(rets)
        fatal = []
        for (trial, _, analytic), ret in zip(batch, rets, strict=True):
            fatal.append(self.finish(trial, ret, analytic))
            pending.remove(trial)
        if any(fatal):
            raise ConfigError("hydra.sweeper.objectives", next(filter(None, fatal)))
        return full


def run_sweep(raw_settings: Mapping[str, Any], arguments: Sequence[str],
              hydra_context: HydraContext, config: DictConfig, launcher: Launcher
              ) -> list[Sequence[JobReturn]]:
    """Entry point of :meth:`DseOptunaSweeper.sweep`."""
    settings = validate_settings(raw_settings, arguments)

    def job_config(overrides: list[str]) -> DictConfig:
        return hydra_context.config_loader.load_sweep_config(config, overrides)

    probe(settings, job_config)
    pruner = effective_pruner(settings, job_config)
    runner = StudyRunner(settings, OpenStudy(settings, pruner), pruner, job_config, launcher,
                         Path(str(config.hydra.sweep.dir)))
    # kill/scancel (SIGTERM) tells the running trials, as Ctrl-C does; both wait for storage
    # calls to finish and act at once while jobs run
    with stop_signals(), runner.gate.held():
        runner.run()
    write_results(runner.study, settings, runner.sweep_dir)
    return runner.returns
