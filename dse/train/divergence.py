"""Stop runs that will never train and record them as ``diverged``: a NaN/inf loss, or the classic
SqueezeNet failure where every ReLU dies and the network sits at chance with a flat loss forever."""

from __future__ import annotations

import math

import lightning as L
from lightning.pytorch.callbacks import Callback

from dse.metrics import REGISTRY

VAL_LOSS, VAL_TOP1 = REGISTRY["val_loss"].key, REGISTRY["val_top1"].key


class DivergenceMonitor(Callback):
    """Ends a member (``pl_module.stop``) that diverges or is dead; ``reasons[k]`` says why. The
    loss is read every ``check_every`` steps (one host sync for all members)."""

    def __init__(self, num_classes: int, chance_epochs: int = 2, check_every: int = 50) -> None:
        self.num_classes, self.chance_epochs, self.check_every = num_classes, chance_epochs, check_every
        self.reasons: dict[int, str] = {}
        self.first_loss: dict[int, float] = {}

    @property
    def reason(self) -> str | None:
        """A group of one's reason (a single run's)."""
        return self.reasons.get(0)

    def _stop(self, pl_module: L.LightningModule, k: int, reason: str) -> None:
        self.reasons[k] = reason
        pl_module.stop(k, "diverged", reason)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs,
                           batch, batch_idx: int) -> None:
        if batch_idx % self.check_every == 0 or batch_idx + 1 == trainer.num_training_batches:
            for k, loss in enumerate(pl_module.last_loss.tolist()):
                if pl_module.live[k] and not math.isfinite(loss):
                    self._stop(pl_module, k, f"non-finite training loss ({loss}) at step "
                                             f"{trainer.global_step}, epoch {trainer.current_epoch}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for k, results in enumerate(pl_module.results):
            if not pl_module.live[k]:
                continue
            val_loss = results.get(VAL_LOSS)
            if val_loss is not None and not math.isfinite(val_loss):
                self._stop(pl_module, k, f"non-finite validation loss at epoch {trainer.current_epoch}")
                continue
            train_loss = pl_module.train_loss[k]
            if train_loss.update_count == 0 or VAL_TOP1 not in results:
                continue
            loss = float(train_loss.compute())
            first = self.first_loss.setdefault(k, loss)
            # dead: val top-1 at chance and the training loss not falling after chance_epochs epochs
            top1, chance, epochs = results[VAL_TOP1], 1.0 / self.num_classes, trainer.current_epoch + 1
            flat = not math.isfinite(loss) or loss >= 0.98 * first
            if epochs >= self.chance_epochs and top1 <= 1.5 * chance and flat:
                self._stop(pl_module, k, f"dead network: val top-1 {top1:.3f} at chance ({chance:.3f}) and "
                                         f"training loss not falling ({first:.3f} -> {loss:.3f}) after "
                                         f"{epochs} epochs")
