"""One GPU per multirun job, else parallel jobs (``hydra/launcher=joblib``) all train on GPU 0: job N
gets ``visible[(N // jobs_per_gpu) % len(visible)]`` in ``CUDA_VISIBLE_DEVICES``, before CUDA starts.
Left alone in a single run, with fewer than two visible GPUs (one named device is the user's or Slurm's
choice), for a CPU or multi-device job, and once CUDA is initialised (it reads the variable once: a
joblib worker stays on its first job's GPU). Nothing here imports torch."""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

from dse.validate import int_at_least

ENV = "CUDA_VISIBLE_DEVICES"
# the process's own setting, read when dse-train's task is imported: before any job narrowed it
ORIGINAL: str | None = os.environ.get(ENV)


def assign(job_index: int, visible: Sequence[str], per_device: int = 1) -> str:
    """The device of job ``job_index``: ``per_device`` consecutive jobs per device, cycling."""
    if not visible:
        raise ValueError("no visible device to assign")
    if job_index < 0 or per_device < 1:
        raise ValueError(f"job_index must be >= 0 and per_device >= 1 (got {job_index}, {per_device})")
    return str(visible[(job_index // per_device) % len(visible)])


def visible_devices(env_value: str | None, count: Callable[[], int]) -> list[str]:
    """``CUDA_VISIBLE_DEVICES``'s entries when it is set (empty: none), else ``0 .. count()-1``."""
    if env_value is not None:
        return [d.strip() for d in env_value.split(",") if d.strip()]
    return [str(i) for i in range(count())]


def job_device(job_index: int | None, per_device: int, visible: Sequence[str],
               wants_one_gpu: bool, cuda_initialized: bool) -> str | None:
    """What ``CUDA_VISIBLE_DEVICES`` job ``job_index`` should get, or None to leave it alone."""
    helps = job_index is not None and wants_one_gpu and not cuda_initialized and len(visible) >= 2
    return assign(job_index, visible, per_device) if helps else None


def pin_job(job_index: int | None, per_device: int, tc: Any, count: Callable[[], int],
            cuda_initialized: bool, environ: MutableMapping[str, str] | None = None,
            original: str | None = ORIGINAL) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` in ``environ`` (default: the process's) to job ``job_index``'s
    device among ``original``'s; returns it, or None when left alone."""
    int_at_least(per_device, 1, "jobs_per_gpu")
    if job_index is None:  # a single run: no GPU count asked for
        return None
    one_gpu = str(tc.get("accelerator")) != "cpu" and tc.get("devices") == 1
    device = job_device(job_index, per_device, visible_devices(original, count), one_gpu, cuda_initialized)
    if device is not None:
        (os.environ if environ is None else environ)[ENV] = device
    return device
