"""One GPU per multirun job: which of the visible GPUs job N trains on, set before CUDA starts.

A launcher that runs jobs in parallel (``hydra/launcher=joblib hydra.launcher.n_jobs=...``) on a
host with several GPUs would otherwise put every job on GPU 0. dse-train's task therefore narrows
``CUDA_VISIBLE_DEVICES`` to one device per job, chosen from the job's index in the sweep:

    job N -> visible[(N // jobs_per_gpu) % len(visible)]

``jobs_per_gpu=1`` (the default) deals the jobs round-robin; ``jobs_per_gpu=K`` (dse-bench's
recommended K, docs/BENCHMARKS.md) fills each GPU with K consecutive jobs before the next, so
``hydra.launcher.n_jobs = K x GPUs`` runs K jobs on every GPU and fewer jobs use fewer GPUs.

Nothing is changed (:func:`job_device` returns None) in a single run, when fewer than two GPUs are
visible (``CUDA_VISIBLE_DEVICES`` naming one device is the user's or Slurm's choice and is kept),
when the job asks for the CPU or for ``trainer.devices`` other than 1, and once CUDA is initialised
in this process: a launcher worker that already trained on a GPU keeps it (CUDA reads the variable
once), so with joblib each worker stays on the GPU of its first training job. The visible list is
the process's own ``CUDA_VISIBLE_DEVICES`` (indices or UUIDs, kept as written; several listed =
assign among those), else ``0 .. count-1`` (torch counts through NVML, without initialising CUDA).
All pure but :func:`pin_job`, which sets the variable; nothing here imports torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any

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
    """The devices a process may use: ``CUDA_VISIBLE_DEVICES``'s entries when it is set (empty: none),
    else ``0 .. count()-1``."""
    if env_value is not None:
        return [d.strip() for d in env_value.split(",") if d.strip()]
    return [str(i) for i in range(count())]


def job_device(job_index: int | None, per_device: int, visible: Sequence[str],
               wants_one_gpu: bool, cuda_initialized: bool) -> str | None:
    """What ``CUDA_VISIBLE_DEVICES`` job ``job_index`` should get, or None to leave it alone."""
    if job_index is None or not wants_one_gpu or cuda_initialized or len(visible) < 2:
        return None
    return assign(job_index, visible, per_device)


def wants_one_gpu(tc: Any) -> bool:
    """A trainer config that trains on one device that may be a GPU (``devices: 1``)."""
    return str(tc.get("accelerator")) != "cpu" and tc.get("devices") == 1


def pin_job(job_index: int | None, per_device: int, tc: Any, count: Callable[[], int],
            cuda_initialized: bool, environ: MutableMapping[str, str] | None = None,
            original: str | None = ORIGINAL) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` in ``environ`` (default: the process's) to job ``job_index``'s
    device, chosen among ``original``'s devices; returns it, or None when left alone. Call it before
    anything initialises CUDA."""
    from dse.validate import int_at_least

    int_at_least(per_device, 1, "jobs_per_gpu")
    if job_index is None:  # a single run: no GPU count asked for
        return None
    device = job_device(job_index, per_device, visible_devices(original, count), wants_one_gpu(tc),
                        cuda_initialized)
    if device is not None:
        (os.environ if environ is None else environ)[ENV] = device
    return device
