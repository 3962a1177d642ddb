"""The run's Lightning logger from the ``logger`` config group (``conf/logger/*.yaml``, a ``_target_``
node each), plus what differs per run and seed (:data:`PER_RUN`): every logger writes under the run
dir, each seed a logger run of its own; :func:`log_uri` says where, for the row."""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dse.errors import ConfigError, first_line
from dse.store import config_hash


def _mlflow(out: str, run: str, node: Mapping[str, Any]) -> dict[str, Any]:
    given = {} if node.get("tracking_uri") else {  # MLflow 3 refuses its ./mlruns file store
        "tracking_uri": f"sqlite:///{out}/mlflow.db", "artifact_location": f"{out}/mlartifacts"}
    return {"run_name": run, **given}


# class name -> the constructor arguments that make its logger run this run's and this seed's
PER_RUN: dict[str, Callable[[str, str, Mapping[str, Any]], dict[str, Any]]] = {
    "CSVLogger": lambda out, run, node: {"save_dir": out, "version": run},
    "TensorBoardLogger": lambda out, run, node: {"save_dir": out, "version": run},
    "MLFlowLogger": _mlflow,
    "WandbLogger": lambda out, run, node: {"save_dir": out, "name": run},
}


def check_logger(node: Mapping[str, Any] | None) -> None:
    """The preset's class exists and takes its arguments: a typo is bad input before a run dir
    exists, not a failed row per seed."""
    if node is None:
        return
    target = str(node.get("_target_"))
    module, _, name = target.rpartition(".")
    try:  # not hydra.utils.get_class: it logs its own multi-line error first
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except Exception as e:
        raise ConfigError("logger._target_", f"no logger class {target!r} ({first_line(e)})") from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if not str(key).startswith("_") and key not in params:
            raise ConfigError(f"logger.{key}", f"{target.rsplit('.', 1)[-1]} takes no such "
                                               f"argument ({', '.join(params)})")


def build_logger(cfg: DictConfig, out_dir: str | Path, seed: int) -> Any:
    """The logger ``cfg.logger`` describes for seed ``seed`` under ``out_dir``; ``False`` (Lightning's
    "no logger") when it is null."""
    from hydra.utils import instantiate

    node = OmegaConf.select(cfg, "logger")
    if node is None:
        return False
    kind = str(node.get("_target_")).rsplit(".", 1)[-1]
    if kind == "WandbLogger":  # the previous seed's run ends, or WandbLogger would log into it
        import wandb

        if wandb.run is not None:
            wandb.finish()
    make = PER_RUN.get(kind, lambda out, run, node: {"save_dir": out})  # another class: save_dir
    # run <config hash>-seed<N>: the hash the logs print and dse-store lists leads to it
    return instantiate(node, **make(os.path.abspath(out_dir), f"{config_hash(cfg)}-seed{seed}", node))


def log_uri(logger: Any) -> str:
    """Where ``logger`` writes this run: its folder, or MLflow's UI address of the run; ``""``
    without a logger. Starts the logger's run if it has not started yet."""
    if not logger:
        return ""
    kind = type(logger).__name__
    if kind == "MLFlowLogger":
        return f"{logger._tracking_uri}#/experiments/{logger.experiment_id}/runs/{logger.run_id}"
    if kind == "WandbLogger":
        return str(Path(logger.experiment.dir).parent)  # .../wandb/offline-run-<time>-<id>
    path = getattr(logger, "log_dir", None) or logger.save_dir or ""
    return os.path.abspath(path) if path else ""
