"""The training job's side of the Optuna sweeper: should this trial stop early?

The job reopens the study (:mod:`dse.sweep.handoff` says where), so the pruner compares this trial
with every other worker's trials in the shared storage. Nothing here imports Optuna or Lightning
until a sweep asks for it: outside a sweep :func:`pruning_callback_from_env` returns None at once.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

from dse.metrics import REGISTRY
from dse.sweep.handoff import Handoff
from dse.sweep.pruners import make_pruner
from dse.sweep.storage import open_storage, parse_storage

if TYPE_CHECKING:  # pragma: no cover - typing only
    import lightning.pytorch as pl
    import optuna

DEFAULT_MONITOR = REGISTRY["val_top1"].key
log = logging.getLogger(__name__)


def trial_from_env() -> optuna.Trial | None:
    """This job's live Optuna trial (its study loaded with the sweep's pruner), or None."""
    handoff = Handoff.from_env()
    if handoff is None:
        return None
    import optuna

    storage = open_storage(parse_storage(handoff.storage))
    study = optuna.load_study(study_name=handoff.study, storage=storage,
                              pruner=make_pruner(handoff.pruner))
    trial = optuna.trial.Trial(study, handoff.trial_id)
    if trial.number != handoff.trial_number:
        raise RuntimeError(f"trial id {handoff.trial_id} of study {handoff.study!r} is trial "
                           f"{trial.number}, not {handoff.trial_number}: a stale handoff")
    return trial


def _callback_class() -> type:
    """Defined lazily so importing this module never imports Lightning."""
    import lightning.pytorch as pl
    import optuna

    class OptunaPruningCallback(pl.Callback):
        """Reports the monitored validation metric every validation epoch; prunes when told.

        Raises :class:`optuna.TrialPruned` out of ``trainer.fit``; dse's training code catches it,
        stores the run as ``pruned`` and returns ``{"status": "pruned", ...}`` to the sweeper.
        The step reported is the epoch index, so epochs compare across trials.
        """

        def __init__(self, trial: optuna.Trial, monitor: str = DEFAULT_MONITOR) -> None:
            super().__init__()
            self.trial = trial
            self.monitor = monitor
            self.reports = 0

        def _value(self, trainer: pl.Trainer) -> float | None:
            metrics = trainer.callback_metrics
            for key in (self.monitor, self.monitor.replace("/", "_"),
                        self.monitor.replace("_", "/", 1)):
                if key in metrics:
                    return float(metrics[key])
            return None

        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.sanity_checking:
                return
            value = self._value(trainer)
            if value is None:
                if self.reports == 0:
                    log.warning("pruning: no metric %r among %s; nothing reported", self.monitor,
                                sorted(trainer.callback_metrics))
                return
            if not math.isfinite(value):
                return  # divergence is the divergence monitor's business, not the pruner's
            epoch = int(trainer.current_epoch)
            self.trial.report(value, step=epoch)
            self.reports += 1
            if self.trial.should_prune():
                raise optuna.TrialPruned(
                    f"trial {self.trial.number} pruned at epoch {epoch} "
                    f"({self.monitor}={value:.4f})")

    return OptunaPruningCallback


def pruning_callback_from_env(monitor: str | None = None) -> pl.Callback | None:
    """A Lightning callback that reports to this job's Optuna trial, or None outside a sweep.

    None too for multi-objective studies (Optuna cannot prune those). With pruner ``none`` the
    callback still reports the metric, so the dashboard plots learning curves; it never prunes.
    ``monitor`` defaults to the sweep's ``hydra.sweeper.pruner.monitor`` (else ``val/top1``).
    """
    handoff = Handoff.from_env()
    if handoff is None:
        return None
    trial = trial_from_env()
    if trial is None or len(trial.study.directions) != 1:
        return None
    return _callback_class()(trial, monitor or handoff.pruner.get("monitor") or DEFAULT_MONITOR)
