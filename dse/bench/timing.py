"""Clocks that tell the truth on GPUs: every reading first waits for the device (CUDA runs
asynchronously), and only at the edges of a measured window, so no per-step host sync is added."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from dse.metrics import REGISTRY

VAL_TOP1 = REGISTRY["val_top1"].key  # what FireClassifier logs validation top-1 under


def now() -> float:
    """``perf_counter`` once queued GPU work is done, so the reading includes it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class _Clock(Callback):
    """A training clock that ``_lap``s (stops) when validation starts."""

    _fit_t0: float | None = None
    _t0: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_t0 = now()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()  # each clock's own


class StepClock(_Clock):
    """Times ``steps`` optimizer steps after ``warmup`` untimed ones, validation cut out. ``warmup_s``
    carries one-off costs (compilation); ``cpu_seconds`` is far less noisy than wall time on a shared CPU."""

    def __init__(self, warmup: int, steps: int) -> None:
        self.warmup, self.steps = warmup, steps
        self.done_steps, self.images, self.seconds, self.cpu_seconds = 0, 0, 0.0, 0.0
        self.warmup_s: float | None = None
        self._c0 = 0.0

    @property
    def finished(self) -> bool:
        return self.done_steps >= self.warmup + self.steps

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        if self._t0 is None and self.warmup <= self.done_steps < self.warmup + self.steps:
            self._t0, self._c0 = now(), time.process_time()
            if self.warmup_s is None and self._fit_t0 is not None:
                self.warmup_s = self._t0 - self._fit_t0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.done_steps += 1
        if self._t0 is not None:
            self.images += len(batch[1])
            if self.finished:
                self._lap()

    def _lap(self) -> None:  # resumed by the next on_train_batch_start
        if self._t0 is not None:
            self.seconds += now() - self._t0
            self.cpu_seconds += time.process_time() - self._c0
            self._t0 = None


class EpochClock(_Clock):
    """Per-epoch training seconds (validation excluded) and validation top-1; stops at ``target``;
    ``reached_*``: the epoch, training seconds and wall seconds where it was first reached."""

    def __init__(self, target: float | None) -> None:
        self.target = target
        self.epoch_seconds: list[float] = []
        self.val_top1: list[tuple[int, float]] = []
        self.reached_epoch: int | None = None
        self.reached_train_s: float | None = None
        self.reached_wall_s: float | None = None
        self.images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = now()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.images += len(batch[1])

    def _lap(self) -> None:
        if self._t0 is not None:
            self.epoch_seconds.append(now() - self._t0)
            self._t0 = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or VAL_TOP1 not in trainer.callback_metrics:
            return
        top1 = float(trainer.callback_metrics[VAL_TOP1])
        self.val_top1.append((trainer.current_epoch, top1))
        if self.target is not None and self.reached_epoch is None and top1 >= self.target:
            self.reached_epoch = trainer.current_epoch + 1
            self.reached_train_s = sum(self.epoch_seconds)
            self.reached_wall_s = now() - (self._fit_t0 or 0.0)
            trainer.should_stop = True
