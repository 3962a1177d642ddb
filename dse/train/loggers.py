"""The run's Lightning logger, built from the ``logger`` config group (``conf/logger/*.yaml``).

Each preset is a Hydra ``_target_`` node naming one of Lightning's logger classes with its static
settings; what differs per run and per seed is added here, in one table (:data:`PER_RUN`): every
logger writes under the run dir, and each seed of a design point is a logger run of its own
(``seed<N>``), as the store has one row per seed. :func:`log_uri` says where that logger run is; it
fills the record's ``log_uri`` column, so a stored row leads to its curves.

``tensorboard``, ``mlflow`` and ``wandb`` are optional extras (``pip install -e '.[tensorboard]'``);
the ``logger`` group never enters the config hash (dse/store/record.py hashes model, data, trainer).
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dse.errors import ConfigError, first_line


def _mlflow(out: str, seed: int, node: Mapping[str, Any]) -> dict[str, Any]:
    given = {} if node.get("tracking_uri") else {  # MLflow 3 refuses its ./mlruns file store
        "tracking_uri": f"sqlite:///{out}/mlflow.db", "artifact_location": f"{out}/mlartifacts"}
    return {"run_name": f"seed{seed}", **given}


# class name -> the constructor arguments that make its logger run this run's and this seed's
PER_RUN: dict[str, Callable[[str, int, Mapping[str, Any]], dict[str, Any]]] = {
    "CSVLogger": lambda out, seed, node: {"save_dir": out, "version": f"seed{seed}"},
    "TensorBoardLogger": lambda out, seed, node: {"save_dir": out, "version": f"seed{seed}"},
    "MLFlowLogger": _mlflow,
    "WandbLogger": lambda out, seed, node: {"save_dir": out, "name": f"seed{seed}"},
}


def per_run_kwargs(target: str, out_dir: str | Path, seed: int,
                   node: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What :func:`build_logger` adds to the preset for ``target`` (another class: ``save_dir``)."""
    out = os.path.abspath(out_dir)
    make = PER_RUN.get(target.rsplit(".", 1)[-1], lambda out, seed, node: {"save_dir": out})
    return make(out, seed, node or {})


def check_logger(node: Mapping[str, Any] | None) -> None:
    """The preset's class exists and takes its arguments, so a typo is bad input before a run
    dir exists rather than a failed row per seed (:func:`dse.validate.validate_logger` checks,
    torch-free, that its package is installed). A class taking ``**kwargs`` accepts any key."""
    if node is None:
        return
    target = str(node.get("_target_"))
    module, _, name = target.rpartition(".")
    try:  # not hydra.utils.get_class: it logs its own multi-line error first
        params = inspect.signature(getattr(importlib.import_module(module), name)).parameters
    except Exception as e:
        raise ConfigError("logger._target_", f"no logger class {target!r} ({first_line(e)})"
                          ) from None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key in node:
        if not str(key).startswith("_") and key not in params:
            raise ConfigError(f"logger.{key}", f"{target.rsplit('.', 1)[-1]} takes no such "
                                               f"argument ({', '.join(params)})")


def build_logger(cfg: DictConfig, out_dir: str | Path, seed: int) -> Any:
    """The Lightning logger ``cfg.logger`` describes, writing this run's seed ``seed`` under
    ``out_dir``; ``False`` (Lightning's "no logger") when ``cfg.logger`` is null. The preset was
    checked by :func:`dse.validate.validate_logger` (a target, its package installed)."""
    from hydra.utils import instantiate

    node = OmegaConf.select(cfg, "logger")
    if node is None:
        return False
    target = str(node.get("_target_"))
    if target.rsplit(".", 1)[-1] == "WandbLogger":
        _finish_wandb()
    return instantiate(node, **per_run_kwargs(target, out_dir, seed, node))


def _finish_wandb() -> None:
    """End the previous seed's W&B run: Lightning's WandbLogger would log into a run in progress."""
    import wandb

    if wandb.run is not None:
        wandb.finish()


def log_uri(logger: Any) -> str:
    """Where ``logger`` writes this run: its folder (csv, tensorboard, wandb's offline run) or, for
    MLflow, ``<tracking uri>#/experiments/<id>/runs/<id>`` (the MLflow UI's address of the run);
    ``""`` without a logger. Starts the logger's run if it has not started yet."""
    if not logger:
        return ""
    kind = type(logger).__name__
    if kind == "MLFlowLogger":
        return (f"{logger._tracking_uri}#/experiments/{logger.experiment_id}"
                f"/runs/{logger.run_id}")
    if kind == "WandbLogger":
        return str(Path(logger.experiment.dir).parent)  # .../wandb/offline-run-<time>-<id>
    path = getattr(logger, "log_dir", None) or logger.save_dir or ""
    return os.path.abspath(path) if path else ""
