"""The training job's side of the Optuna sweeper: which trial am I, and should I stop early?

The dse_optuna sweeper (hydra_plugins/dse_optuna_sweeper) launches each trial as an ordinary Hydra
job and hands it its trial through environment variables set with ``hydra.job.env_set`` (which
every launcher honours, joblib's processes and Slurm included):

``DSE_OPTUNA_STORAGE``       the study's storage (absolute SQLAlchemy URL or ``journal:PATH``)
``DSE_OPTUNA_STUDY``         the study name
``DSE_OPTUNA_TRIAL_ID``      the trial's storage id
``DSE_OPTUNA_TRIAL_NUMBER``  the trial's number in the study (what the results store records)
``DSE_OPTUNA_PRUNER``        the pruner as JSON: ``{"name": "median", "monitor": "val/top1", ...}``

The job reopens the study itself, so the pruner compares this trial with every other worker's
trials in the shared storage. Nothing here imports Optuna or Lightning until a sweep asks for it.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    import lightning.pytorch as pl
    import optuna

log = logging.getLogger(__name__)

ENV_STORAGE = "DSE_OPTUNA_STORAGE"
ENV_STUDY = "DSE_OPTUNA_STUDY"
ENV_TRIAL_ID = "DSE_OPTUNA_TRIAL_ID"
ENV_TRIAL_NUMBER = "DSE_OPTUNA_TRIAL_NUMBER"
ENV_PRUNER = "DSE_OPTUNA_PRUNER"
DEFAULT_MONITOR = "val/top1"


def trial_number_from_env() -> int | None:
    """The Optuna trial number of this job, or None outside an Optuna sweep."""
    raw = os.environ.get(ENV_TRIAL_NUMBER, "").strip()
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def trial_from_env() -> optuna.Trial | None:
    """This job's live Optuna trial (its study loaded with the sweep's pruner), or None."""
    storage_url = os.environ.get(ENV_STORAGE, "").strip()
    study_name = os.environ.get(ENV_STUDY, "").strip()
    trial_id = os.environ.get(ENV_TRIAL_ID, "").strip()
    if not (storage_url and study_name and trial_id):
        return None
    import optuna

    from hydra_plugins.dse_optuna_sweeper._optuna import make_pruner, open_storage, parse_storage

    storage = open_storage(parse_storage(storage_url))
    study = optuna.load_study(study_name=study_name, storage=storage,
                              pruner=make_pruner(os.environ.get(ENV_PRUNER)))
    return optuna.trial.Trial(study, int(trial_id))


def _pruner_settings() -> dict[str, Any]:
    raw = os.environ.get(ENV_PRUNER, "").strip()
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


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
    if not os.environ.get(ENV_TRIAL_ID):
        return None
    trial = trial_from_env()
    if trial is None:
        return None
    if len(trial.study.directions) != 1:
        return None
    settings = _pruner_settings()
    return _callback_class()(trial, monitor or settings.get("monitor") or DEFAULT_MONITOR)
