"""``dse-train [OVERRIDES]``: train one design point (or, with ``-m``, sweep many) and record it. The
task returns :func:`dse.metrics.summarize`'s dict, which Hydra sweepers read. Bad input: one line
on stderr, exit 2, nothing written; a failed single run exits 1 after its row is written; Ctrl-C 130."""

from __future__ import annotations

import logging
import os
import sys
from contextlib import nullcontext
from typing import Any

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from dse.config import register_configs
from dse.errors import ArgumentParser, bad_input
from dse.logs import quiet_lightning
from dse.metrics import REGISTRY
from dse.outputs import check_writable
from dse.paths import conf_dir
from dse.signals import EXIT_INTERRUPTED, stop_signals
from dse.validate import check_bools, check_runs, check_study_name, validate_fused_launcher

PROG = "dse-train"
log = logging.getLogger("dse.train")


class Preflight(Callback):
    """Checks a single run's or every grid point's input, output folders and stores before Hydra
    writes anything (``hydra.callbacks`` in conf/config.yaml): one bad point refuses the grid. Hydra
    turns a callback's exceptions into warnings, hence the exits from here."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check_jobs(config, [config], "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from dse.compose import grid_sweep, job_configs

        with bad_input(PROG):
            check_study_name(config.study.name)
            check_runs(config.paths.runs)
            validate_fused_launcher(OmegaConf.select(config, "hydra.launcher"))
            jobs = job_configs(config) if grid_sweep(config) else []
        self._check_jobs(config, jobs, "hydra.sweep.dir")

    @staticmethod
    def _check_jobs(config: DictConfig, jobs: list[DictConfig], key: str) -> None:
        with bad_input(PROG):
            check_bools(config.hydra.overrides.task)
            from dse.train.checks import check_job, check_stores

            # the jobs' own keys: Hydra's node still lacks what the launcher sets (output dir, num)
            jobs = [OmegaConf.masked_copy(job, [k for k in job if k != "hydra"]) for job in jobs]
            check_writable(check_runs(config.paths.runs), "paths.runs", directory=True)
            if (run_dir := OmegaConf.select(config, key, throw_on_resolution_failure=False)) is not None:
                check_writable(run_dir, key, directory=True)
            for job in jobs:  # after the cheap folder probes: it loads the data and imports Lightning
                check_job(job)
            check_stores(jobs)


register_configs()


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def app(cfg: DictConfig) -> dict[str, Any]:
    import torch

    from dse.train.checks import check_job
    from dse.train.devices import ENV, pin_job
    from dse.train.run import run_point

    quiet_lightning()
    hc = HydraConfig.get()
    single = hc.mode == RunMode.RUN
    # a single run exits here (past this point Hydra adds its own stderr line); in a sweep the
    # sweeper decides (ours records a FAIL trial)
    with bad_input(PROG) if single else nullcontext():
        # a multirun job gets one of the visible GPUs, before CUDA starts (dse/train/devices.py)
        if (gpu := pin_job(None if single else hc.job.num, cfg.jobs_per_gpu, cfg.trainer,
                           torch.cuda.device_count, torch.cuda.is_initialized())) is not None:
            log.info("job %d: %s=%s", hc.job.num, ENV, gpu)
        result = run_point(cfg, hc.runtime.output_dir, " ".join(hc.overrides.task), checked=check_job(cfg))
    if single:
        acc = {k: result[k] for k in ("val_top1", "test_top1") if result.get(k) is not None}
        size = REGISTRY["size_mib"]
        log.info("%s: %s params=%s size=%s %s %s", cfg.study.name, result["status"],
                 f"{result['params']:,}", size.show(result["size_mib"]), size.unit,
                 " ".join(f"{k}={v:.4f}" for k, v in acc.items()))
        if result["status"] == "failed":  # exit here too, for the same reason
            print(f"{PROG}: run failed: {result['error']}", file=sys.stderr)
            raise SystemExit(1)
    return result


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us so they can be cut to one line
    try:
        with bad_input(PROG):
            # Hydra's own flags first, for one-line usage errors: Hydra's parser prints a usage block
            ArgumentParser(prog=PROG, parents=[get_args_parser()], add_help=False).parse_args()
            with stop_signals():  # kill / scancel: the same prompt, recorded stop as Ctrl-C
                app()
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        raise SystemExit(EXIT_INTERRUPTED) from None


if __name__ == "__main__":
    main()
