"""Resume checkpoints: a killed, preempted or timed-out run continues where it stopped. Each (design
point, seed), or fused group, has its own folder (:func:`~dse.train.checks.resume_dir`), removed once
its row is stored. Lightning saves and restores; by hand, as Lightning has none of them: resuming from
the newest whole file, atomic writes, the RNG, data position and divergence state (a deterministic CPU
run resumes bit for bit) and stopping on a signal only between steps (``OnExceptionCheckpoint`` saves
mid-step)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dse.errors import first_line
from dse.outputs import atomic_path
from dse.signals import HeldStops
from dse.train.checks import check_folder

log = logging.getLogger("dse.train")

_NAME = re.compile(r"^epoch=(\d+)-step=(\d+)(?:-v(\d+))?\.ckpt$")

# A resumed run finds its own folder full, and resumes mid-epoch with TensorBatches positioned by
# ResumeState (not through Lightning's state_dict protocol): both of Lightning's warnings are expected.
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch ended")


def checkpoints(folder: Path) -> list[Path]:
    """The resume checkpoints in ``folder``, oldest first (by step, then epoch, then version)."""
    named = [p for p in folder.glob("*.ckpt") if _NAME.match(p.name)]
    return sorted(named, key=lambda p: [int(g or 0) for g in _NAME.match(p.name).group(2, 1, 3)])


def newest(folder: Path) -> Path | None:
    """The newest whole checkpoint (a cut file lacks its zip directory) of plain data (loading it with
    ``weights_only=True`` runs no code) in ``folder``; the others are left for :func:`prune`."""
    for path in reversed(checkpoints(folder)):
        try:
            torch.load(path, map_location="cpu", weights_only=True)
            return path
        except Exception as e:
            log.warning("ignoring the checkpoint %s: incomplete or not plain data (%s)", path, first_line(e))
    return None


def prune(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` (>= 1) checkpoints in ``folder``; the ones deleted."""
    old = checkpoints(folder)[:-keep]
    for p in old:
        p.unlink(missing_ok=True)
    return old


def discard(folder: Path) -> None:
    """Remove a run's resume folder once its row is safe, and its design point's folder if empty
    (never ``resume/``: another worker may be creating its folder in it)."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):  # other seeds of the point in it, or gone already
        folder.parent.rmdir()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Checkpoints written beside their name, synced, then renamed: always whole, whatever the disk
    or a kill does (Lightning's own writer stages in the system's temporary folder)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        buffer = io.BytesIO()  # serialised first: torch hides a full disk behind its own error
        torch.save(checkpoint, buffer)
        with atomic_path(path, "trainer.checkpoint") as tmp, open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())


class ResumeCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint as dse uses it: every ``every`` epochs, the newest ``keep``."""

    def __init__(self, folder: Path, every: int, keep: int) -> None:
        super().__init__(dirpath=folder, filename="{epoch}-{step}", monitor="step", mode="max",
                         save_top_k=keep, every_n_epochs=every, save_on_train_epoch_end=True)
        self.folder, self.keep = folder, keep

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        prune(self.folder, self.keep)


class ResumeState(Callback):
    """What a checkpoint needs beyond Lightning's state to resume exactly; stops on signals.
    ``position()``: (epoch, first batch) of the next training epoch, read by the data module."""

    def __init__(self, folder: Path, keep: int, held: HeldStops, monitor: Any) -> None:
        self.folder, self.keep, self.held, self.monitor = folder, keep, held, monitor
        self.epoch, self.batch = 0, 0
        self.resumed_from: int | None = None  # whole epochs in the checkpoint resumed from

    def position(self) -> tuple[int, int]:
        return self.epoch, self.batch

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.held.armed = True

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.held.armed = False  # a signal still pending is handled when fit returns

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.batch += 1
        # an epoch's last step is followed by its validation: the epoch's end is the safe point
        if self.held.pending is not None and batch_idx + 1 < trainer.num_training_batches:
            self._checkpoint_and_stop(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.epoch, self.batch = trainer.current_epoch + 1, 0
        if self.held.pending is not None:
            self._checkpoint_and_stop(trainer)

    def _checkpoint_and_stop(self, trainer: L.Trainer) -> None:
        path = self.folder / f"epoch={trainer.current_epoch}-step={trainer.global_step}.ckpt"
        trainer.save_checkpoint(path)
        prune(self.folder, self.keep)
        log.info("stopping on a signal; resume checkpoint %s", path)
        self.held.deliver()

    def state_dict(self) -> dict[str, Any]:
        cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        return {"epoch": self.epoch, "batch": self.batch, "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if cuda else [],
                "divergence_first_loss": getattr(self.monitor, "first_loss", None)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.epoch, self.batch = int(state_dict["epoch"]), int(state_dict["batch"])
        self.resumed_from = self.epoch
        torch.set_rng_state(state_dict["torch_rng"])
        cuda = state_dict.get("cuda_rng") or []
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        if self.monitor is not None:  # per member; an older dse's single run kept one float
            first = state_dict.get("divergence_first_loss")
            self.monitor.first_loss = (first if isinstance(first, dict) else
                                       {} if first is None else {0: first})


@dataclass
class Resume:
    """One run's resume folder, the checkpoint it resumes from (None: fresh), the signal holder to
    train inside and the two callbacks to train with."""

    folder: Path
    ckpt: Path | None
    held: HeldStops
    state: ResumeState
    saver: ResumeCheckpoint

    @classmethod
    def for_run(cls, cfg: Any, seed: int, monitor: Any, group: str | None = None) -> Resume | None:
        """None when ``trainer.checkpoint_every`` is 0 (no resume checkpoints)."""
        every, keep = int(cfg.trainer.checkpoint_every), int(cfg.trainer.keep_checkpoints)
        if every == 0:
            return None
        folder = check_folder(cfg, seed, group)
        held = HeldStops()
        return cls(folder, newest(folder), held, ResumeState(folder, keep, held, monitor),
                   ResumeCheckpoint(folder, every, keep))
