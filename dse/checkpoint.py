"""A trained run's final checkpoint (docs/CONTRACTS.md), its one writer and reader: Lightning's format
reduced to the resolved config, the weights and ``run_id``, read as plain data, every earlier dse's alike."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from dse.config import Config
from dse.errors import ConfigError, first_line, lines_of, one_line
from dse.model import build_model

CKPT = "CHECKPOINT"


def save_checkpoint(path: Path, cfg: dict[str, Any], net: nn.Module, run_id: str, epoch: int,
                    global_step: int) -> None:
    """``net`` (a FireNet) as run ``run_id``'s final checkpoint, without optimizer state (never resumed)."""
    import lightning as L

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"hyper_parameters": {"cfg": cfg},
                "state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                "run_id": run_id, "epoch": epoch, "global_step": global_step,
                "pytorch-lightning_version": L.__version__}, path)


@dataclass
class Checkpoint:
    """A dse training checkpoint: resolved config (overrides applied), weights, provenance."""

    path: Path
    cfg: DictConfig
    original_cfg: dict[str, Any]
    state: dict[str, torch.Tensor]
    run_id: str | None = None
    seed: int = 0
    overrides: tuple[str, ...] = ()

    def network(self) -> nn.Module:
        """A fresh network of the checkpoint's architecture holding its weights."""
        model = build_model(OmegaConf.to_container(self.cfg.model, resolve=True))
        model.load_state_dict(self.state)
        return model

    @property
    def run_dir(self) -> Path:
        """The training run's folder: the one holding ``checkpoints/`` (else the file's own)."""
        return self.path.parent.parent if self.path.parent.name == "checkpoints" else self.path.parent


def _apply_overrides(cfg: dict[str, Any], overrides: Sequence[str]) -> DictConfig:
    """``key=value`` overrides typed by the schema as dse-train's: refused here, not mid-retraining."""
    try:
        base = OmegaConf.merge(OmegaConf.structured(Config), cfg)
    except OmegaConfBaseException as e:
        raise ConfigError(CKPT, f"its config does not fit this dse's schema ({one_line(e)})") from None
    OmegaConf.set_struct(base, True)
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if "=" not in item or item[0] in "+~":
            raise ConfigError(key or item, f"expected key=value (got {item!r})")
        if key == "model" or key.startswith("model."):
            raise ConfigError(key, "the architecture comes from the checkpoint; it cannot be overridden")
    return OmegaConf.merge(base, OmegaConf.from_dotlist(list(overrides)))


def load_checkpoint(path: str | Path, overrides: Sequence[str] = ()) -> Checkpoint:
    """Read and check a ``dse-train`` checkpoint (docs/CONTRACTS.md) without writing anything."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(CKPT, f"no such file: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean "not ours"
        raise ConfigError(CKPT, f"{path} is not a dse checkpoint ({type(e).__name__})") from None
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    cfg = hp.get("cfg") if isinstance(hp, dict) else None
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(cfg, dict) or not isinstance(state, dict) or "model" not in cfg:
        raise ConfigError(CKPT, f"{path} is not a dse checkpoint (no hyper_parameters.cfg / state_dict)")
    weights = {k.removeprefix("model.").removeprefix("_orig_mod."): v  # (trainer.compile=true)
               for k, v in state.items() if k.startswith("model.")}
    model = build_model(cfg["model"])
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        detail = (lines_of(e)[1:] or [first_line(e)])[0]  # torch names the mismatch on line 2
        raise ConfigError(CKPT, f"{path}: weights do not fit the architecture in its config "
                                f"({detail})") from None
    seed = re.fullmatch(r"seed(\d+)\.ckpt", path.name)
    run_id = ckpt.get("run_id") or hp.get("run_id")
    return Checkpoint(path, _apply_overrides(cfg, overrides), cfg, weights, run_id,
                      int(seed.group(1)) if seed else int(cfg.get("seed", 0)), tuple(overrides))
