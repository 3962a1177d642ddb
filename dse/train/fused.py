"""The one training body: K >= 1 (design point, seed) members as one fused network; a single
``dse-train`` run is a group of one.

Each member keeps what makes it its own run: its seed's initialisation and dropout stream (seed,
build, then a generator continuing the global stream: what a separate run's dropout would draw),
its seed's batch order and augmentation (one index stream per member over the one copy of the
data), its own loss, metrics, log, divergence check and Optuna pruning. A member that diverges or
is pruned is frozen and recorded; the others go on. So a member's row is its separate run's (bit
for bit for a group of one on the CPU, within fp rounding for K > 1).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Iterator
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
from dse.errors import ConfigError, first_line
from dse.latency import latency_columns
from dse.metrics import LOGGED, REGISTRY
from dse.model.fused import FusedFireNet
from dse.model.net import build_model
from dse.store import RunRecord, utcnow_iso
from dse.store.record import slurm_job
from dse.train.checkpoints import AtomicCheckpointIO, Resume
from dse.train.divergence import DivergenceMonitor
from dse.train.loggers import build_logger, log_uri
from dse.train.module import FireClassifier
from dse.validate import switch

log = logging.getLogger("dse.train")
CPU_BF16_ENV = "DSE_CPU_BF16"


def device_settings(tc: Any) -> tuple[str, str, bool]:
    """(accelerator, precision, channels_last). ``auto``: bf16-mixed + channels_last on a GPU and on
    a CPU that runs bf16 natively (:func:`native_cpu_bf16`), fp32 contiguous elsewhere; explicit
    values win. The config hash keeps ``auto``: the row's ``precision`` says what ran.

    ``trainer.accelerator=gpu`` without a visible GPU is refused, not trained on the CPU: timings
    and the stored ``device`` would silently describe another machine than the one asked for.
    """
    if tc.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", f"{tc.accelerator} asked for, but no GPU is "
                                                 "visible here (use auto or cpu)")
    gpu = torch.cuda.is_available() and tc.accelerator != "cpu"
    fast = gpu or native_cpu_bf16()
    precision = tc.precision
    if precision == "auto" and not fast:
        precision = "32-true"
    elif precision == "auto":
        precision = "16-mixed" if gpu and not torch.cuda.is_bf16_supported() else "bf16-mixed"
    cl = switch("trainer.channels_last", tc.channels_last)
    return "gpu" if gpu else "cpu", precision, fast if cl is None else cl


def native_cpu_bf16() -> bool:
    """Whether this CPU has bf16 in hardware (AMX or AVX512-BF16). There bf16 autocast with
    channels_last trains about 2x faster than fp32 (docs/BENCHMARKS.md); elsewhere oneDNN emulates
    bf16 and is slower than fp32. torch has no public query, hence its private ``torch.cpu`` probes
    (absent ones read as False). ``DSE_CPU_BF16=0|1`` overrides the probe (tests take both paths)."""
    if os.environ.get(CPU_BF16_ENV) in ("0", "1"):
        return os.environ[CPU_BF16_ENV] == "1"
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def device_name(accelerator: str) -> str:
    if accelerator == "gpu":
        return torch.cuda.get_device_name()
    bf16 = "native" if native_cpu_bf16() else "emulated"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads, bf16 {bf16})"


class EpochTimer(Callback):
    """Training time without validation, and which epoch was validated last."""

    def __init__(self) -> None:
        self.seconds, self.images, self.last_val_epoch, self._t0 = 0.0, 0, -1, None

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.images += len(batch[1])

    def _lap(self) -> None:
        if self._t0 is not None:
            self.seconds += time.perf_counter() - self._t0
            self._t0 = None

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.last_val_epoch = trainer.current_epoch

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._lap()


def _progress_bar(tc: Any) -> bool:
    """``auto``: Lightning's per-epoch bar for a single run on a terminal; a sweep prints one line
    per finished point instead (dse.train.progress), which the bars would break up."""
    on = switch("trainer.progress_bar", tc.progress_bar)
    return sys.stdout.isatty() and not _in_multirun() if on is None else on


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def make_trainer(cfg: DictConfig, accelerator: str, precision: str, out_dir: Path,
                 callbacks: list[Callback]) -> L.Trainer:
    """The Lightning Trainer ``cfg.trainer`` describes; the module writes each member's logger."""
    tc = cfg.trainer
    return L.Trainer(
        accelerator=accelerator, devices=tc.devices, precision=precision,
        max_epochs=tc.max_epochs, max_steps=tc.max_steps, deterministic=tc.deterministic,
        check_val_every_n_epoch=tc.val_every, num_sanity_val_steps=0,
        log_every_n_steps=tc.log_every_n_steps, enable_model_summary=False,
        enable_progress_bar=_progress_bar(tc),
        enable_checkpointing=any(isinstance(cb, Checkpoint) for cb in callbacks),
        logger=False, callbacks=callbacks, default_root_dir=out_dir, plugins=[AtomicCheckpointIO()],
    )


def base_record(cfg: DictConfig, report: Any, seed: int, overrides: str,
                run_id: str | None = None) -> dict[str, Any]:
    """The row as known before training: the config's columns plus the model's analytic counts.

    ``failed`` until training says otherwise, so a run killed mid-way never reads as ok.
    """
    given = {"run_id": run_id} if run_id else {}
    return RunRecord.from_config(cfg, seed=seed, status="failed", params=report.params,
                                 size_bytes=report.size_bytes_fp32, macs=report.macs,
                                 overrides=overrides, slurm_job=slurm_job(), **given).to_dict()


def final_checkpoint(cfg: DictConfig, out_dir: Path, seed: int) -> Path:
    """Where ``trainer.checkpoint=true`` puts a run's final weights (docs/CONTRACTS.md)."""
    return out_dir / "checkpoints" / ("last.ckpt" if cfg.study.seeds == 1 else f"seed{seed}.ckpt")


def keep_traceback(path: Path) -> None:
    """Best effort: the row carries the error; the full traceback beside the run is a help that a
    full or read-only run folder must not turn into a second failure that loses the row."""
    try:
        path.write_text(traceback.format_exc())
    except OSError as e:
        log.warning("traceback not kept (%s): %s", path, first_line(e))


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


def member_net(members: list[Member]) -> FusedFireNet:
    """The members' networks as one, each initialised as its separate run initialises it (seed,
    then build) and drawing dropout from a copy of the global stream right after its build, which
    is what a separate run's dropout would draw from (nothing else draws from it in training)."""
    nets, generators = [], []
    for m in members:
        L.seed_everything(m.seed, workers=True, verbose=False)
        nets.append(build_model(m.cfg.model))
        generators.append(torch.Generator().set_state(torch.get_rng_state()))
    return FusedFireNet.of(nets, generators)


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


def _module(members: list[Member], loggers: list[Any], channels_last: bool) -> FireClassifier:
    cfg = members[0].cfg
    module = FireClassifier(OmegaConf.to_container(cfg, resolve=True), member_net(members), loggers)
    module.channels_last = channels_last
    if channels_last:
        module.model.to(memory_format=torch.channels_last)
    if cfg.trainer.compile:
        module.model = torch.compile(module.model)
    return module


def group_id(members: list[Member]) -> str | None:
    """The key of a group's resume folder (None for a group of one: its run's own folder): a rerun
    that groups the same (point, seed) members resumes it."""
    from dse.store import config_hash

    return config_hash({"members": [[config_hash(m.cfg), m.seed] for m in members]}) \
        if len(members) > 1 else None


def _data(members: list[Member], monitor: DivergenceMonitor) -> tuple[Any, Resume | None]:
    """A group of one trains on its run's own data module (any dataset), a group on one in-memory
    copy with a stream per member; either resumes from its newest resume checkpoint."""
    cfg, tc = members[0].cfg, members[0].cfg.trainer
    if len(members) > 1:
        dm = FusedData(cfg, [m.seed for m in members])
        data = dm.dm
    else:
        dm = data = build_datamodule(cfg, tc.batch_size, tc.eval_batch_size, members[0].seed)
    resume = Resume.for_run(cfg, members[0].seed, monitor, group_id(members))
    if resume is not None:
        data.position = resume.state.position  # each epoch's batches from where the run is
        if resume.ckpt is not None:
            log.info("resuming %s seed %d from %s", resume.folder.parent.name, members[0].seed,
                     resume.ckpt)
    return dm, resume


def _fit(trainer: L.Trainer, module: FireClassifier, dm: Any, timer: EpochTimer,
         resume: Resume | None) -> None:
    """Fit (from the resume checkpoint, if any), validate the final weights, test."""
    with resume.held if resume else contextlib.nullcontext():  # a stop signal waits for a whole step
        trainer.fit(module, datamodule=dm, ckpt_path=resume.ckpt if resume else None,
                    weights_only=True)
    if bool(module.live.any()) and timer.last_val_epoch != trainer.current_epoch - 1:
        trainer.validate(module, datamodule=dm, verbose=False)  # the final weights' accuracy
    if bool(module.live.any()) and module.tc["test"]:
        trainer.test(module, datamodule=dm, verbose=False)


def _trained(rec: dict[str, Any], k: int, module: FireClassifier, trainer: L.Trainer,
             timer: EpochTimer, seconds: float) -> None:
    """Member k's measured columns and status, as its fit left them."""
    status, reason, epochs = module.outcome[k] or ("ok", None, 0)
    if status == "pruned":  # a separate run's fit raises TrialPruned: nothing measured is kept
        rec.update(status="pruned", error=reason, epochs=0)
        return
    rec["epochs"] = epochs if module.frozen[k] else trainer.current_epoch
    rec["train_seconds"] = round(seconds, 3)
    rec["images_per_s"] = timer.images / timer.seconds if timer.seconds else None
    rec.update({key: module.results[k].get(REGISTRY[key].key) for key in LOGGED})
    rec.update(status=status, error=reason)


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
            keep_traceback(m.out_dir / f"error_seed{m.seed}.txt")
        rec["epochs"] = 0
    if type(e).__name__ != "TrialPruned":
        log.error("run failed: %s", first_line(e, typed=True))


def train_group(members: list[Member], callbacks: tuple[Callback, ...] = ()) -> list[dict[str, Any]]:
    """Train the members (one :func:`group_key`) as one network; a complete store row per member,
    whatever happened: a failure of the group is every member's ``failed`` row."""
    from dse.sweep.pruning import member_pruning

    cfg, t0 = members[0].cfg, time.perf_counter()
    tc = cfg.trainer
    rows = [base_record(m.cfg, m.report, m.seed, m.overrides, m.run_id) for m in members]
    accelerator, precision, channels_last = device_settings(tc)
    monitor = DivergenceMonitor(cfg.data.num_classes, tc.chance_epochs, tc.log_every_n_steps)
    timer = EpochTimer()
    trainer: L.Trainer | None = None
    module: FireClassifier | None = None
    loggers = [build_logger(m.cfg, m.out_dir, m.seed) for m in members]
    for rec, lg, m in zip(rows, loggers, members, strict=True):
        rec.update(device=device_name(accelerator), log_uri=log_uri(lg), precision=precision,
                   channels_last=channels_last)
        if lg:
            lg.log_hyperparams({"cfg": OmegaConf.to_container(m.cfg, resolve=True)})
    try:
        module = _module(members, loggers, channels_last)
        dm, resume = _data(members, monitor)
        pruning = member_pruning([m.handoff for m in members])
        trainer = make_trainer(cfg, accelerator, precision, members[0].out_dir,
                               [monitor, timer, *callbacks, *([pruning] if pruning else ()),
                                *(resume.callbacks if resume else ())])
        _fit(trainer, module, dm, timer, resume)
        for k, rec in enumerate(rows):
            _trained(rec, k, module, trainer, timer, time.perf_counter() - t0)
            if resume and resume.ckpt:
                rec["resumed_from_epoch"] = resume.state.resumed_from
            if rec["status"] != "pruned" and (tc.latency or tc.checkpoint):  # the member alone
                net = build_model(members[k].cfg.model)
                net.load_state_dict(module.model.member_state(k))
                rec.update(latency_columns(net, members[k].cfg, rec["status"]))  # trainer.latency=true
                if tc.checkpoint:
                    save_checkpoint(final_checkpoint(members[k].cfg, members[k].out_dir, members[k].seed),
                                    OmegaConf.to_container(members[k].cfg, resolve=True), net,
                                    rec["run_id"], trainer.current_epoch, trainer.global_step)
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
