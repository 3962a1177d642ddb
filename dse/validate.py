"""Config values checked once for every entry point (the schema, :mod:`dse.config`, checks types),
so a value is refused in the same words wherever it is typed; no torch, so it takes milliseconds."""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import is_dataclass
from pathlib import Path
from typing import Any, get_type_hints

from omegaconf import DictConfig, OmegaConf

from dse.config import Config
from dse.data.sources import IN_MEMORY, SOURCES
from dse.errors import ConfigError
from dse.model import ModelReport, analyze, build_spec
from dse.storefile import check_study_name, in_memory

# trainer enumerations; "auto" = bf16-mixed where the GPU or CPU has bf16, else 32-true (device_settings)
PRECISIONS = ("auto", "32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true")
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("poly", "cosine", "onecycle", "constant")
STALE = "stale"  # study.rerun=stale: retrain the rows an older training semantics produced
FUSED_MODES = ("auto", "fused", "sequential")  # hydra.launcher.mode of hydra/launcher=dse_fused
# three-way switches (trainer.channels_last, trainer.progress_bar); "auto" is decided at run time
SWITCHES: dict[str, bool | None] = {"auto": None, "true": True, "false": False}
SEEDS = (0, 2**32 - 1)  # what Lightning's seed_everything accepts (numpy's uint32)
# Lightning logger class -> (the pyproject extra that installs it, modules any one of which it needs)
LOGGER_EXTRAS: dict[str, tuple[str, tuple[str, ...]]] = {
    "TensorBoardLogger": ("tensorboard", ("tensorboard", "tensorboardX")),
    "MLFlowLogger": ("mlflow", ("mlflow",)),
    "WandbLogger": ("wandb", ("wandb",)),
}


def one_of(field: str, value: Any, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed``, else a ConfigError that lists them."""
    if value not in allowed:
        raise ConfigError(field, f"must be one of {', '.join(allowed)} (got {value!r})")
    return value


def switch(field: str, value: Any) -> bool | None:
    """An auto/true/false setting as None/True/False (YAML booleans arrive as 'True'/'False')."""
    return SWITCHES[one_of(field, str(value).lower(), SWITCHES)]


def int_at_least(value: Any, lo: int, field: str) -> int:
    """``value`` as an int if it is a whole number >= ``lo`` (``3.0`` is, ``True`` is not)."""
    try:
        ok = not isinstance(value, bool) and float(value).is_integer() and int(value) >= lo
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ConfigError(field, f"must be an integer >= {lo} (got {value!r})")
    return int(value)


def _check(group: str, node: Any, rules: list[tuple[str, bool, str]]) -> None:
    for key, ok, rule in rules:
        if not ok:
            raise ConfigError(f"{group}.{key}", f"{rule} (got {node.get(key)!r})")


def _devices_ok(devices: Any) -> bool:
    if OmegaConf.is_list(devices) or isinstance(devices, (list, tuple)):
        ids = list(devices)
        return bool(ids) and len(set(ids)) == len(ids) and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids)
    return devices == "auto" or (type(devices) is int and (devices >= 1 or devices == -1))  # not a bool


def validate_trainer(tc: Any) -> None:
    """Enumerations and ranges of the solver keys (types are already enforced by the schema)."""
    for key, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES),
                         ("precision", PRECISIONS), ("accelerator", ACCELERATORS)):
        one_of(f"trainer.{key}", tc.get(key), allowed)
    for key in ("channels_last", "progress_bar"):
        switch(f"trainer.{key}", tc.get(key))
    _check("trainer", tc, [
        *((key, tc.get(key) >= 1, "must be >= 1") for key in (
            "max_epochs", "batch_size", "eval_batch_size", "val_every", "chance_epochs",
            "log_every_n_steps", "latency_threads") if key in tc),
        ("max_steps", tc.max_steps == -1 or tc.max_steps >= 1, "must be -1 (no cap) or >= 1"),
        ("lr", 0 < tc.lr < math.inf, "must be > 0"),
        ("momentum", 0 <= tc.momentum < 1, "must be in [0, 1)"),
        ("weight_decay", 0 <= tc.weight_decay < math.inf, "must be >= 0"),
        ("label_smoothing", 0 <= tc.label_smoothing < 1, "must be in [0, 1)"),
        ("warmup_epochs", 0 <= tc.warmup_epochs < math.inf, "must be >= 0"),
        ("devices", _devices_ok(tc.devices),
         "must be a positive integer, -1 (all), 'auto' or a list of device indices"),
    ])
    for key, lo in (("checkpoint_every", 0), ("keep_checkpoints", 1)):
        int_at_least(tc.get(key, lo), lo, f"trainer.{key}")
    if tc.get("latency"):
        from dse.latency import require

        require("trainer.latency", "true ")


def validate_fused_launcher(node: Any) -> None:
    """``hydra/launcher=dse_fused``'s settings (checked before a sweep writes anything)."""
    if node is None or "FusedLauncher" not in str(node.get("_target_", "")):
        return
    one_of("hydra.launcher.mode", node.get("mode"), FUSED_MODES)
    int_at_least(node.get("max_members"), 1, "hydra.launcher.max_members")
    from hydra.core.config_store import ConfigStore

    known = ConfigStore.instance().load("hydra/launcher/dse_fused.yaml").node
    for key in node:
        if key not in known:
            raise ConfigError(f"hydra.launcher.{key}", "unknown key (not in hydra/launcher=dse_fused's "
                                                       f"settings: {', '.join(map(str, known))})")


def validate_logger(node: Any) -> None:
    """The ``logger`` node: null (no logger) or a ``_target_`` whose package is installed."""
    if node is None:
        return
    target = node.get("_target_")
    if not isinstance(target, str) or not target:
        raise ConfigError("logger._target_", "missing: pick a preset (logger=csv, tensorboard, mlflow "
                          "or wandb) or name a Lightning logger class")
    extra, modules = LOGGER_EXTRAS.get(target.rsplit(".", 1)[-1], ("", ()))
    if modules and not any(importlib.util.find_spec(m) for m in modules):
        raise ConfigError("logger", f"{target.rsplit('.', 1)[-1]} needs the {modules[0]} package "
                          f"(pip install -e '.[{extra}]')")


def validate_data(dc: Mapping[str, Any], on_disk: bool = True) -> None:
    """Reject a bad data config before anything is loaded; ``on_disk=False`` skips ``data.root``
    (dse-model lays out ImageNet's network on a machine without ImageNet)."""
    name = one_of("data.name", dc.get("name"), SOURCES)
    subset = dc.get("subset")
    if subset is not None and int(subset) <= 0:
        raise ConfigError("data.subset", f"must be a positive integer or null (got {subset})")
    _check("data", dc, [(key, int(dc.get(key, lo)) >= lo, f"must be >= {lo}") for key, lo in (
        ("channels", 1), ("image_size", 1), ("num_classes", 2), ("synthetic_size", 2),
        ("val_size", 0), ("num_workers", 0))])
    if name in IN_MEMORY:  # val_size enters the hash: refused, not capped
        val = int(dc.get("val_size", 0))
        train = SOURCES[name].train_images or int(dc.get("synthetic_size", 0))
        if not 1 <= val <= train // 2:
            raise ConfigError("data.val_size", f"must be in [1, {train // 2}], half of {name}'s "
                                               f"{train} training images (got {val})")
    shape = SOURCES[name].shape
    for key, fixed in shape._asdict().items() if shape else ():
        if key in dc and dc[key] != fixed:
            raise ConfigError(f"data.{key}", f"{name} has {key} {fixed} (got {dc[key]!r})")
    if not on_disk:
        return
    root = dc.get("root")
    if root is not None and not Path(str(root)).expanduser().is_dir():
        raise ConfigError("data.root", f"no such directory {root!r}")
    if name == "imagenet" and (root is None or not (Path(root).expanduser() / "train").is_dir()):
        raise ConfigError("data.root", ("is required for imagenet" if root is None else f"ImageFolder "
                          f"root {root!r} has no train/ folder") + " (an ImageFolder tree: "
                          "data.root/train/<class>/*.jpg and data.root/val/...)")


def check_shapes(model: Any, data: Any) -> None:
    """The network takes the dataset's images and, for fixed classes, has one output per class (a
    synthetic dataset's are free: a smaller classifier is the suite's in-training failure)."""
    if model.get("in_channels") != data.get("channels"):
        raise ConfigError("model.in_channels", f"must equal data.channels ({data.get('channels')!r})"
                                               f", the images' (got {model.get('in_channels')!r})")
    shape = SOURCES[data.get("name")].shape
    if shape and model.get("num_classes") != shape.num_classes:
        raise ConfigError("model.num_classes", f"{data.get('name')} has {shape.num_classes} classes "
                                               f"(got {model.get('num_classes')!r})")


def physical_memory() -> int:
    """Bytes of RAM in this machine (0 when the kernel does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def check_fits(report: ModelReport, batch_size: int, limit: int | None = None) -> None:
    """Refuse a network that cannot train in ``limit`` bytes (this machine's RAM): a lower bound of
    fp32 weights, gradients, two optimizer buffers and the largest activation of a batch."""
    limit = physical_memory() if limit is None else limit
    need = 16 * report.params + 4 * batch_size * report.peak_activation
    if limit and need > limit:
        raise ConfigError("model", f"needs at least {need / 2**30:,.1f} GiB to train (params "
                                   f"{report.params:,}, peak activation {report.peak_activation:,} "
                                   f"x batch {batch_size}); this machine has {limit / 2**30:,.1f} GiB")


def check_runs(runs: Any) -> str:
    """``paths.runs``: a folder name, never empty (that would fill the launch folder itself)."""
    text = "" if runs is None else str(runs)
    if not text.strip():
        raise ConfigError("paths.runs", "is empty: name the folder the studies go in (e.g. runs)")
    return text


def check_keys(cfg: DictConfig, schema: type = Config, prefix: str = "") -> None:
    """Refuse keys the schema lacks (``+model.extra=1``): unread, yet they would change the hash."""
    types = get_type_hints(schema)
    for key in cfg:
        if not prefix and key == "hydra":  # the callback and the sweeper see Hydra's own node
            continue
        if key not in types:
            raise ConfigError(f"{prefix}{key}", "unknown key (not in the schema, dse/config.py)")
        if is_dataclass(types[key]) and OmegaConf.is_dict(cfg[key]):
            check_keys(cfg[key], types[key], f"{prefix}{key}.")


def schema_type(key: str, schema: type = Config) -> Any:
    """The type the schema gives a dotted key (None where it does not have one)."""
    kind: Any = schema
    for part in key.split("."):
        if not is_dataclass(kind) or part not in (hints := get_type_hints(kind)):
            return None
        kind = hints[part]
    return kind


def check_bools(overrides: Sequence[str]) -> None:
    """Boolean keys take true or false: OmegaConf would read ``trainer.compile=2`` as true."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.key_or_group
        if o.is_delete() or schema_type(key) is not bool:
            continue
        try:
            values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        except Exception:  # an interval or a tagged sweep: Optuna's space, checked by its probe
            continue
        for v in values:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                raise ConfigError(key, f"must be true or false (got {v!r})")


def model_report(cfg: Any) -> ModelReport:
    """The analytic report (params, MACs, sizes) of the network a config describes."""
    return analyze(build_spec(cfg.model), cfg.data.image_size)


def validate(cfg: DictConfig, data_on_disk: bool = True) -> None:
    """Keys, model, data, trainer, logger and study, checked alike by every entry point."""
    check_keys(cfg)
    validate_data(cfg.data, on_disk=data_on_disk)
    check_shapes(cfg.model, cfg.data)
    report = model_report(cfg)
    validate_trainer(cfg.trainer)
    devices = cfg.trainer.devices  # an in-memory dataset's batches are not sharded per DDP rank
    if cfg.data.name in IN_MEMORY and (len(devices) if OmegaConf.is_list(devices) else devices) != 1:
        raise ConfigError("trainer.devices", f"{cfg.data.name} is held in memory and trains on one "
                          f"device, its batches are not sharded per rank (got {devices!r}): use 1; a "
                          "multirun spreads its jobs over the GPUs (jobs_per_gpu)")
    validate_logger(OmegaConf.select(cfg, "logger"))
    int_at_least(OmegaConf.select(cfg, "jobs_per_gpu", default=1), 1, "jobs_per_gpu")
    check_study_name(cfg.study.name)
    lo, hi = SEEDS  # seed .. seed + study.seeds - 1 must all be seeds Lightning accepts
    first = int_at_least(OmegaConf.select(cfg, "seed", default=0), lo, "seed")
    last = first + int_at_least(cfg.study.seeds, 1, "study.seeds") - 1
    if last > hi:
        raise ConfigError("seed", f"must be in [{lo}, {hi}], and so must seed + study.seeds - 1 "
                                  f"(got {first} .. {last})")
    if not (isinstance(cfg.study.rerun, bool) or cfg.study.rerun == STALE):
        raise ConfigError("study.rerun", f"must be true, false or {STALE} (got {cfg.study.rerun!r})")
    check_runs(OmegaConf.select(cfg, "paths.runs", default="runs"))
    url = OmegaConf.select(cfg, "store.url", default=None)  # whether it opens is the store's to say
    if url is not None and in_memory(str(url)):
        raise ConfigError("store.url", f"{url!r} is an in-memory database: its rows are lost when "
                                       "the run ends (give a file or a server URL)")
    check_fits(report, cfg.trainer.batch_size)
