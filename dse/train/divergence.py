"""Stop runs that will never train, so a sweep records them as ``diverged`` instead of as points.

Two failure modes matter in a design-space sweep: a loss that becomes NaN/inf, and the classic
vanilla-SqueezeNet failure where every ReLU dies at a bad learning rate and the network sits at
chance accuracy with a flat loss forever. Both are cheap to detect; training them on is waste.
"""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from dse.metrics import REGISTRY

VAL_LOSS, VAL_TOP1 = REGISTRY["val_loss"].key, REGISTRY["val_top1"].key


def nonfinite(loss: float, step: int, epoch: int) -> str | None:
    """The reason a run with this training loss diverged, or None while it is finite."""
    if math.isfinite(loss):
        return None
    return f"non-finite training loss ({loss}) at step {step}, epoch {epoch}"


def dead(top1: float, first_loss: float, loss: float, epoch: int, num_classes: int,
         chance_epochs: int) -> str | None:
    """The reason a run is dead (val top-1 at chance and training loss not falling after
    ``chance_epochs`` epochs; ``epoch`` counts from 0), or None."""
    chance = 1.0 / num_classes
    at_chance = top1 <= 1.5 * chance
    flat = not math.isfinite(loss) or loss >= 0.98 * first_loss
    if epoch + 1 >= chance_epochs and at_chance and flat:
        return (f"dead network: val top-1 {top1:.3f} at chance ({chance:.3f}) and training loss "
                f"not falling ({first_loss:.3f} -> {loss:.3f}) after {epoch + 1} epochs")
    return None


class DivergenceMonitor(Callback):
    """Sets ``trainer.should_stop`` and ``self.reason`` when a run diverges or is dead.

    The loss is read only every ``check_every`` steps (a host sync on GPU), and at chance-check time
    the epoch's mean training loss is compared with the first epoch's.
    """

    def __init__(self, num_classes: int, chance_epochs: int = 2, check_every: int = 50) -> None:
        self.num_classes, self.chance_epochs, self.check_every = num_classes, chance_epochs, check_every
        self.reason: str | None = None
        self.first_loss: float | None = None

    def _stop(self, trainer: L.Trainer, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        trainer.should_stop = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                            batch, batch_idx: int) -> None:
        if batch_idx % self.check_every == 0 or batch_idx + 1 == trainer.num_training_batches:
            loss = getattr(pl_module, "last_loss", None)
            if loss is not None and not bool(torch.isfinite(loss)):
                self._stop(trainer, nonfinite(float(loss), trainer.global_step,
                                              trainer.current_epoch))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.reason:
            return
        metrics = trainer.callback_metrics
        val_loss = metrics.get(VAL_LOSS)
        if val_loss is not None and not math.isfinite(float(val_loss)):
            self._stop(trainer, f"non-finite validation loss at epoch {trainer.current_epoch}")
            return
        train_loss = pl_module.train_loss
        if train_loss.update_count == 0 or VAL_TOP1 not in metrics:
            return
        loss, top1 = float(train_loss.compute()), float(metrics[VAL_TOP1])
        if self.first_loss is None:
            self.first_loss = loss
        reason = dead(top1, self.first_loss, loss, trainer.current_epoch, self.num_classes,
                      self.chance_epochs)
        if reason is not None:
            self._stop(trainer, reason)
