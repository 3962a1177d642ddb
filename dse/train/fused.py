"""The one training body: K >= 1 (design point, seed) members as one fused network, a single run a
group of one. Each member keeps its seed's initialisation, dropout, batch order and augmentation, its
loss, metrics, log, divergence check and pruning; one that ends is frozen while the others go on."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint
from omegaconf import DictConfig, OmegaConf

from dse.checkpoint import save_checkpoint
from dse.data import build_datamodule
from dse.data.sources import IN_MEMORY
from dse.errors import first_line
from dse.latency import latency_columns
from dse.metrics import LOGGED, REGISTRY
from dse.model.net import FusedFireNet, build_model, macro_key
from dse.model.spec import build_spec
from dse.store import RunRecord, config_hash, utcnow_iso
from dse.store.record import slurm_job
from dse.text import duration
from dse.train.checkpoints import AtomicCheckpointIO, Resume
from dse.train.checks import Device, device_name, device_settings
from dse.train.divergence import DivergenceMonitor
from dse.train.loggers import build_logger, log_uri
from dse.train.module import FireClassifier
from dse.validate import SWITCHES

log = logging.getLogger("dse.train")


def now() -> float:
    """``perf_counter`` once queued GPU work is done, so the reading includes it."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


class EpochTimer(Callback):
    """Each epoch's training seconds (validation cut out), the images trained, the last validated epoch;
    ``log_epochs``: a line per epoch (rate, val top-1, ETA) for where no bar shows (piped, swept, Slurm)."""

    def __init__(self, log_epochs: bool = False) -> None:
        self.epoch_seconds: list[float] = []
        self.images, self.last_val_epoch, self.fit_t0 = 0, -1, 0.0
        self.log_epochs, self._t0, self._first = log_epochs, None, 0

    @property
    def seconds(self) -> float:
        return sum(self.epoch_seconds)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_t0, self._first = now(), trainer.current_epoch

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.images += len(batch[1])

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._t0 is not None:
            self.epoch_seconds.append(now() - self._t0)
            self._t0 = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_val_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: Any) -> None:
        self.on_validation_start(trainer, pl_module)
        if not self.log_epochs:
            return
        epoch, total = trainer.current_epoch + 1, trainer.max_epochs
        parts = [f"epoch {epoch}/{total}" if total and total > 0 else f"epoch {epoch}"]
        if self.seconds:
            parts.append(f"{self.images / self.seconds:.0f} img/s")
        key = REGISTRY["val_top1"].key
        if vals := [r[key] for r in pl_module.results if key in r]:
            parts.append("val_top1 " + " ".join(f"{v:.3f}" for v in vals))
        if total and total > epoch:
            per_epoch = (time.perf_counter() - self.fit_t0) / (epoch - self._first)
            parts.append(f"ETA {duration(per_epoch * (total - epoch))}")
        log.info("%s", " · ".join(parts))


def make_trainer(tc: Any, device: Device, out_dir: Path, callbacks: list[Callback]) -> L.Trainer:
    """The Lightning Trainer ``trainer.*`` describes; the module writes each member's logger. The bar
    (``auto``) for a single run on a terminal: a sweep's line per finished point would be broken up."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    bar = SWITCHES[str(tc.progress_bar).lower()]  # checked by the entry point
    multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    return L.Trainer(
        accelerator=device[0], devices=tc.devices, precision=device[1],
        max_epochs=tc.max_epochs, max_steps=tc.max_steps, deterministic=tc.deterministic,
        check_val_every_n_epoch=tc.val_every, num_sanity_val_steps=0,
        log_every_n_steps=tc.log_every_n_steps, enable_model_summary=False,
        enable_progress_bar=sys.stdout.isatty() and not multirun if bar is None else bar,
        enable_checkpointing=any(isinstance(cb, Checkpoint) for cb in callbacks),
        logger=False, callbacks=callbacks, default_root_dir=out_dir, plugins=[AtomicCheckpointIO()],
    )


@dataclass
class Member:
    """One (design point, seed) to train, and what its row needs."""

    cfg: DictConfig
    report: Any
    seed: int
    out_dir: Path
    overrides: str = ""
    run_id: str | None = None
    handoff: Any = None  # dse.sweep.handoff.Handoff of an Optuna job, or None

    @functools.cached_property
    def plain(self) -> dict[str, Any]:
        """The resolved config as plain data, converted once for the row, the logger and the files."""
        return OmegaConf.to_container(self.cfg, resolve=True)

    def row(self) -> dict[str, Any]:
        """The row as known before training, ``failed`` until training says otherwise."""
        r, given = self.report, {"run_id": self.run_id} if self.run_id else {}
        return RunRecord.from_config(self.plain, seed=self.seed, status="failed", params=r.params,
                                     size_bytes=r.size_bytes_fp32, macs=r.macs, overrides=self.overrides,
                                     slurm_job=slurm_job(), **given).to_dict()


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


def group_key(cfg: DictConfig) -> tuple:
    """Jobs with equal keys can share a fused network: only :data:`MEMBER_KEYS` and the seed differ."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain["model"] = {k: v for k, v in plain["model"].items() if k not in MEMBER_KEYS}
    return macro_key(build_spec(cfg.model)), config_hash(plain)


def _module(members: list[Member], loggers: list[Any], channels_last: bool) -> FireClassifier:
    """The members' networks as one, each seeded then built as its separate run is, its dropout
    drawing from a copy of the global stream right after its build (what a separate run draws)."""
    nets, generators = [], []
    for m in members:
        L.seed_everything(m.seed, workers=True, verbose=False)
        nets.append(build_model(m.cfg.model))
        generators.append(torch.Generator().set_state(torch.get_rng_state()))
    module = FireClassifier(members[0].plain, FusedFireNet.of(nets, generators), loggers)
    module.channels_last = channels_last
    if channels_last:
        module.model.to(memory_format=torch.channels_last)
    if members[0].cfg.trainer.compile:
        module.model = torch.compile(module.model)
    return module


def group_id(members: list[Member]) -> str | None:
    """The key of a group's resume folder (None for a group of one: its run's own folder)."""
    return config_hash({"members": [[config_hash(m.plain), m.seed] for m in members]}) \
        if len(members) > 1 else None


def _data(members: list[Member], monitor: DivergenceMonitor) -> tuple[Any, Resume | None]:
    """The data module (a training stream per member) and the resume from the newest checkpoint."""
    cfg, tc = members[0].cfg, members[0].cfg.trainer
    seeds = [m.seed for m in members] if len(members) > 1 else members[0].seed  # fused: in memory
    dm = build_datamodule(cfg, tc.batch_size, tc.eval_batch_size, seeds)
    resume = Resume.for_run(cfg, members[0].seed, monitor, group_id(members))
    if resume is not None:
        dm.position = resume.state.position  # each epoch's batches from where the run is
        if resume.ckpt is not None:
            log.info("resuming %s seed %d from %s", resume.folder.parent.name, members[0].seed, resume.ckpt)
    return dm, resume


def _fit(trainer: L.Trainer, module: FireClassifier, dm: Any, timer: EpochTimer,
         resume: Resume | None) -> None:
    """Fit (from the resume checkpoint, if any), validate the final weights, test."""
    with resume.held if resume else contextlib.nullcontext():  # a stop signal waits for a whole step
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=resume.ckpt if resume else None, weights_only=True)
        except Exception as e:  # a group of one's pruning: recorded as a fused member's, with what ran
            if type(e).__name__ != "TrialPruned" or module.k > 1:
                raise
            module.stop(0, "pruned", str(e) or "pruned by the Optuna pruner")
    if bool(module.live.any()) and timer.last_val_epoch != trainer.current_epoch - 1:
        trainer.validate(module, datamodule=dm, verbose=False)  # the final weights' accuracy
    if bool(module.live.any()) and module.tc["test"]:
        trainer.test(module, datamodule=dm, verbose=False)


def _trained(rec: dict[str, Any], m: Member, k: int, module: FireClassifier, trainer: L.Trainer,
             timer: EpochTimer, seconds: float) -> None:
    """Member k's measured columns and status as its fit left them; its latency and final
    checkpoint (docs/CONTRACTS.md) from its own network."""
    status, reason, epochs = module.outcome[k] or ("ok", None, 0)
    rec["epochs"] = epochs if module.frozen[k] or status == "pruned" else trainer.current_epoch
    rec["train_seconds"] = round(seconds, 3)
    rec["images_per_s"] = timer.images / timer.seconds if timer.seconds else None
    rec.update({key: module.results[k].get(REGISTRY[key].key) for key in LOGGED})
    rec.update(status=status, error=reason)
    tc = m.cfg.trainer
    if status != "pruned" and (tc.latency or tc.checkpoint):  # a pruned run is no design point
        net = build_model(m.cfg.model)
        net.load_state_dict(module.model.member_state(k))
        rec.update(latency_columns(net, m.cfg, status))  # trainer.latency=true
        if tc.checkpoint:
            name = "last.ckpt" if m.cfg.study.seeds == 1 else f"seed{m.seed}.ckpt"
            save_checkpoint(m.out_dir / "checkpoints" / name, m.plain, net, rec["run_id"],
                            trainer.current_epoch, trainer.global_step)


def _failed(rows: list[dict[str, Any]], members: list[Member], module: FireClassifier | None,
            e: Exception) -> None:
    """An exception out of training: TrialPruned ends the members still training as ``pruned``;
    anything else is every member's ``failed`` row, its traceback kept beside each run."""
    for k, (rec, m) in enumerate(zip(rows, members, strict=True)):
        if type(e).__name__ == "TrialPruned":
            if module is None or module.outcome[k] is None:
                rec.update(status="pruned", error=str(e) or "pruned by the Optuna pruner")
        else:
            rec.update(status="failed", error=first_line(e, typed=True))
            path = m.out_dir / f"error_seed{m.seed}.txt"
            try:  # best effort: a full or read-only run folder must not lose the row too
                path.write_text(traceback.format_exc())
            except OSError as err:
                log.warning("traceback not kept (%s): %s", path, first_line(err))
        rec["epochs"] = 0
    if type(e).__name__ != "TrialPruned":
        log.error("run failed: %s", first_line(e, typed=True))


def train_group(members: list[Member], callbacks: tuple[Callback, ...] = (),
                device: Device | None = None) -> list[dict[str, Any]]:
    """Train the members (one :func:`group_key`) as one network; a complete store row per member,
    whatever happened. ``device``: the entry point's :func:`device_settings`, else found here."""
    from dse.sweep.pruning import member_pruning

    cfg, t0 = members[0].cfg, time.perf_counter()
    tc = cfg.trainer
    device = device or device_settings(tc)
    rows = [m.row() for m in members]
    monitor = DivergenceMonitor(cfg.data.num_classes, tc.chance_epochs, tc.log_every_n_steps)
    timer = EpochTimer(log_epochs=True)
    trainer: L.Trainer | None = None
    module: FireClassifier | None = None
    loggers = [build_logger(m.cfg, m.out_dir, m.seed) for m in members]
    for rec, lg, m in zip(rows, loggers, members, strict=True):
        rec.update(device=device_name(device[0]), log_uri=log_uri(lg), precision=device[1],
                   channels_last=device[2])
        if lg:
            lg.log_hyperparams({"cfg": m.plain})
    try:
        module = _module(members, loggers, device[2])
        dm, resume = _data(members, monitor)
        pruning = member_pruning([m.handoff for m in members])
        trainer = make_trainer(tc, device, members[0].out_dir,
                               [monitor, timer, *callbacks, *([pruning] if pruning else ()),
                                *((resume.state, resume.saver) if resume else ())])
        _fit(trainer, module, dm, timer, resume)
        for k, (rec, m) in enumerate(zip(rows, members, strict=True)):
            _trained(rec, m, k, module, trainer, timer, time.perf_counter() - t0)
            if resume and resume.ckpt:
                rec["resumed_from_epoch"] = resume.state.resumed_from
    except SystemExit:
        if trainer is not None and trainer.interrupted:  # Lightning turns Ctrl-C into exit(1)
            raise KeyboardInterrupt from None
        raise
    except Exception as e:  # recorded, never lost: the sweep goes on
        _failed(rows, members, module, e)
    for rec, lg in zip(rows, loggers, strict=True):
        if lg:
            lg.finalize("failed" if rec["status"] == "failed" else "success")
        rec["finished_at"] = utcnow_iso()
    return rows
