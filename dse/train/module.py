"""The LightningModule around a generated Fire network: loss, metrics, optimizer, LR schedule."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from dse.metrics import REGISTRY
from dse.model.net import build_model

log = logging.getLogger("dse.train")


def build_optimizer(params: Any, tc: Any, total_steps: int, max_epochs: int
                    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """The optimizer (fused kernels where torch has them) and per-step LR scheduler ``trainer.*``
    describes, for ``total_steps`` steps: dse-bench's plain PyTorch loop steps the very same solver."""
    params = list(params)
    cls, kw = torch.optim.AdamW, {"lr": tc["lr"], "weight_decay": tc["weight_decay"]}
    if tc["optimizer"] == "sgd":
        cls = torch.optim.SGD
        kw.update(momentum=tc["momentum"], nesterov=bool(tc["nesterov"]) and tc["momentum"] > 0)
    try:
        opt = cls(params, fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):  # an older torch, or none for this device
        opt = cls(params, **kw)
    total, schedule = max(1, int(total_steps)), tc["schedule"]
    if schedule == "onecycle":
        return opt, torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc["lr"], total_steps=total)
    warmup = int(round(float(tc["warmup_epochs"]) * max(1, total // max(1, max_epochs))))

    def factor(step: int) -> float:
        """Linear warmup, then poly (the paper's linear decay), cosine or flat."""
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "poly":
            return 1.0 - t
        return 0.5 * (1.0 + math.cos(math.pi * t)) if schedule == "cosine" else 1.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def accuracy_metrics(classes: int, prefix: str) -> MetricCollection:
    """The registry's top-k accuracies of this split (``prefix`` ``"val/"``) with k below the class
    count (else trivially 100 %)."""
    return MetricCollection({m.key.removeprefix(prefix): MulticlassAccuracy(classes, top_k=m.topk,
                                                                            average="micro")
                             for m in REGISTRY.values()
                             if m.topk and m.key.startswith(prefix) and m.topk < classes}, prefix=prefix)


class FireClassifier(L.LightningModule):
    """Trains K >= 1 Fire networks as one :class:`~dse.model.net.FusedFireNet`, each member with its
    own loss, metrics, logger (one Trainer logger cannot keep K runs apart) and outcome. ``cfg``: the
    first member's resolved config; callbacks end a member with :meth:`stop`; ``results[k]``: member
    k's latest epoch metrics."""

    def __init__(self, cfg: dict[str, Any], model: nn.Module | None = None,
                 loggers: list[Any] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters({"cfg": cfg})
        self.cfg, self.tc = cfg, cfg["trainer"]
        self.model = model if model is not None else build_model(cfg["model"])
        self.k = k = getattr(self.model, "k", 1)
        self.member_loggers = loggers or [False] * k
        classes = int(cfg["model"]["num_classes"])
        splits = ("val", "test")
        self.eval_metrics = nn.ModuleDict({
            s: nn.ModuleList(accuracy_metrics(classes, f"{s}/") for _ in range(k)) for s in splits})
        self.eval_loss = nn.ModuleDict({s: nn.ModuleList(MeanMetric() for _ in range(k)) for s in splits})
        # "disable": the default tests nans in Python, a host sync a step; a NaN mean is diverged
        self.train_loss = nn.ModuleList(MeanMetric(nan_strategy="disable") for _ in range(k))
        self.register_buffer("live", torch.ones(k, dtype=torch.bool), persistent=False)
        self.frozen = [False] * k
        self.outcome: list[tuple[str, str, int] | None] = [None] * k  # (status, reason, epochs)
        self.results: list[dict[str, float]] = [{} for _ in range(k)]
        self.channels_last = False  # set by the runner on GPU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, K, classes]``."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x).view(len(x), self.k, -1)

    def _losses(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        """Each member's mean cross-entropy over its batch (labels ``[N]`` or ``[N, K]``), ``[K]``."""
        y = y.view(len(y), -1).expand(-1, self.k)
        return torch.stack([F.cross_entropy(logits[:, k], y[:, k], label_smoothing=smoothing)
                            for k in range(self.k)])

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        losses = self._losses(self(x), y, float(self.tc["label_smoothing"]))
        self.last_loss = losses.detach()  # read by the divergence monitor, only every few steps
        for k, mean in enumerate(self.train_loss):
            mean.update(self.last_loss[k])
        return torch.where(self.live, losses, torch.zeros_like(losses)).sum()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.k > 1:  # a group of one has no padding and no frozen neighbour
            self.model.mask_grads()

    def stop(self, k: int, status: str, reason: str) -> None:
        """End member k: the others go on with it frozen; the last one ends the fit."""
        self.outcome[k] = (status, reason, self.current_epoch + 1)
        self.live[k] = False
        log.info("member %d of %d: %s: %s", k, self.k, status, reason)
        if bool(self.live.any()):
            self.frozen[k] = True
            self.model.freeze(k, self.trainer.optimizers[0] if self.trainer.optimizers else None)
        else:
            self.trainer.should_stop = True

    def _publish(self, values: list[dict[str, torch.Tensor]], prog_bar: bool = False) -> None:
        """Each live member's epoch metrics into ``results[k]`` and its logger; a group of one's also
        into Lightning's (progress bar, callback_metrics)."""
        if self.k == 1:
            self.log_dict(values[0], prog_bar=prog_bar)
        # Lightning's own step for epoch-end logs: the last step during fit, the count in test
        step = self.global_step if self.trainer.testing else max(0, self.global_step - 1)
        for k, (lg, vals) in enumerate(zip(self.member_loggers, values, strict=True)):
            if self.frozen[k]:
                continue
            self.results[k].update(floats := {n: float(v) for n, v in vals.items()})
            if lg:
                lg.log_metrics({**floats, "epoch": self.current_epoch}, step=step)

    def on_fit_start(self) -> None:
        for lg in self.member_loggers:
            if lg:
                lg.save()  # the hyperparameters on disk as training starts, as Lightning does

    def on_train_epoch_end(self) -> None:
        self._publish([{"train/loss": mean.compute()} for mean in self.train_loss])
        for mean in self.train_loss:
            mean.reset()

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> None:
        x, y = batch
        logits = self(x.repeat(1, self.k, 1, 1))  # every member sees the same images
        for k, loss in enumerate(self._losses(logits, y)):
            self.eval_loss[split][k].update(loss, weight=len(y))
            self.eval_metrics[split][k].update(logits[:, k], y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, "test")

    def _eval_end(self, split: str) -> None:
        pairs = list(zip(self.eval_metrics[split], self.eval_loss[split], strict=True))
        self._publish([{**mc.compute(), f"{split}/loss": lm.compute()} for mc, lm in pairs],
                      prog_bar=split == "val")
        for mc, lm in pairs:
            mc.reset()
            lm.reset()

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def configure_optimizers(self) -> dict[str, Any]:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        opt, sched = build_optimizer(self.model.parameters(), self.tc, total, self.trainer.max_epochs or 1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _generators(self) -> list[torch.Generator]:
        return [g for g in getattr(self.model, "dropout_generators", ()) if g is not None]  # FireNet's: None

    def setup(self, stage: str) -> None:
        """Each member's dropout generator onto the training device, seeded from its CPU stream."""
        dev = self.trainer.strategy.root_device
        gens = self._generators()
        if dev.type != "cpu" and gens and gens[0].device.type == "cpu":
            self.model.dropout_generators = [
                torch.Generator(device=dev).manual_seed(int(torch.randint(2**62, (), generator=g)))
                for g in gens]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A resumed group's dropout streams and which members have ended."""
        checkpoint["dropout_rng"] = [g.get_state() for g in self._generators()]
        checkpoint["members"] = {"outcome": self.outcome, "frozen": self.frozen}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        for g, state in zip(self._generators(), checkpoint.get("dropout_rng") or (), strict=False):
            g.set_state(state)
        members = checkpoint.get("members") or {}
        self.outcome = [tuple(o) if o else None for o in members.get("outcome", self.outcome)]
        self.frozen = list(members.get("frozen", self.frozen))
        for k, ended in enumerate(self.outcome):
            if ended:
                self.live[k] = False
                if self.frozen[k]:
                    self.model.freeze(k)
