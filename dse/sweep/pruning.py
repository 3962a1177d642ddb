"""The training job's side of the Optuna sweeper: should this trial stop early?

The job reopens the study (:mod:`dse.sweep.handoff` says where), so the pruner compares this trial
with every other worker's trials in the shared storage. The callback is optuna-integration's
``PyTorchLightningPruningCallback``, given what dse adds: metric-name aliases and leaving NaN to
the divergence monitor. Nothing here imports Optuna or Lightning until a sweep asks for it: outside
a sweep :func:`pruning_callback_from_env` returns None at once.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from dse.metrics import REGISTRY
from dse.sweep.handoff import Handoff
from dse.sweep.pruners import make_pruner
from dse.sweep.storage import open_storage, parse_storage

if TYPE_CHECKING:  # pragma: no cover - typing only
    import lightning.pytorch as pl
    import optuna

DEFAULT_MONITOR = REGISTRY["val_top1"].key
log = logging.getLogger(__name__)


class JobTrial:
    """The running trial as its job sees it: report and should_prune, through public API only.

    ``optuna.trial.Trial(study, trial_id)`` would do, but Optuna documents that constructor as not
    meant for direct use; a trial asked by another process is reached through the storage
    (``set_trial_intermediate_value``, ``get_trial``) and the study's pruner (``prune``), which is
    what ``Trial.report`` and ``Trial.should_prune`` do inside.
    """

    def __init__(self, study: optuna.Study, storage: Any, trial_id: int) -> None:
        self.study, self.storage, self.trial_id = study, storage, trial_id
        self.number = storage.get_trial_number_from_id(trial_id)

    def report(self, value: float, step: int) -> None:
        if step in self.storage.get_trial(self.trial_id).intermediate_values:
            log.warning("pruning: step %d of trial %d was already reported", step, self.number)
            return
        self.storage.set_trial_intermediate_value(self.trial_id, step, float(value))

    def should_prune(self) -> bool:
        return self.study.pruner.prune(self.study, self.storage.get_trial(self.trial_id))


def trial_from_env(handoff: Handoff | None = None) -> JobTrial | None:
    """This job's live Optuna trial (its study loaded with the sweep's pruner), or None.

    ``handoff``: a job's handoff read earlier (the fused launcher trains several jobs' trials in one
    process, so it cannot read theirs from this process's environment); default: from the env.
    """
    handoff = handoff or Handoff.from_env()
    if handoff is None:
        return None
    import optuna

    storage = open_storage(parse_storage(handoff.storage))
    study = optuna.load_study(study_name=handoff.study, storage=storage,
                              pruner=make_pruner(handoff.pruner))
    trial = JobTrial(study, storage, handoff.trial_id)
    if trial.number != handoff.trial_number:
        raise RuntimeError(f"trial id {handoff.trial_id} of study {handoff.study!r} is trial "
                           f"{trial.number}, not {handoff.trial_number}: a stale handoff")
    return trial


def _callback_class() -> type:
    """Defined lazily so importing this module never imports Lightning or optuna-integration."""
    from optuna_integration import PyTorchLightningPruningCallback

    class PruningCallback(PyTorchLightningPruningCallback):
        """Reports the monitored validation metric every validation epoch (step = epoch) and
        raises :class:`optuna.TrialPruned` out of ``trainer.fit`` when the pruner says so; dse's
        training stores the run as ``pruned`` and returns ``{"status": "pruned", ...}``.

        ``val/top1`` and ``val_top1`` both find the metric Lightning logged as ``val/top1``; a NaN
        or infinite value is not reported (the divergence monitor stops that run).
        One process only: under DDP the callback reports nothing (a warning says so).
        """

        def __init__(self, trial: JobTrial, monitor: str = DEFAULT_MONITOR) -> None:
            super().__init__(trial, monitor)  # type: ignore[arg-type]
            self.wanted = monitor
            self.trial = trial

        def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            self.is_ddp_backend = bool(getattr(trainer, "world_size", 1) > 1)
            if self.is_ddp_backend:
                log.warning("pruning: trial %d trains on %d processes; nothing is reported",
                            self.trial.number, trainer.world_size)

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking or self.is_ddp_backend:
                return
            metrics = trainer.callback_metrics
            key = next((k for k in (self.wanted, self.wanted.replace("/", "_"),
                                    self.wanted.replace("_", "/", 1)) if k in metrics), None)
            if key is None:
                log.warning("pruning: no metric %r among %s; nothing reported", self.wanted,
                            sorted(metrics))
                return
            if not math.isfinite(float(metrics[key])):
                return
            self.monitor = key
            super().on_validation_end(trainer, pl_module)

    return PruningCallback


def _pruned_trial(handoff: Handoff | None) -> tuple[JobTrial, str] | None:
    """(trial, the sweep's pruner monitor) of a single-objective sweep's job, else None (Optuna
    cannot prune multi-objective studies)."""
    if handoff is None:
        return None
    trial = trial_from_env(handoff)
    if trial is None or len(trial.study.directions) != 1:
        return None
    return trial, handoff.pruner.get("monitor") or DEFAULT_MONITOR


def pruning_callback_from_env(monitor: str | None = None, handoff: Handoff | None = None
                              ) -> pl.Callback | None:
    """A Lightning callback that reports to this job's Optuna trial, or None outside a sweep.

    None too for multi-objective studies (Optuna cannot prune those). With pruner ``none`` the
    callback still reports the metric, so the dashboard plots learning curves; it never prunes.
    ``monitor`` defaults to the sweep's ``hydra.sweeper.pruner.monitor`` (else ``val/top1``);
    ``handoff``: a job's handoff read earlier (the fused launcher's), default: from the env.
    """
    found = _pruned_trial(handoff or Handoff.from_env())
    return None if found is None else _callback_class()(found[0], monitor or found[1])


def member_pruning(handoffs: list[Handoff | None]) -> pl.Callback | None:
    """One callback that reports each member of a fused group to its own trial and ends the
    members their pruners prune (``pl_module.stop``), or None when no member is a prunable
    trial. Never from this process's environment, which holds no member's handoff."""
    found = [_pruned_trial(h) for h in handoffs]
    if not any(found):
        return None
    from lightning.pytorch.callbacks import Callback

    class MemberPruning(Callback):
        """Per member: its trial and the Lightning key its pruner watches (``val_top1`` too)."""

        def __init__(self) -> None:
            self.trials = [(f[0], f[1] if "/" in f[1] else f[1].replace("_", "/", 1)) if f else None
                           for f in found]

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            epoch = trainer.current_epoch
            for k, (got, results) in enumerate(zip(self.trials, pl_module.results, strict=True)):
                if got is None or not pl_module.live[k] or got[1] not in results:
                    continue
                got[0].report(results[got[1]], epoch)
                if got[0].should_prune():
                    pl_module.stop(k, "pruned", f"Trial was pruned at epoch {epoch}.")

    return MemberPruning()
