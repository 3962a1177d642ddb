"""The training job's side of the Optuna sweeper: should this trial stop early? The job reopens the
study (:mod:`dse.sweep.handoff`), so the pruner sees every worker's trials. One callback serves each
member of a group; Optuna and Lightning are imported only inside a sweep.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dse.metrics import REGISTRY
from dse.sweep.handoff import Handoff
from dse.sweep.pruners import make_pruner
from dse.sweep.storage import open_storage, parse_storage
from dse.sweep.trials import ANALYTIC

if TYPE_CHECKING:  # pragma: no cover - typing only
    import lightning.pytorch as pl
    import optuna
    from optuna.trial import FrozenTrial

DEFAULT_MONITOR = REGISTRY["val_top1"].key
log = logging.getLogger(__name__)


class JobTrial:
    """The running trial's ``report`` and ``should_prune`` through public API: Optuna documents
    ``Trial(study, trial_id)`` as not for direct use, so this does what those methods do inside. Every
    pruner takes one path; one may say why it pruned in a ``why`` attribute (dse.sweep.moasha does)."""

    def __init__(self, study: optuna.Study, storage: Any, trial_id: int,
                 monitor: str = DEFAULT_MONITOR) -> None:
        self.study, self.storage, self.trial_id = study, storage, trial_id
        self.monitor = monitor  # the Lightning key reported: dse.sweep.pruners.pruner_spec's monitor
        self.number = storage.get_trial_number_from_id(trial_id)
        self.reason = ""  # why should_prune said so, for the run's error column
        self.seen: FrozenTrial | None = None  # the trial as report left it: one read per epoch

    def report(self, value: float, step: int, logged: Mapping[str, Any] | None = None) -> None:
        """``value`` as the step's intermediate value (optuna-dashboard draws it); with several
        objectives also the objective vector at this epoch that MOASHA ranks (``logged``: the epoch's
        Lightning metrics). A step reported already (a later seed of the point) is judged as it was."""
        trial = copy.copy(self.storage.get_trial(self.trial_id))
        if step in trial.intermediate_values:
            log.debug("pruning: step %d of trial %d is an earlier seed's, judged so", step, self.number)
            trial.intermediate_values = {s: v for s, v in trial.intermediate_values.items() if s <= step}
        else:
            self.storage.set_trial_intermediate_value(self.trial_id, step, float(value))
            trial.intermediate_values = {**trial.intermediate_values, step: float(value)}
            if len(self.study.directions) > 1 and logged is not None:
                from dse.sweep.moasha import RUNG_ATTR, vector

                got = vector(self.study.metric_names, logged, trial.user_attrs.get(ANALYTIC) or {})
                if got is not None:
                    self.storage.set_trial_user_attr(self.trial_id, RUNG_ATTR.format(step + 1), got)
                    trial.user_attrs = {**trial.user_attrs, RUNG_ATTR.format(step + 1): got}
        self.seen = trial

    def should_prune(self) -> bool:
        trial, self.seen = self.seen or self.storage.get_trial(self.trial_id), None
        pruned = self.study.pruner.prune(self.study, trial)
        why = getattr(self.study.pruner, "why", None)
        self.reason = why or f"Trial was pruned at epoch {trial.last_step}."
        return pruned


def trial_from_env(handoff: Handoff | None = None) -> JobTrial | None:
    """This job's live Optuna trial (its study loaded with the sweep's pruner), or None where there is
    none or Optuna cannot prune it (several objectives, unless MOASHA's); ``handoff`` default: from
    the env (the fused launcher passes each job's, read earlier)."""
    handoff = handoff or Handoff.from_env()
    if handoff is None:
        return None
    import optuna

    storage = open_storage(parse_storage(handoff.storage))
    study = optuna.load_study(study_name=handoff.study, storage=storage, pruner=make_pruner(handoff.pruner))
    trial = JobTrial(study, storage, handoff.trial_id, handoff.pruner.get("monitor") or DEFAULT_MONITOR)
    if trial.number != handoff.trial_number:
        raise RuntimeError(f"trial id {handoff.trial_id} of study {handoff.study!r} is trial "
                           f"{trial.number}, not {handoff.trial_number}: a stale handoff")
    return trial if len(study.directions) == 1 or handoff.pruner.get("name") == "moasha" else None


def _callback_class() -> type:
    """Defined lazily so importing this module never imports Lightning or Optuna."""
    import optuna
    from lightning.pytorch.callbacks import Callback

    class Pruning(Callback):
        """Reports each member's metric to its own trial every validation epoch (step = epoch), as
        optuna-integration's ``PyTorchLightningPruningCallback`` does for one; a pruned group of one
        raises :class:`optuna.TrialPruned` out of ``fit``, a pruned member of a larger group is stopped
        and the others go on. NaN is left to the divergence monitor; under DDP nothing is reported."""

        def __init__(self, trials: list[JobTrial | None]) -> None:
            self.trials = trials
            self.monitor = next(t.monitor for t in trials if t)

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking or getattr(trainer, "world_size", 1) > 1:
                return
            epoch, alone = pl_module.current_epoch, len(self.trials) == 1
            for k, got in enumerate(self.trials):
                if got is None or not (alone or pl_module.live[k]):
                    continue
                metrics = trainer.callback_metrics if alone else pl_module.results[k]
                if got.monitor not in metrics:
                    log.warning("pruning: no metric %r among %s; nothing reported", got.monitor,
                                sorted(metrics))
                elif math.isfinite(value := float(metrics[got.monitor])):
                    got.report(value, epoch, metrics)
                    if got.should_prune():
                        if alone:
                            raise optuna.TrialPruned(got.reason)
                        pl_module.stop(k, "pruned", got.reason)

    return Pruning


def member_pruning(handoffs: list[Handoff | None]) -> pl.Callback | None:
    """The callback for a group's members, each reporting to its own trial (None where none is a
    prunable trial). With pruner ``none`` it still reports, for the dashboard's learning curves."""
    found = [h and trial_from_env(h) for h in handoffs]
    return _callback_class()(found) if any(found) else None


def pruning_callback_from_env() -> pl.Callback | None:
    """:func:`member_pruning` for the one trial this job's environment hands it."""
    return member_pruning([Handoff.from_env()])
