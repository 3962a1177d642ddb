"""What a job is checked against before it trains, and the device it trains on. Torch but not
Lightning is imported here: dse-train refuses bad input in the time torch takes to import."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, NamedTuple

import torch
from omegaconf import DictConfig, OmegaConf

from dse.data.sources import IN_MEMORY, load_arrays, source_args
from dse.errors import ConfigError
from dse.model import ModelReport
from dse.store import ResultsStore, config_hash
from dse.train.loggers import check_logger
from dse.validate import model_report, switch, validate

Device = tuple[str, str, bool]  # (accelerator, precision, channels_last), from device_settings
# what trainer.precision=auto and channels_last=auto choose between: (precision, channels_last)
AUTO = {"fp32": ("32-true", False), "bf16": ("bf16-mixed", True)}
CPU_BF16_ENV = "DSE_CPU_BF16"


def device_settings(tc: Any) -> Device:
    """``auto``: bf16-mixed + channels_last on a GPU or a native-bf16 CPU, else fp32 (the row's
    ``precision`` says which). A GPU asked for but not visible is refused, not replaced by the CPU."""
    if tc.accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.accelerator", f"{tc.accelerator} asked for, but no GPU is "
                                                 "visible here (use auto or cpu)")
    gpu = torch.cuda.is_available() and tc.accelerator != "cpu"
    precision, channels_last = AUTO["bf16" if gpu or native_cpu_bf16() else "fp32"]
    if tc.precision != "auto":
        precision = tc.precision
    elif gpu and not torch.cuda.is_bf16_supported():
        precision = "16-mixed"
    cl = switch("trainer.channels_last", tc.channels_last)
    return "gpu" if gpu else "cpu", precision, channels_last if cl is None else cl


def native_cpu_bf16() -> bool:
    """Whether this CPU has bf16 in hardware (elsewhere oneDNN emulates it, slower than fp32), by torch's
    private ``torch.cpu`` probes (it has no public query); ``DSE_CPU_BF16=0|1`` overrides them."""
    if os.environ.get(CPU_BF16_ENV) in ("0", "1"):
        return os.environ[CPU_BF16_ENV] == "1"
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def device_name(accelerator: str) -> str:
    if accelerator == "gpu":
        return torch.cuda.get_device_name()
    bf16 = "native" if native_cpu_bf16() else "emulated"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads, bf16 {bf16})"


def seeds(cfg: DictConfig) -> range:
    return range(cfg.seed, cfg.seed + cfg.study.seeds)


def resume_dir(cfg: Any, seed: int, group: str | None = None) -> Path:
    """Where this design point's seed (or fused ``group``) keeps its resume checkpoints."""
    base = Path(cfg.paths.runs) / cfg.study.name / "resume"
    return base / "group" / group if group else base / config_hash(cfg) / f"seed{seed}"


def check_folder(cfg: Any, seed: int, group: str | None = None) -> Path:
    """:func:`resume_dir`, refused where a link below ``paths.runs`` leads elsewhere: a run would
    write and delete checkpoints there, and read a file someone else put there."""
    folder = resume_dir(cfg, seed, group)
    runs = Path(cfg.paths.runs).resolve()
    real = runs / folder.relative_to(Path(cfg.paths.runs))
    if folder.resolve() != real:
        raise ConfigError("paths.runs", f"{folder} leads to {folder.resolve()}: a resume folder "
                                        "is never followed out of its place under paths.runs")
    return folder


class Checked(NamedTuple):
    """What a checked job trains with, converted once at its entry point."""

    report: ModelReport
    device: Device


def check_data(dc: Any) -> None:
    """An in-memory dataset loads (or downloads): a missing one is bad input naming ``data.root``, not
    a failed row per seed. Loaded into the cache the training then reads."""
    if dc.name in IN_MEMORY:
        load_arrays(**source_args(dc))


def check_job(cfg: DictConfig) -> Checked:
    """:func:`dse.validate.validate` and what needs torch: the GPU asked for, the logger's class and
    arguments, each seed's resume folder, the dataset; once per job, the result handed down."""
    validate(cfg)
    device = device_settings(cfg.trainer)
    for seed in seeds(cfg):
        check_folder(cfg, seed)
    check_data(cfg.data)
    check_logger(OmegaConf.select(cfg, "logger"))  # last: importing the logger imports Lightning
    return Checked(model_report(cfg), device)


def check_stores(cfgs: list[DictConfig]) -> None:
    """Open (creating if new) each store these jobs append to: a bad URL, a foreign file, a newer
    schema, a missing driver or an unreachable server is refused before training."""
    for url in dict.fromkeys(map(ResultsStore.config_url, cfgs)):
        ResultsStore(url).close()
