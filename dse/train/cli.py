"""``dse-train [OVERRIDES]``: train one design point (or, with ``-m``, sweep many) and record it.

A ``@hydra.main`` app over ``conf/``. The task returns the objectives dict (see
:func:`dse.train.run.summarize`) so Hydra sweepers, ours included, can read them. Errors in the
user's input become one line on stderr and exit code 2; a failed single run exits 1 after its
``failed`` row is written.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import dse.config  # noqa: F401  (registers the structured schema)
from dse.errors import ConfigError, config_exceptions, fail
from dse.outputs import check_writable
from dse.paths import conf_dir

log = logging.getLogger("dse.train")


class RunFailed(RuntimeError):
    """A single (non-sweep) run whose training raised; its row is already in the store."""


class CheckOutputs(Callback):
    """Refuses unwritable output folders before Hydra makes the run or sweep dir (``conf/config.yaml``
    registers it): Hydra's own ``mkdir`` would fail with a traceback, after composing and logging."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config, "hydra.sweep.dir")

    @staticmethod
    def _check(config: DictConfig, key: str) -> None:
        try:
            check_writable(config.paths.runs, "paths.runs", directory=True)
            run_dir = OmegaConf.select(config, key, throw_on_resolution_failure=False)
            if run_dir is not None:
                check_writable(run_dir, key, directory=True)
        except ConfigError as e:  # exit here: Hydra turns a callback's exceptions into warnings
            fail("dse-train", e)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="config")
def app(cfg: DictConfig) -> dict[str, Any]:
    from dse.train.run import run_point

    for name in ("lightning.pytorch", "lightning.fabric"):  # keep "GPU available: ..." chatter out
        logging.getLogger(name).setLevel(logging.WARNING)
    # Lightning's own deprecation noise and its advice for DataLoader-less in-memory batches
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    hc = HydraConfig.get()
    try:
        result = run_point(cfg, hc.runtime.output_dir, " ".join(hc.overrides.task))
    except ConfigError as e:
        if hc.mode == RunMode.RUN:  # exit here: past this point Hydra adds its own stderr line
            fail("dse-train", e)
        raise  # in a sweep the sweeper decides (ours records a FAIL trial)
    if hc.mode == RunMode.RUN:
        acc = {k: result[k] for k in ("val_top1", "test_top1") if result.get(k) is not None}
        log.info("%s: %s params=%s size=%.3f MiB %s", cfg.study.name, result["status"],
                 f"{result['params']:,}", result["size_mib"],
                 " ".join(f"{k}={v:.4f}" for k, v in acc.items()))
        if result["status"] == "failed":
            raise RunFailed(result["error"])
    return result


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us so they can be cut to one line
    try:
        app()
    except RunFailed as e:
        print(f"dse-train: run failed: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except config_exceptions() as e:
        fail("dse-train", e)


if __name__ == "__main__":
    main()
