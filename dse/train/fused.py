"""Train K design points (job, seed) as one :class:`~dse.model.fused.FusedFireNet` through Lightning.

Each member keeps what makes it its own run: its seed's initialisation (built exactly as
``dse-train`` builds it), its seed's batch order and augmentation (one index stream per member over
the one copy of the data), its own loss (summed for one backward), metrics, CSV log, divergence
check and Optuna pruning. A member that diverges or is pruned is frozen (zeroed, masked) and
recorded; the others go on. Every member's row is built like :func:`dse.train.run.train_once`'s,
so the store cannot tell a fused run from a separate one except by its ``fused`` mark in the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf

from dse.data import build_datamodule
from dse.data.tensor import keyed_seed
from dse.errors import first_line
from dse.export.latency import latency_columns
from dse.metrics import LOGGED, REGISTRY
from dse.model.fused import FusedFireNet
from dse.model.net import FireNet, build_model
from dse.store import utcnow_iso
from dse.train.divergence import dead, nonfinite
from dse.train.loggers import build_logger, log_uri
from dse.train.module import accuracy_metrics, build_optimizer
from dse.train.run import (
    EpochTimer,
    base_record,
    device_name,
    device_settings,
    final_checkpoint,
    keep_traceback,
    make_trainer,
)
from dse.validate import IN_MEMORY

log = logging.getLogger("dse.train")
DROPOUT_STREAM = -1  # keyed_seed(seed, DROPOUT_STREAM) seeds a member's dropout generator


@dataclass
class Member:
    """One (design point, seed) to train in a group, and what its row needs."""

    cfg: DictConfig
    report: Any
    seed: int
    out_dir: Path
    overrides: str = ""
    run_id: str | None = None
    trial: Any = None  # dse.sweep.pruning.JobTrial of an Optuna job, or None
    monitor: str = REGISTRY["val_top1"].key  # the metric its pruner watches
    status: str = "ok"
    reason: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0


class StackedBatches:
    """K members' training batches as one: images stacked on channels, labels ``[N, K]``."""

    def __init__(self, streams: list[Any]) -> None:
        self.streams = streams

    def __len__(self) -> int:
        return len(self.streams[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batches in zip(*self.streams, strict=True):
            yield torch.cat([x for x, _ in batches], 1), torch.stack([y for _, y in batches], 1)


class FusedData(L.LightningDataModule):
    """One in-memory data module, one training stream per member seed; eval batches are shared."""

    def __init__(self, cfg: DictConfig, seeds: list[int]) -> None:
        super().__init__()
        tc = cfg.trainer
        self.dm, self.seeds = build_datamodule(cfg, tc.batch_size, tc.eval_batch_size), seeds

    def setup(self, stage: str | None = None) -> None:
        self.dm.trainer = self.trainer
        self.dm.setup(stage)

    def train_dataloader(self) -> StackedBatches:
        return StackedBatches([self.dm.train_batches(s) for s in self.seeds])

    def val_dataloader(self) -> Any:
        return self.dm.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.dm.test_dataloader()


def member_nets(members: list[Member]) -> list[FireNet]:
    """Each member's network, initialised as its separate run initialises it (seed, then build)."""
    nets = []
    for m in members:
        L.seed_everything(m.seed, workers=True, verbose=False)
        nets.append(build_model(m.cfg.model))
    return nets


class FusedClassifier(L.LightningModule):
    """The fused network, its K losses, K sets of metrics, and the freezing of finished members."""

    def __init__(self, members: list[Member], loggers: list[Any]) -> None:
        super().__init__()
        self.members, self.member_loggers = members, loggers
        nets = member_nets(members)
        self.model = FusedFireNet([n.spec for n in nets])
        for k, net in enumerate(nets):
            self.model.load_member(k, net.state_dict())
        cfg = members[0].cfg
        self.tc, self.k, classes = cfg.trainer, len(members), int(cfg.model.num_classes)
        self.val_metrics = torch.nn.ModuleList(accuracy_metrics(classes, "val/") for _ in members)
        self.test_metrics = torch.nn.ModuleList(accuracy_metrics(classes, "test/") for _ in members)
        self.check_every, self.chance_epochs = int(self.tc.log_every_n_steps), int(self.tc.chance_epochs)
        self.channels_last = False
        self._sums: dict[str, torch.Tensor] = {}
        self.first_loss: list[float | None] = [None] * self.k

    def on_fit_start(self) -> None:
        dev = self.device
        self.model.dropout_generators = [
            torch.Generator(device=dev).manual_seed(keyed_seed(m.seed, DROPOUT_STREAM))
            for m in self.members]
        for m, lg in zip(self.members, self.member_loggers, strict=True):
            if lg:
                lg.log_hyperparams({"cfg": OmegaConf.to_container(m.cfg, resolve=True)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def _losses(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
        """Each member's mean cross-entropy over its batch, ``[K]``."""
        return F.cross_entropy(logits.permute(0, 2, 1), y, reduction="none",
                               label_smoothing=smoothing).mean(0)

    def _add(self, key: str, value: torch.Tensor) -> None:
        self._sums[key] = self._sums.get(key, 0) + value

    def _take(self, key: str) -> torch.Tensor:
        return self._sums.pop(key)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        losses = self._losses(self(x), y, float(self.tc.label_smoothing))
        self.last_loss = losses.detach()
        self._add("train_loss", self.last_loss)
        self._add("train_steps", torch.ones((), device=x.device))
        return torch.where(self.model.active, losses, torch.zeros_like(losses)).sum()

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.model.mask_grads()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx % self.check_every and batch_idx + 1 != self.trainer.num_training_batches:
            return
        for k, loss in enumerate(self.last_loss.tolist()):  # one host sync for all members
            if self.model.active[k] and (why := nonfinite(loss, self.global_step, self.current_epoch)):
                self.stop(k, "diverged", why)

    def stop(self, k: int, status: str, reason: str) -> None:
        """Freeze member k with its final status; the fit ends when no member is left."""
        m = self.members[k]
        m.status, m.reason, m.epochs = status, reason, self.current_epoch + 1
        log.info("fused member %d (%s seed %d): %s: %s", k, m.cfg.model.name, m.seed, status, reason)
        self.model.freeze(k, self.trainer.optimizers[0] if self.trainer.optimizers else None)
        if not bool(self.model.active.any()):
            self.trainer.should_stop = True

    def _eval_step(self, batch: tuple[torch.Tensor, torch.Tensor], metrics: torch.nn.ModuleList,
                   prefix: str) -> None:
        x, y = batch
        logits = self(x.repeat(1, self.k, 1, 1))
        self._add(f"{prefix}/loss", self._losses(logits, y[:, None].expand(-1, self.k)) * len(y))
        self._add(f"{prefix}/n", torch.tensor(float(len(y)), device=x.device))
        for k, mc in enumerate(metrics):
            mc.update(logits[:, k], y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, self.val_metrics, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
        self._eval_step(batch, self.test_metrics, "test")

    def _eval_end(self, metrics: torch.nn.ModuleList, prefix: str) -> list[dict[str, float]]:
        loss = (self._take(f"{prefix}/loss") / self._take(f"{prefix}/n")).tolist()
        out = []
        for k, mc in enumerate(metrics):
            out.append({**{n: float(v) for n, v in mc.compute().items()}, f"{prefix}/loss": loss[k]})
            mc.reset()
        return out

    def on_validation_epoch_end(self) -> None:
        results = self._eval_end(self.val_metrics, "val")
        if self.trainer.sanity_checking:
            return
        train = self._sums.get("train_loss")
        steps = self._sums.get("train_steps")
        mean = (train / steps).tolist() if train is not None else [None] * self.k
        for k, m in enumerate(self.members):
            if not self.model.active[k]:
                continue
            m.metrics.update(results[k])
            if mean[k] is not None:
                m.metrics["train/loss"] = mean[k]
            self._log(k, results[k])
            self._check(k, results[k], mean[k])

    def _check(self, k: int, val: dict[str, float], train_loss: float | None) -> None:
        """The dead-network rule and the member's pruner, after its validation epoch."""
        m = self.members[k]
        if not torch.isfinite(torch.tensor(val["val/loss"])):
            return self.stop(k, "diverged", f"non-finite validation loss at epoch {self.current_epoch}")
        if train_loss is not None:
            self.first_loss[k] = self.first_loss[k] if self.first_loss[k] is not None else train_loss
            why = dead(val["val/top1"], self.first_loss[k], train_loss, self.current_epoch,
                       int(m.cfg.data.num_classes), self.chance_epochs)
            if why:
                return self.stop(k, "diverged", why)
        if m.trial is not None and m.monitor in val:
            m.trial.report(val[m.monitor], self.current_epoch)
            if m.trial.should_prune():
                self.stop(k, "pruned", f"Trial was pruned at epoch {self.current_epoch}.")
        return None

    def on_train_epoch_end(self) -> None:
        train, steps = self._sums.pop("train_loss", None), self._sums.pop("train_steps", None)
        if train is None:
            return
        for k, loss in enumerate((train / steps).tolist()):
            if self.model.active[k]:
                self.members[k].metrics["train/loss"] = loss
                self._log(k, {"train/loss": loss})

    def on_test_epoch_end(self) -> None:
        for k, res in enumerate(self._eval_end(self.test_metrics, "test")):
            if self.model.active[k]:
                self.members[k].metrics.update(res)
                self._log(k, res)

    def _log(self, k: int, metrics: dict[str, float]) -> None:
        lg = self.member_loggers[k]
        if lg:
            # Lightning's own step for epoch-end logs: the last step during fit, the count in test
            step = self.global_step if self.trainer.testing else max(0, self.global_step - 1)
            lg.log_metrics({**metrics, "epoch": self.current_epoch}, step=step)

    def configure_optimizers(self) -> dict[str, Any]:
        total = max(1, int(self.trainer.estimated_stepping_batches))
        opt, sched = build_optimizer(self.model.parameters(), self.tc, total,
                                     self.trainer.max_epochs or 1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


MEMBER_KEYS = ("name", "base_e", "incr_e", "freq", "sr", "pct3x3", "bypass", "dropout")


def fusable(cfg: DictConfig) -> str | None:
    """Why this job cannot train fused (it trains on its own), or None."""
    tc = cfg.trainer
    reasons = [(cfg.data.name not in IN_MEMORY, f"data={cfg.data.name} is not held in memory"),
               (str(tc.devices) not in ("1", "auto"), f"trainer.devices={tc.devices}"),
               (bool(tc.compile), "trainer.compile=true"),
               ("Wandb" in str((cfg.logger or {}).get("_target_", "")),
                "W&B keeps one run per process")]
    return next((why for bad, why in reasons if bad), None)


def group_key(cfg: DictConfig, spec_key: tuple) -> tuple:
    """Jobs with equal keys can share a fused network: the same macro layout, dataset, trainer
    settings and epochs; only the member keys (:data:`MEMBER_KEYS`) and the seed may differ."""
    from dse.store import config_hash

    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["model"] = {k: v for k, v in plain["model"].items() if k not in MEMBER_KEYS}
    return spec_key, config_hash(plain)


def _row(m: Member, trainer: L.Trainer | None, timer: EpochTimer, seconds: float,
         accelerator: str, lg: Any) -> dict[str, Any]:
    """Member m's store row, as :func:`dse.train.run.train_once` would have written it."""
    rec = base_record(m.cfg, m.report, m.seed, m.overrides, m.run_id)
    rec.update(device=device_name(accelerator), log_uri=log_uri(lg) if lg else "")
    if m.status == "pruned":  # a separate run's fit raises TrialPruned: nothing measured is kept
        return {**rec, "status": "pruned", "error": m.reason, "epochs": 0}
    rec["epochs"] = m.epochs if m.status == "diverged" else trainer.current_epoch
    rec["train_seconds"] = round(seconds, 3)
    rec["images_per_s"] = timer.images / timer.seconds if timer.seconds else None
    rec.update({key: m.metrics.get(REGISTRY[key].key) for key in LOGGED})
    rec.update(status=m.status, error=m.reason)
    return rec


def save_member(m: Member, net: FireNet, trainer: L.Trainer, run_id: str) -> None:
    """Member m's final weights where its separate run puts them, in the checkpoint contract
    (docs/CONTRACTS.md: ``hyper_parameters.cfg``, ``model.``-prefixed weights, ``run_id``), so
    ``FireClassifier.load_from_checkpoint``, dse-compress and dse-export read it alike. Without
    optimizer state: a fused member is never resumed on its own."""
    path = final_checkpoint(m.cfg, m.out_dir, m.seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"cfg": OmegaConf.to_container(m.cfg, resolve=True)},
                "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                "run_id": run_id, "epoch": trainer.current_epoch, "global_step": trainer.global_step,
                "pytorch-lightning_version": L.__version__}, path)


def _fit(trainer: L.Trainer, module: FusedClassifier, data: FusedData, timer: EpochTimer) -> None:
    trainer.fit(module, datamodule=data)
    if bool(module.model.active.any()) and timer.last_val_epoch != trainer.current_epoch - 1:
        trainer.validate(module, datamodule=data, verbose=False)  # the final weights' accuracy
    if bool(module.model.active.any()) and module.tc.test:
        trainer.test(module, datamodule=data, verbose=False)


def train_group(members: list[Member], callbacks: tuple[Callback, ...] = ()) -> list[dict[str, Any]]:
    """Train the members (one :func:`group_key`) as one fused network; a row per member,
    whatever happened: a failure of the group is every member's ``failed`` row."""
    cfg = members[0].cfg
    accelerator, precision, channels_last = device_settings(cfg.trainer)
    loggers = [build_logger(m.cfg, m.out_dir, m.seed) for m in members]
    timer, trainer, t0 = EpochTimer(), None, time.perf_counter()
    try:
        module = FusedClassifier(members, loggers)
        module.channels_last = channels_last
        if channels_last:
            module.model.to(memory_format=torch.channels_last)
        trainer = make_trainer(cfg, accelerator, precision, members[0].out_dir, members[0].seed,
                               [timer, *callbacks], logger=False)
        _fit(trainer, module, FusedData(cfg, [m.seed for m in members]), timer)
    except SystemExit:
        if trainer is not None and trainer.interrupted:  # Lightning turns Ctrl-C into exit(1)
            raise KeyboardInterrupt from None
        raise
    except Exception as e:  # recorded for every member, never lost: the sweep goes on
        log.error("fused group of %d failed: %s", len(members), first_line(e, typed=True))
        for m in members:
            m.status, m.reason = "failed", first_line(e, typed=True)
            keep_traceback(m.out_dir / f"error_seed{m.seed}.txt")
    seconds = time.perf_counter() - t0
    rows = []
    for k, (m, lg) in enumerate(zip(members, loggers, strict=True)):
        if m.status == "failed":
            rec = {**base_record(m.cfg, m.report, m.seed, m.overrides, m.run_id),
                   "error": m.reason, "epochs": 0}
        else:
            rec = _row(m, trainer, timer, seconds, accelerator, lg)
            if m.cfg.trainer.latency or m.cfg.trainer.checkpoint:  # the member as its own network
                net = build_model(m.cfg.model)
                net.load_state_dict(module.model.member_state(k))
                rec.update(latency_columns(net, m.cfg, rec["status"]))
                if m.cfg.trainer.checkpoint:
                    save_member(m, net, trainer, rec["run_id"])
        if lg:
            lg.finalize("success")
        rec["finished_at"] = utcnow_iso()
        rows.append(rec)
    return rows
