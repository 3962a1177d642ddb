"""One design point: validate, skip what the store has, claim the rest, train each seed, record, return.

This is the body of ``dse-train``'s Hydra task. It never raises for a training failure inside a
sweep: the failure becomes a ``failed`` (or ``diverged``/``pruned``) row and a returned status, so
one bad point cannot abort a multirun. Bad *input* is different: it raises
:class:`~dse.errors.ConfigError` before anything is trained or written.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import platform
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

from dse import TRAINING_SEMANTICS
from dse.data import build_datamodule
from dse.errors import ConfigError, first_line
from dse.export.latency import latency_columns
from dse.metrics import LOGGED, REGISTRY
from dse.store import ResultsStore, RunRecord, claims, config_hash, utcnow_iso
from dse.store.fallback import Kept, append_or_keep
from dse.store.record import slurm_job
from dse.train.checkpoints import AtomicCheckpointIO, Resume, check_folder, discard, resume_dir
from dse.train.divergence import DivergenceMonitor
from dse.train.loggers import build_logger, check_logger, log_uri
from dse.train.module import FireClassifier
from dse.train.summary import summarize
from dse.validate import STALE, switch, validate

log = logging.getLogger("dse.train")
_RUNS_OK = ("ok", "diverged")


def device_settings(tc: Any) -> tuple[str, str, bool]:
    """(accelerator, precision, channels_last): bf16 + channels_last on GPU, fp32 on CPU.

    ``trainer.accelerator=gpu`` without a visible GPU is refused, not trained on the CPU: timings
    and the stored ``device`` would silently describe another machine than the one asked for.
    """
    if tc.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", f"{tc.accelerator} asked for, but no GPU is "
                                                 "visible here (use auto or cpu)")
    gpu = torch.cuda.is_available() and tc.accelerator != "cpu"
    accelerator = "gpu" if gpu else "cpu"
    precision = tc.precision
    if precision == "auto":
        precision = ("bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed") if gpu else "32-true"
    cl = switch("trainer.channels_last", tc.channels_last)
    return accelerator, precision, gpu if cl is None else cl


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


class RunIdTag(Callback):
    """Writes the store row's ``run_id`` into checkpoints, so dse-compress links to the run exactly."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["run_id"] = self.run_id


def _progress_bar(tc: Any) -> bool:
    """``auto``: Lightning's per-epoch bar for a single run on a terminal; a sweep prints one line
    per finished point instead (dse.train.progress), which the bars would break up."""
    on = switch("trainer.progress_bar", tc.progress_bar)
    return sys.stdout.isatty() and not _in_multirun() if on is None else on


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def device_name(accelerator: str) -> str:
    if accelerator == "gpu":
        return torch.cuda.get_device_name()
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    v = metrics.get(key)
    return None if v is None else float(v)


def base_record(cfg: DictConfig, report: Any, seed: int, overrides: str,
                run_id: str | None = None) -> dict[str, Any]:
    """The row as known before training: the config's columns plus the model's analytic counts.

    ``failed`` until training says otherwise, so a run killed mid-way never reads as ok.
    """
    given = {"run_id": run_id} if run_id else {}
    return RunRecord.from_config(cfg, seed=seed, status="failed", params=report.params,
                                 size_bytes=report.size_bytes_fp32, macs=report.macs,
                                 overrides=overrides, slurm_job=slurm_job(), **given).to_dict()


def _module(cfg: DictConfig, channels_last: bool) -> FireClassifier:
    module = FireClassifier(OmegaConf.to_container(cfg, resolve=True))
    module.channels_last = channels_last
    if channels_last:
        module.model.to(memory_format=torch.channels_last)
    if cfg.trainer.compile:
        module.model = torch.compile(module.model)
    return module


def make_trainer(cfg: DictConfig, accelerator: str, precision: str, out_dir: Path, seed: int,
                 callbacks: list[Callback], logger: Any = None) -> L.Trainer:
    """The Lightning Trainer ``cfg.trainer`` describes; ``logger`` None: the run's own logger."""
    tc = cfg.trainer
    return L.Trainer(
        accelerator=accelerator, devices=tc.devices, precision=precision,
        max_epochs=tc.max_epochs, max_steps=tc.max_steps, deterministic=tc.deterministic,
        check_val_every_n_epoch=tc.val_every, num_sanity_val_steps=0,
        log_every_n_steps=tc.log_every_n_steps, enable_model_summary=False,
        enable_progress_bar=_progress_bar(tc),
        enable_checkpointing=any(isinstance(cb, Checkpoint) for cb in callbacks),
        logger=build_logger(cfg, out_dir, seed) if logger is None else logger,
        callbacks=callbacks, default_root_dir=out_dir, plugins=[AtomicCheckpointIO()],
    )


def _fit(rec: dict[str, Any], trainer: L.Trainer, module: FireClassifier, dm: Any,
         monitor: DivergenceMonitor, timer: EpochTimer, test: bool, resume: Resume | None) -> None:
    """Fit (from the resume checkpoint, if any), validate the final weights, test; fill the row's
    measured columns and status as they become known, so a failure part-way still records how far
    the run got."""
    t0 = time.perf_counter()
    with resume.held if resume else contextlib.nullcontext():  # a stop signal waits for a whole step
        trainer.fit(module, datamodule=dm, ckpt_path=resume.ckpt if resume else None,
                    weights_only=True)
    if resume and resume.ckpt:
        rec["resumed_from_epoch"] = resume.state.resumed_from
    rec["epochs"] = trainer.current_epoch
    if monitor.reason is None and timer.last_val_epoch != trainer.current_epoch - 1:
        trainer.validate(module, datamodule=dm, verbose=False)  # the final weights' accuracy
    rec["train_seconds"] = round(time.perf_counter() - t0, 3)
    rec["images_per_s"] = timer.images / timer.seconds if timer.seconds else None
    metrics = dict(trainer.callback_metrics)
    if monitor.reason is None and test:
        trainer.test(module, datamodule=dm, verbose=False)
        metrics.update(trainer.callback_metrics)
    rec.update({key: _metric(metrics, REGISTRY[key].key) for key in LOGGED})
    rec.update(status="diverged" if monitor.reason else "ok", error=monitor.reason)


def final_checkpoint(cfg: DictConfig, out_dir: Path, seed: int) -> Path:
    """Where ``trainer.checkpoint=true`` puts a run's final weights (docs/CONTRACTS.md)."""
    return out_dir / "checkpoints" / ("last.ckpt" if cfg.study.seeds == 1 else f"seed{seed}.ckpt")


def train_once(cfg: DictConfig, report: Any, seed: int, out_dir: Path, overrides: str = "",
               callbacks: tuple[Callback, ...] = (), run_id: str | None = None) -> dict[str, Any]:
    """Train one seed; returns the complete store row, whatever happened.

    ``run_id``: the id the row must have (the one its claim announced to waiting workers).
    """
    rec = base_record(cfg, report, seed, overrides, run_id)
    tc = cfg.trainer
    resume: Resume | None = None
    accelerator, precision, channels_last = device_settings(tc)
    rec["device"] = device_name(accelerator)
    monitor = DivergenceMonitor(cfg.data.num_classes, tc.chance_epochs, tc.log_every_n_steps)
    timer = EpochTimer()
    trainer: L.Trainer | None = None
    try:
        L.seed_everything(seed, workers=True, verbose=False)
        module = _module(cfg, channels_last)
        dm = build_datamodule(cfg, tc.batch_size, tc.eval_batch_size, seed)
        resume = Resume.for_run(cfg, seed, monitor)
        if resume is not None:
            dm.position = resume.state.position  # each epoch's batches from where the run is
            if resume.ckpt is not None:
                log.info("resuming %s seed %d from %s", rec["config_hash"], seed, resume.ckpt)
        trainer = make_trainer(cfg, accelerator, precision, out_dir, seed,
                           [monitor, timer, RunIdTag(rec["run_id"]), *callbacks,
                            *(resume.callbacks if resume else ())])
        rec["log_uri"] = log_uri(trainer.logger)
        _fit(rec, trainer, module, dm, monitor, timer, tc.test, resume)
        rec.update(latency_columns(module.model, cfg, rec["status"]))  # trainer.latency=true
        if tc.checkpoint:
            trainer.save_checkpoint(final_checkpoint(cfg, out_dir, seed))
    except SystemExit:
        if trainer is not None and trainer.interrupted:  # Lightning turns Ctrl-C into exit(1)
            raise KeyboardInterrupt from None
        raise
    except Exception as e:  # recorded, never lost: the sweep goes on
        if type(e).__name__ == "TrialPruned":
            rec.update(status="pruned", error=str(e) or "pruned by the Optuna pruner")
        else:
            rec.update(status="failed", error=first_line(e, typed=True))
            log.error("run failed: %s", rec["error"])
            keep_traceback(out_dir / f"error_seed{seed}.txt")
        rec["epochs"] = rec.get("epochs") or 0
    rec["finished_at"] = utcnow_iso()
    return rec


def keep_traceback(path: Path) -> None:
    """Best effort: the row carries the error; the full traceback beside the run is a help that a
    full or read-only run folder must not turn into a second failure that loses the row."""
    try:
        path.write_text(traceback.format_exc())
    except OSError as e:
        log.warning("traceback not kept (%s): %s", path, first_line(e))


def check_job(cfg: DictConfig) -> Any:
    """:func:`dse.validate.validate` and what it cannot check without torch: the GPU asked for,
    the logger's class and arguments and each seed's resume folder. dse-train's preflight runs it
    on every job before Hydra writes; each job runs it again before it trains. Returns the
    model's analytic report."""
    report = validate(cfg)
    device_settings(cfg.trainer)
    check_logger(OmegaConf.select(cfg, "logger"))
    for seed in range(cfg.seed, cfg.seed + cfg.study.seeds):
        check_folder(cfg, seed)
    return report


def check_stores(cfgs: list[DictConfig]) -> None:
    """Open (creating if new) each store these jobs append to: a URL that is garbage, a foreign
    file, a newer schema, a missing driver or an unreachable server is refused before training."""
    seen = set()
    for cfg in cfgs:
        key = (OmegaConf.select(cfg, "store.url"), str(cfg.paths.runs), str(cfg.study.name))
        if key not in seen:
            seen.add(key)
            ResultsStore.from_config(cfg).close()


@dataclass
class Point:
    """One design point being run: what each of its seeds needs to be fetched or trained."""

    cfg: DictConfig
    report: Any
    out_dir: Path
    overrides: str
    given_callbacks: tuple[Callback, ...]

    @functools.cached_property
    def chash(self) -> str:
        return config_hash(self.cfg)

    @functools.cached_property
    def callbacks(self) -> tuple[Callback, ...]:
        """The caller's callbacks, else the Optuna pruner of the trial this job runs (if any)."""
        if self.given_callbacks:
            return self.given_callbacks
        from dse.sweep.pruning import pruning_callback_from_env

        cb = pruning_callback_from_env()
        return (cb,) if cb is not None else ()

    def stored(self, store: ResultsStore, seed: int) -> dict[str, Any] | None:
        """The stored row that makes training this seed unnecessary, or None.

        A row of an older or unknown training semantics still counts (a week of sweeps is not
        dropped by an upgrade), saying so, unless ``study.rerun=stale`` retrains it.
        """
        rerun = self.cfg.study.rerun
        if rerun is True:
            return None
        row = store.get(self.chash, seed, statuses=_RUNS_OK)
        if row is None:
            return None
        semantics = row.get("training_semantics")
        stale = "" if semantics == TRAINING_SEMANTICS else \
            f", training semantics {semantics or 'unknown'}, now {TRAINING_SEMANTICS}"
        if stale and rerun == STALE:
            log.info("retrain: %s seed %d is in the store from older training%s",
                     self.chash, seed, stale)
            return None
        log.info("skip: %s seed %d already in the store (%s%s)", self.chash, seed,
                 row["status"], stale)
        return row

    def row(self, store: ResultsStore, seed: int, wait: bool) -> dict[str, Any] | claims.Holder:
        """This seed's row: stored already, trained here under a claim, or the stored row of
        the worker that held the claim. With ``wait=False`` a live holder is returned instead."""
        while True:
            if (stored := self.stored(store, seed)) is not None:
                return stored
            got = claims.acquire(store, self.chash, seed)
            if isinstance(got, claims.Claim):
                with got:  # stored by another worker between our look and our claim?
                    return self.stored(store, seed) or self.train(store, seed, got.run_id)
            if not wait:
                log.info("later: %s seed %d is being trained by %s", self.chash, seed, got)
                return got
            if (theirs := claims.wait(store, got)) is not None:
                log.info("skip: %s seed %d trained meanwhile by %s (%s)", self.chash, seed, got,
                         theirs["status"])
                return theirs

    def train(self, store: ResultsStore, seed: int, run_id: str) -> dict[str, Any]:
        """Train (or resume) one seed and store its row; then its resume checkpoints go.

        A process killed before this stores nothing, so its claim goes stale and its checkpoints
        stay for the rerun. Once the row is safe (stored, or kept in the run dir) the resume
        folder is removed whatever the status: a failed or diverged point's checkpoints would
        only fill the disk of a long sweep.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        rec = train_once(self.cfg, self.report, seed, self.out_dir, self.overrides, self.callbacks,
                         run_id)
        return self.record(store, rec)

    def record(self, store: ResultsStore, rec: dict[str, Any]) -> dict[str, Any]:
        """Store a trained seed's row (or keep it in the run dir); then its resume folder goes."""
        kept = append_or_keep(store, RunRecord(**rec), self.out_dir)  # rejects a misspelt column
        if kept is not Kept.NOWHERE:  # stored or kept beside the run: the checkpoints may go
            discard(resume_dir(self.cfg, rec["seed"]))
        log.info("%s seed %d: %s val_top1=%s test_top1=%s (%.1fs)", self.chash, rec["seed"],
                 rec["status"], rec.get("val_top1"), rec.get("test_top1"),
                 rec.get("train_seconds") or 0.0)
        return rec


def run_point(cfg: DictConfig, out_dir: str | Path, overrides: str = "",
              callbacks: tuple[Callback, ...] = ()) -> dict[str, Any]:
    """Train (or fetch from the store) every seed of one design point; append new rows.

    A seed that another worker is training is put off until the others are done, then taken from
    the store once that worker stored it: concurrent sweeps train each (point, seed) once.
    """
    point = Point(cfg, check_job(cfg), Path(out_dir), overrides, callbacks)
    with ResultsStore.from_config(cfg) as store:
        rows = {seed: point.row(store, seed, wait=False)
                for seed in range(cfg.seed, cfg.seed + cfg.study.seeds)}
        for seed, row in rows.items():
            if isinstance(row, claims.Holder):
                rows[seed] = point.row(store, seed, wait=True)
    return summarize(list(rows.values()), point.report)
