"""The typed schema behind every YAML file in ``conf/``: a wrong type fails at composition. Each key's comment
is its documentation (as pycls does); value checks live in :mod:`dse.validate`."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

from omegaconf import II, OmegaConf

from dse.storefile import sqlite_url, study_file


@dataclass
class StemConfig:
    channels: int = 96  # conv1 output filters
    kernel: int = 7  # conv1 kernel size (square)
    stride: int = 2  # conv1 stride
    padding: int = 0  # conv1 zero padding on each side


@dataclass
class ModelConfig:
    name: str = "fire"  # label stored with every run (preset name or "fire")
    base_e: int = 128  # expand filters of the first Fire module (paper: base_e)
    incr_e: int = 128  # expand filters added every `freq` modules (paper: incr_e)
    freq: int = 2  # modules between width increments (paper: freq)
    sr: float = 0.125  # squeeze ratio: squeeze filters / expand filters (paper: SR)
    pct3x3: float = 0.5  # fraction of expand filters that are 3x3 (paper: pct3x3)
    n_fire: int = 8  # number of Fire modules (fire2 .. fire{n_fire+1})
    stem: StemConfig = field(default_factory=StemConfig)  # the first convolution, conv1
    # layers followed by a 3x3/2 ceil-mode max-pool
    pool_after: list[str] = field(default_factory=lambda: ["conv1", "fire4", "fire8"])
    bypass: str = "none"  # none | simple (identity where widths match) | complex (+1x1 conv elsewhere)
    batch_norm: bool = False  # BatchNorm after every conv but the classifier (convs lose their bias)
    dropout: float = 0.5  # dropout before the classifier conv
    in_channels: int = II("data.channels")  # input image channels (from the data config)
    num_classes: int = II("data.num_classes")  # classifier outputs (from the data config)


@dataclass
class DataConfig:
    name: str = "fashion_mnist"  # a key of dse.data.sources.SOURCES (conf/data/<name>.yaml presets it)
    root: Optional[str] = None  # where the dataset lives; None = the dataset's default places
    channels: int = 1  # image channels fed to the network
    image_size: int = 28  # square input size fed to the network (crop size for ImageFolder)
    num_classes: int = 10  # number of classes
    subset: Optional[int] = None  # cap on train/val/test sizes (smoke runs); None = everything
    val_size: int = 5000  # images held out of train for validation (fixed split seed)
    split_seed: int = 0  # seed of the train/val split, independent of the run seed
    augment: bool = False  # random crop (pad 4 / resize crop) + flip where the dataset allows
    flip: bool = False  # horizontal flip in augmentation (on for CIFAR/ImageNet)
    normalize: bool = True  # subtract the train mean / divide by std per channel
    download: bool = True  # let torchvision download when no local copy exists
    num_workers: int = 2  # DataLoader workers (ImageFolder only; tensor datasets need none)
    device_resident: bool = True  # hold in-memory datasets on the training device (GPU)
    synthetic_size: int = 2048  # images per split for the synthetic dataset


@dataclass
class TrainerConfig:
    name: str = "default"  # preset label stored with every run
    max_epochs: int = 30  # training epochs
    max_steps: int = -1  # stop after this many optimizer steps (-1 = no cap)
    batch_size: int = 128  # images per step
    eval_batch_size: int = 1024  # images per validation/test step
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.04  # peak learning rate
    momentum: float = 0.9  # SGD momentum
    nesterov: bool = False  # SGD Nesterov momentum
    weight_decay: float = 2e-4  # L2 / decoupled weight decay
    schedule: str = "poly"  # poly (linear decay, the paper's) | cosine | onecycle | constant
    warmup_epochs: float = 0.0  # linear warmup length (poly/cosine/constant)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    accelerator: str = "auto"  # auto | cpu | gpu (refused where no GPU is visible)
    devices: Any = 1  # Lightning devices
    precision: str = "auto"  # auto (bf16-mixed on a GPU or a bf16 CPU, else 32) | 32 | bf16-mixed | 16-mixed
    channels_last: str = "auto"  # auto (with bf16 auto: GPU or bf16 CPU) | true | false
    deterministic: bool = False  # torch deterministic algorithms (slower)
    compile: bool = False  # torch.compile the network
    val_every: int = 1  # validate every N epochs (the last epoch always validates)
    checkpoint: bool = False  # save the final weights (last.ckpt) in the run dir
    checkpoint_every: int = 1  # epochs between resume checkpoints, 0 = off
    keep_checkpoints: int = 1  # newest resume checkpoints kept
    progress_bar: str = "auto"  # auto (when stdout is a terminal) | true | false
    test: bool = True  # evaluate on the test split after training
    chance_epochs: int = 2  # epochs after which a run still at chance with no loss drop is stopped
    log_every_n_steps: int = 50  # metrics logging interval (CSV logger)
    latency: bool = False  # after an ok run, time CPU inference (onnxruntime, torch): latency_* columns
    latency_threads: int = 1  # CPU threads the latency is measured with (stored as latency_threads)


@dataclass
class StudyConfig:
    name: str = "default"  # study name: the results store folder runs/<name>/
    seeds: int = 1  # runs per design point, seeds seed .. seed+seeds-1
    rerun: Any = False  # retrain stored points: true | stale (older dse.TRAINING_SEMANTICS) | false
    note: str = ""  # free text stored with the sweep commands in the report
    trial: Optional[int] = None  # Optuna trial number when run by the dse_optuna sweeper (set by it)


@dataclass
class StoreConfig:
    url: Optional[str] = None  # SQLAlchemy URL; None = sqlite:///<paths.runs>/<study.name>/results.db


@dataclass
class PathsConfig:
    runs: str = "runs"  # root of study folders (stores, Hydra outputs), relative to the launch dir


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)  # the network (see conf/model/)
    data: DataConfig = field(default_factory=DataConfig)  # the dataset (see conf/data/)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)  # the solver (conf/trainer/)
    study: StudyConfig = field(default_factory=StudyConfig)  # which study a run belongs to
    store: StoreConfig = field(default_factory=StoreConfig)  # where results are appended
    paths: PathsConfig = field(default_factory=PathsConfig)  # output locations
    logger: Optional[dict[str, Any]] = None  # a Lightning logger `_target_` node (conf/logger/); null = none
    seed: int = 0  # global seed (model init, shuffling, augmentation)
    jobs_per_gpu: int = 1  # multirun jobs per visible GPU (job N: GPU N // jobs_per_gpu mod GPUs)


def data_config(node: Mapping[str, Any]) -> DataConfig:
    """A data node (or a checkpoint's plain dict) as the typed :class:`DataConfig`, so the schema
    owns every default; unknown keys (an older checkpoint's) are dropped."""
    raw = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    known = {f.name for f in fields(DataConfig)}
    return OmegaConf.to_object(OmegaConf.merge(DataConfig, {k: v for k, v in raw.items() if k in known}))


@functools.cache
def register_configs() -> None:
    """Register the schema as ``base_config`` (``conf/config.yaml``'s first default), by the Hydra entry
    points (not on import: the store reads spec defaults without Hydra), once a process."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="base_config", node=Config)


# ${dse_study_sqlite:RUNS,STUDY,FILE}: the SQLite URL of a file in a study's folder
OmegaConf.register_new_resolver("dse_study_sqlite", lambda runs, study, name: sqlite_url(
    study_file(Path(runs), study, name)), replace=True)
