"""One training run as one row (the ``runs`` columns of docs/CONTRACTS.md) and the hash keying it:
:class:`RunRecord`'s fields are the columns; :func:`config_hash`, a run's identity everywhere,
hashes only what changes the trained network's numbers (never the study, seed, store or paths)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from types import MappingProxyType, UnionType
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

from omegaconf import DictConfig, OmegaConf

import dse
from dse.model.spec import spec_inputs
from dse.paths import ROOT

HASHED_GROUPS = ("model", "data", "trainer")
# the model counts through its spec's inputs (dse.model.spec.spec_inputs): name is not one of them
NON_SEMANTIC: dict[str, frozenset[str]] = {
    "data": frozenset({"root", "download", "num_workers", "device_resident"}),
    "trainer": frozenset({"name", "progress_bar", "checkpoint", "accelerator", "devices",
                          "log_every_n_steps", "test", "checkpoint_every", "keep_checkpoints",
                          "latency", "latency_threads"}),
}
STATUSES = ("ok", "failed", "diverged", "pruned")
FINISHED = ("ok", "diverged")  # trained to its end: a stored one counts as done (the skip rule)
# a MOASHA-pruned run's error column: dse.sweep.moasha writes it, dse-store show and dse-report read it
PRUNED_AT = ("pruned by MOASHA at rung epoch {rung}: front {rank} of the {of} trials there, "
             "not in the top {top} that go on")
_PRUNED_AT = re.compile(re.sub(r"\\\{(\w+)\\\}", lambda m: f"(?P<{m[1]}>\\d+)", re.escape(PRUNED_AT)))


def pruned_at(error: Any) -> dict[str, int] | None:
    """The ``rung``, ``rank``, ``of`` and ``top`` of a MOASHA-pruned run, read from its error column."""
    got = _PRUNED_AT.match(str(error))
    return {k: int(v) for k, v in got.groupdict().items()} if got else None


def utcnow_iso() -> str:
    """UTC ISO-8601 with ms: string order is time order (``+00:00``, which Python 3.10 reads)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class RunRecord:
    """A row of ``runs``, filled as training goes; metrics stay ``None`` until measured."""

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    study: str = "default"
    config_hash: str = ""
    seed: int = 0
    status: str = "ok"
    error: Optional[str] = None
    model: str = ""
    data: str = ""
    trainer: str = ""
    base_e: int = 0
    incr_e: int = 0
    freq: int = 0
    n_fire: int = 0
    sr: float = 0.0
    pct3x3: float = 0.0
    dropout: float = 0.0
    bypass: str = "none"
    batch_norm: bool = False
    stem_channels: int = 0
    stem_kernel: int = 0
    stem_stride: int = 0
    pool_after: str = ""
    params: int = 0
    size_bytes: int = 0
    macs: int = 0
    image_size: int = 0
    num_classes: int = 0
    subset: Optional[int] = None
    max_epochs: int = 0
    val_top1: Optional[float] = None
    val_top5: Optional[float] = None
    val_loss: Optional[float] = None
    test_top1: Optional[float] = None
    test_top5: Optional[float] = None
    test_loss: Optional[float] = None
    epochs: int = 0
    train_seconds: float = 0.0
    images_per_s: Optional[float] = None
    resumed_from_epoch: Optional[int] = None
    # CPU inference latency of the trained network (dse.metrics.LATENCY; trainer.latency=true)
    latency_ms: Optional[float] = None
    latency_p90_ms: Optional[float] = None
    latency_b64_ms: Optional[float] = None
    latency_b64_p90_ms: Optional[float] = None
    torch_latency_ms: Optional[float] = None
    torch_latency_p90_ms: Optional[float] = None
    torch_latency_b64_ms: Optional[float] = None
    torch_latency_b64_p90_ms: Optional[float] = None
    latency_threads: Optional[int] = None
    trial: Optional[int] = None
    slurm_job: Optional[str] = None
    device: str = ""
    torch_version: str = ""
    dse_version: str = ""
    git_commit: str = ""
    started_at: str = field(default_factory=utcnow_iso)
    finished_at: str = ""
    log_uri: str = ""
    overrides: str = ""
    config: str = ""
    training_semantics: Optional[int] = None  # dse.TRAINING_SEMANTICS; null: before it was stored
    precision: Optional[str] = None  # as resolved from trainer.precision=auto; null: not stored then
    channels_last: Optional[bool] = None  # as resolved from trainer.channels_last

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, cfg: DictConfig | Mapping[str, Any], **values: Any) -> RunRecord:
        """Every column the resolved config determines (plus provenance); ``values`` win."""
        c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
        row: dict[str, Any] = {col: _as_column(col, v) for col, key in CONFIG_KEYS.items()
                               if (v := _select(c, key)) is not None}
        if (pools := _select(c, "model.pool_after")) is not None:
            row["pool_after"] = ",".join(map(str, pools))
        row.update(config_hash=config_hash(c), config=json.dumps(c, sort_keys=True, default=str),
                   training_semantics=dse.TRAINING_SEMANTICS)
        if not set(PROVENANCE) <= values.keys():  # given (synthetic rows): no torch import
            row.update(provenance())
        row.update(values)
        return cls(**row)


RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
PROVENANCE = ("torch_version", "dse_version", "git_commit")

# column <- the dotted config key it is read from. num_classes is the dataset's (model.num_classes
# interpolates it): what the run was scored on, and the chance level the divergence check uses.
CONFIG_KEYS: dict[str, str] = {
    "study": "study.name", "seed": "seed", "model": "model.name", "data": "data.name",
    "trainer": "trainer.name", **{k: f"model.{k}" for k in (
        "base_e", "incr_e", "freq", "n_fire", "sr", "pct3x3", "dropout", "bypass", "batch_norm")},
    "stem_channels": "model.stem.channels", "stem_kernel": "model.stem.kernel",
    "stem_stride": "model.stem.stride", "image_size": "data.image_size",
    "num_classes": "data.num_classes", "subset": "data.subset", "max_epochs": "trainer.max_epochs",
    "trial": "study.trial",
}


def split_optional(hint: Any) -> tuple[Any, bool]:
    """``(int, True)`` for ``Optional[int]``, ``(int, False)`` for ``int``."""
    args = get_args(hint)
    if get_origin(hint) in (Union, UnionType) and type(None) in args:
        return next(a for a in args if a is not type(None)), True
    return hint, False


COLUMN_TYPES: dict[str, tuple[type, bool]] = {
    col: split_optional(hint) for col, hint in get_type_hints(RunRecord).items()}

MAX_TEXT = 256 * 1024  # characters: a whole config JSON fits many times, a runaway file does not
INT64 = (-(2**63), 2**63 - 1)
# what a row may not lack: without them it is no run of a design point (config_hash "" matches none)
REQUIRED = ("run_id", "study", "config_hash", "seed", "status")


def checked_row(values: Any) -> RunRecord:
    """A kept-rows JSON line as a :class:`RunRecord`, or ``ValueError(column, why)``: a value of the
    wrong type would break every later read."""
    if not isinstance(values, Mapping):
        raise ValueError("row", f"a JSON object, not {type(values).__name__}")
    for col in REQUIRED:
        if col not in values:
            raise ValueError(col, "missing")
    for col, value in values.items():
        if col not in COLUMN_TYPES:
            raise ValueError(col, "not a runs column")
        _check_value(col, value)
    if values["status"] not in STATUSES:
        raise ValueError("status", f"{values['status']!r} is not one of {', '.join(STATUSES)}")
    for col in ("run_id", "config_hash"):
        if not values[col] or len(values[col]) > 64:
            raise ValueError(col, "must be 1 to 64 characters")
    return RunRecord(**{c: _as_column(c, v) for c, v in values.items()})


def _check_value(col: str, value: Any) -> None:
    kind, optional = COLUMN_TYPES[col]
    if value is None:
        if not optional:
            raise ValueError(col, "must not be null")
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok, what = {
        bool: (isinstance(value, bool), "true or false"),
        int: (number and isinstance(value, int) and INT64[0] <= value <= INT64[1], "an integer in int64"),
        float: (number and (optional or math.isfinite(value)), "a number" if optional else "a finite number"),
        str: (isinstance(value, str) and len(value) <= MAX_TEXT, f"text of at most {MAX_TEXT:,} characters"),
    }[kind]
    if not ok:
        text = repr(value)  # or, where long, its type and size: an error is one line
        shown = text if len(text) <= 40 else f"a {type(value).__name__} of {len(text):,} characters"
        raise ValueError(col, f"must be {what}, not {shown}")


def run_dtypes(nullable: bool = False) -> dict[str, str]:
    """Each column's pandas dtype, NA-capable where ``Optional`` (or every int and bool, ``nullable``)."""
    plain = {int: "int64", float: "float64", bool: "bool", str: "object"}
    na = {**plain, int: "Int64", bool: "boolean"}
    return {col: (na if optional or nullable else plain)[kind]
            for col, (kind, optional) in COLUMN_TYPES.items()}


# frame()'s dtypes: text columns stay as the driver returns them
FRAME_DTYPES = {col: dtype for col, dtype in run_dtypes().items() if dtype != "object"}


def _as_column(col: str, value: Any) -> Any:
    """A config value in its column's type: ``sr: 1`` is stored as 1.0, as a float column holds."""
    kind, _ = COLUMN_TYPES[col]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and isinstance(value, int):
        return bool(value)
    return value


def _select(cfg: Mapping[str, Any], dotted: str) -> Any:
    """``cfg[a][b]...`` for ``"a.b"``, or ``None`` where any level is missing."""
    return functools.reduce(lambda node, key: node.get(key) if isinstance(node, Mapping) else None,
                            dotted.split("."), cfg)


def _canonical(x: Any) -> Any:
    """JSON-ready, whatever way a number was written: floats to 12 digits, integral ones as ints."""
    if x is None or isinstance(x, (bool, str, int)):
        return x
    if isinstance(x, float):
        if not math.isfinite(x):
            return repr(x)
        x = float(f"{x:.12g}")
        return int(x) if x.is_integer() else x
    if isinstance(x, Mapping):
        return {str(k): _canonical(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    if hasattr(x, "item"):  # numpy / torch scalars
        return _canonical(x.item())
    return str(x)


def config_hash(cfg: DictConfig | Mapping[str, Any]) -> str:
    """16 hex chars of sha256 over the spec inputs, ``data`` and ``trainer`` minus :data:`NON_SEMANTIC`."""
    c = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    kept = {g: spec_inputs(c.get(g) or {}) if g == "model" else
            {k: v for k, v in (c.get(g) or {}).items() if k not in NON_SEMANTIC[g]}
            for g in HASHED_GROUPS}
    text = json.dumps(_canonical(kept), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def provenance() -> Mapping[str, str]:
    """``torch_version``, ``dse_version``, ``git_commit`` (or ``"unknown"``), read once a process."""
    import torch  # training has imported it already; this only reads the version

    commit = "unknown"
    if (ROOT / ".git").exists():  # a non-editable install must not report an enclosing repo
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], check=True,
                                    capture_output=True, text=True, timeout=10).stdout.strip() or commit
    return MappingProxyType({"torch_version": str(torch.__version__), "dse_version": dse.__version__,
                             "git_commit": commit})


def slurm_job(env: Mapping[str, str] = os.environ) -> Optional[str]:
    """The Slurm job this process runs in, as squeue names it."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None
