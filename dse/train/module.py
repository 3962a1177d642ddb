"""The LightningModule around a generated Fire network: loss, metrics, optimizer, LR schedule."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from dse.model.net import build_model


def lr_lambda(schedule: str, total: int, warmup: int, power: float = 1.0):
    """LR multiplier per step: linear warmup, then poly (the paper's linear decay) / cosine / flat."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "poly":
            return (1.0 - t) ** power
        if schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * t))
        return 1.0

    return f


def _fused_if_possible(cls: type[torch.optim.Optimizer], params: list[Any], **kw: Any
                       ) -> torch.optim.Optimizer:
    """``cls(params, fused=True)`` where this torch and device have the fused kernel, else the default.

    The same update rule in one kernel instead of a loop over the ~80 parameter tensors of a Fire
    net: several times cheaper on CPU (figures in docs/BENCHMARKS.md) and one launch instead of
    dozens on GPU. Older torch (CPU fused kernels arrived in 2.4) falls back quietly.
    """
    try:
        return cls(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        return cls(params, **kw)


def build_optimizer(params: Any, tc: Any, total_steps: int, max_epochs: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer and per-step LR scheduler ``trainer.*`` describes, for ``total_steps`` steps.

    A module-level function (rather than inline in ``configure_optimizers``) so that ``dse-bench``'s
    plain PyTorch loop steps exactly the same solver as the Lightning path it is compared with.
    """
    params = list(params)
    if tc["optimizer"] == "sgd":
        opt = _fused_if_possible(torch.optim.SGD, params, lr=tc["lr"], momentum=tc["momentum"],
                                 nesterov=bool(tc["nesterov"]) and tc["momentum"] > 0,
                                 weight_decay=tc["weight_decay"])
    else:
        opt = _fused_if_possible(torch.optim.AdamW, params, lr=tc["lr"], weight_decay=tc["weight_decay"])
    total = max(1, int(total_steps))
    if tc["schedule"] == "onecycle":
        sched: torch.optim.lr_scheduler.LRScheduler = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=tc["lr"], total_steps=total)
    else:
        steps_per_epoch = max(1, total // max(1, max_epochs))
        warmup = int(round(float(tc["warmup_epochs"]) * steps_per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(tc["schedule"], total, warmup))
    return opt, sched


def accuracy_metrics(classes: int, prefix: str) -> MetricCollection:
    """Top-1, and top-5 where there are more than 5 classes (else it is trivially 100 %)."""
    topk = {"top1": MulticlassAccuracy(classes, top_k=1, average="micro")}
    if classes > 5:
        topk["top5"] = MulticlassAccuracy(classes, top_k=5, average="micro")
    return MetricCollection(topk, prefix=prefix)


class FireClassifier(L.LightningModule):
    """Trains ``build_model(cfg["model"])`` with cross-entropy; logs val/test top-1 and top-5.

    ``cfg`` is the resolved config as a plain dict; it is saved as the only hyperparameter so a
    checkpoint alone is enough to rebuild the network (see docs/CONTRACTS.md).
    """

    def __init__(self, cfg: dict[str, Any]) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg, self.tc = cfg, cfg["trainer"]
        self.model = build_model(cfg["model"])
        classes = int(cfg["model"]["num_classes"])
        self.val_metrics = accuracy_metrics(classes, "val/")
        self.test_metrics = accuracy_metrics(classes, "test/")
        # nan_strategy="disable": the default "warn" tests `nans.any()` in Python on every update, a
        # host sync per training step on GPU. A NaN loss now shows as a NaN epoch mean (which the
        # divergence monitor treats as diverged) instead of being dropped with a warning.
        self.train_loss = MeanMetric(nan_strategy="disable")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.channels_last = False  # set by the runner on GPU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y, label_smoothing=float(self.tc["label_smoothing"]))
        self.train_loss.update(loss.detach())
        self.last_loss = loss.detach()  # read by the divergence monitor, only every few steps
        return loss

    def on_train_epoch_end(self) -> None:
        self.log("train/loss", self.train_loss.compute())
        self.train_loss.reset()

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], metrics: MetricCollection,
                   loss_metric: MeanMetric) -> None:
        x, y = batch
        logits = self(x)
        loss_metric.update(F.cross_entropy(logits, y), weight=len(y))
        metrics.update(logits, y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, self.val_metrics, self.val_loss)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, self.test_metrics, self.test_loss)

    def _eval_end(self, metrics: MetricCollection, loss_metric: MeanMetric, prefix: str) -> None:
        self.log_dict(metrics.compute(), prog_bar=prefix == "val")
        self.log(f"{prefix}/loss", loss_metric.compute())
        metrics.reset()
        loss_metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._eval_end(self.val_metrics, self.val_loss, "val")

    def on_test_epoch_end(self) -> None:
        self._eval_end(self.test_metrics, self.test_loss, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        opt, sched = build_optimizer(self.model.parameters(), self.tc, total, self.trainer.max_epochs or 1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
