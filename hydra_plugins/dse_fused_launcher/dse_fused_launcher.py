"""The Launcher Hydra instantiates for ``hydra/launcher=dse_fused``, and its structured config (a
misspelt key fails at composition); three steps per batch. (1) Each job goes through Hydra's
``run_job`` with a task that only prepares it, so its dir gets the files and log a basic-launcher job
gets and a bad point fails alone. (2) :func:`dse.train.group.run_jobs` trains the jobs' seeds in fused
groups, logging into every member's log. (3) Each ``JobReturn`` gets its summary and the sweep's
callbacks hear of its end, as with any launcher. ``sequential`` mode (``auto`` on a CPU) is the basic
launcher. Hydra's plugin scan imports this module on every start-up: no torch at the top, no
``from __future__ import annotations`` (hydra_plugins/dse_optuna_sweeper/config.py).
"""

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, open_dict

from dse.sweep.handoff import Handoff

log = logging.getLogger(__name__)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.dse_fused_launcher.dse_fused_launcher.FusedLauncher"
    max_members: int = 16  # most (job, seed) members trained in one fused network
    # auto: fused on a GPU, sequential on a CPU (where fusing gains nothing; docs/BENCHMARKS.md) |
    # fused: always (what the CPU tests check) | sequential: every job on its own, like hydra's basic
    # (the rules: dse.validate.validate_fused_launcher)
    mode: str = "auto"


ConfigStore.instance().store(group="hydra/launcher", name="dse_fused", node=FusedLauncherConf, provider="dse")


def _prepare(cfg: DictConfig) -> Any:
    """The job's side of step (1): run inside ``run_job``, where its HydraConfig and env are set."""
    from dse.logs import quiet_lightning
    from dse.train.group import Job
    from dse.validate import validate

    quiet_lightning()
    validate(cfg)  # a bad point is this job's failure, as in the basic launcher
    hc = HydraConfig.get()
    return Job(cfg, Path(hc.runtime.output_dir), " ".join(hc.overrides.task), Handoff.from_env())


@contextmanager
def _logs_into(paths: list[Path]) -> Iterator[None]:
    """Copy the root logger's records into each job's log file while its group trains."""
    root = logging.getLogger()
    fmt = root.handlers[0].formatter if root.handlers else None
    handlers = [logging.FileHandler(p) for p in paths]
    for h in handlers:
        h.setFormatter(fmt or logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            root.removeHandler(h)
            h.close()


# what step (1)'s run_job calls instead of the sweep's callbacks, which hear of a job in step (3)
_NO_CALLBACKS = SimpleNamespace(on_job_start=lambda **_: None, on_job_end=lambda **_: None)


class FusedLauncher(Launcher):
    """Trains a batch of jobs as fused groups (see the module docstring)."""

    def __init__(self, max_members: int, mode: str) -> None:
        self.max_members, self.mode = max_members, mode

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Checks the settings here, not in ``__init__``, whose errors Hydra wraps in its own."""
        from dse.validate import validate_fused_launcher

        validate_fused_launcher({"_target_": type(self).__name__, "mode": self.mode,
                                 "max_members": self.max_members})
        self.max_members = int(self.max_members)
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def _fused(self) -> bool:
        if self.mode != "auto":
            return self.mode == "fused"
        import torch

        return torch.cuda.is_available() and str(self.config.trainer.accelerator) != "cpu"

    def _run(self, overrides: Sequence[str], idx: int, task: TaskFunction,
             context: HydraContext) -> tuple[DictConfig, JobReturn]:
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.id = idx
            cfg.hydra.job.num = idx
        ret = run_job(hydra_context=context, task_function=task, config=cfg,
                      job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return cfg, ret

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        fused = self._fused()
        log.info(f"Launching {len(job_overrides)} jobs locally, "
                 + (f"fused (at most {self.max_members} per group)" if fused else "one at a time"))
        if not fused:
            return [self._run(ov, initial_job_idx + i, self.task_function, self.hydra_context)[1]
                    for i, ov in enumerate(job_overrides)]
        return self._launch_fused(job_overrides, initial_job_idx)

    def _launch_fused(self, job_overrides: Sequence[Sequence[str]], first: int) -> list[JobReturn]:
        from dse.train.group import run_jobs

        callbacks = self.hydra_context.callbacks
        quiet = HydraContext(config_loader=self.hydra_context.config_loader, callbacks=_NO_CALLBACKS)  # type: ignore[arg-type]
        jobs = [self._run(ov, first + i, _prepare, quiet) for i, ov in enumerate(job_overrides)]
        ready = [(cfg, ret) for cfg, ret in jobs if ret.status == JobStatus.COMPLETED]
        for cfg, _ in ready:
            HydraConfig.instance().set_config(cfg)
            callbacks.on_job_start(config=cfg, task_function=self.task_function)
        logs = [Path(str(cfg.hydra.runtime.output_dir)) / f"{cfg.hydra.job.name}.log" for cfg, _ in ready]
        with _logs_into(logs):
            summaries = run_jobs([ret.return_value for _, ret in ready], self.max_members)
        for (_, ret), summary in zip(ready, summaries, strict=True):
            ret.return_value = summary
        for cfg, ret in jobs:  # a job that failed to prepare is reported too, as run_job would
            HydraConfig.instance().set_config(cfg)
            callbacks.on_job_end(config=cfg, job_return=ret)
        return [ret for _, ret in jobs]
