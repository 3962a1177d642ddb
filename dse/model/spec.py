"""Metaparameters -> network spec -> analytic report (the paper's Table 1 for any design point) in pure
Python, so ``dse-model`` answers instantly and a sweeper rejects an over-budget point before training.
MACs count convolutions only (torchvision's convention); sizes in MB and MiB, as the paper mixes them."""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from dse.config import ModelConfig, StemConfig
from dse.errors import ConfigError
from dse.metrics import to_mb, to_mib
from dse.text import table

BYPASS_KINDS = ("none", "simple", "complex")  # model.bypass: the paper's network-wide choice
SHORTCUT_KINDS = ("none", "identity", "conv")  # Fire.shortcut: what that choice puts on one module
POOL_KERNEL, POOL_STRIDE = 3, 2
SIZE_BITS = (32, 16, 8, 6)
# numeric metaparameters: type and default for a partial dict (None = required; the schema's
# where it has one; the image shape an ImageNet network's, as torchvision's)
NUMBERS: dict[str, tuple[type, Any]] = {
    "base_e": (int, None), "incr_e": (int, None), "freq": (int, None), "sr": (float, None),
    "pct3x3": (float, None), "n_fire": (int, ModelConfig.n_fire),
    "dropout": (float, ModelConfig.dropout), "in_channels": (int, 3), "num_classes": (int, 1000),
}
SPEC_KEYS = (*NUMBERS, "bypass", "batch_norm", "stem", "pool_after")  # all the spec reads


@dataclass(frozen=True)
class Conv:
    """A plain convolution layer (the stem ``conv1`` or the classifier ``conv10``)."""

    name: str
    in_ch: int
    out_ch: int
    kernel: int
    stride: int = 1
    padding: int = 0
    batch_norm: bool = False

    @property
    def params(self) -> int:
        return conv_params(self.in_ch, self.out_ch, self.kernel, self.batch_norm)

    def macs(self, hw: int) -> int:
        return hw * self.in_ch * self.out_ch * self.kernel**2


def conv_params(cin: int, cout: int, k: int, bn: bool) -> int:
    """Weights plus bias (or BatchNorm's scale and shift) of one convolution; none when empty."""
    return 0 if cout == 0 else cin * cout * k * k + (2 * cout if bn else cout)


@dataclass(frozen=True)
class Fire:
    """A Fire module: squeeze 1x1 -> (expand 1x1 || expand 3x3), plus an optional shortcut, one of
    :data:`SHORTCUT_KINDS` (a word of its own, never mistaken for the config's ``bypass``)."""

    name: str
    in_ch: int
    s1x1: int
    e1x1: int
    e3x3: int
    shortcut: str = "none"
    batch_norm: bool = False

    @property
    def out_ch(self) -> int:
        return self.e1x1 + self.e3x3

    @property
    def params(self) -> int:
        bn = self.batch_norm
        p = conv_params(self.in_ch, self.s1x1, 1, bn)
        p += conv_params(self.s1x1, self.e1x1, 1, bn) + conv_params(self.s1x1, self.e3x3, 3, bn)
        return p + (conv_params(self.in_ch, self.out_ch, 1, bn) if self.shortcut == "conv" else 0)

    def macs(self, hw: int) -> int:
        m = self.in_ch * self.s1x1 + self.s1x1 * self.e1x1 + 9 * self.s1x1 * self.e3x3
        return hw * (m + (self.in_ch * self.out_ch if self.shortcut == "conv" else 0))


@dataclass(frozen=True)
class NetSpec:
    stem: Conv
    fires: tuple[Fire, ...]
    classifier: Conv
    pool_after: tuple[str, ...]
    dropout: float

    @property
    def layers(self) -> tuple[Conv | Fire, ...]:
        return (self.stem, *self.fires, self.classifier)

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)


def pool_out(size: int, kernel: int = POOL_KERNEL, stride: int = POOL_STRIDE) -> int:
    """A ceil-mode max-pool's output length (PyTorch drops a last window starting past the input)."""
    out = (size - kernel + stride - 1) // stride + 1
    if (out - 1) * stride >= size:
        out -= 1
    return out


def _number(cfg: Mapping[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            value = kind(value)
        except (TypeError, ValueError):
            raise ConfigError(f"model.{key}", f"must be a number (got {value!r})") from None
    if kind is int and (not float(value).is_integer()):
        raise ConfigError(f"model.{key}", f"must be an integer (got {value!r})")
    return kind(value)


def validate_metaparameters(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every metaparameter of a model node (a DictConfig or a checkpoint's dict), checked and normalised."""
    m = {key: _number(cfg, key, kind, default) for key, (kind, default) in NUMBERS.items()}
    m["bypass"] = str(cfg.get("bypass", ModelConfig.bypass))
    checks = [
        *((key, m[key] >= lo, f"must be an integer >= {lo}") for key, lo in (
            ("base_e", 1), ("incr_e", 0), ("freq", 1), ("n_fire", 1), ("in_channels", 1),
            ("num_classes", 1))),
        ("sr", m["sr"] > 0 and math.isfinite(m["sr"]), "must be > 0 (paper range (0, 1])"),
        ("pct3x3", 0.0 <= m["pct3x3"] <= 1.0, "must be in [0, 1]"),
        ("dropout", 0.0 <= m["dropout"] < 1.0, "must be in [0, 1)"),
        ("bypass", m["bypass"] in BYPASS_KINDS, f"must be one of {', '.join(BYPASS_KINDS)}"),
    ]
    for key, ok, rule in checks:
        if not ok:
            raise ConfigError(f"model.{key}", f"{rule} (got {m[key]!r})")
    m["batch_norm"] = bool(cfg.get("batch_norm", ModelConfig.batch_norm))
    stem = cfg.get("stem") or {}
    m["stem"] = {f.name: _number(stem, f.name, int, f.default) for f in fields(StemConfig)}
    for k, v in m["stem"].items():
        if v < (lo := 0 if k == "padding" else 1):
            raise ConfigError(f"model.stem.{k}", f"must be an integer >= {lo} (got {v})")
    pools = cfg.get("pool_after")
    m["pool_after"] = [str(p) for p in (pools if pools is not None else [])]
    twice = sorted({p for p in m["pool_after"] if m["pool_after"].count(p) > 1})
    if twice:
        raise ConfigError("model.pool_after", f"lists {', '.join(map(repr, twice))} twice "
                                              "(a layer is followed by one max-pool at most)")
    return m


def _position(layer: str) -> tuple[int, str]:
    """Where a layer sits: conv1 is 1, fireN is N, the classifier n_fire+2 (unknown names last)."""
    m = re.fullmatch(r"(?:conv|fire)(\d+)", layer)
    return (int(m.group(1)), "") if m else (sys.maxsize, layer)


def spec_inputs(model: Mapping[str, Any]) -> dict[str, Any]:
    """The model keys that decide the network (``pool_after`` in network order, once each): what
    :func:`dse.store.config_hash` hashes, so a label or a pool order never splits a design point."""
    out = {key: model[key] for key in SPEC_KEYS if key in model}
    if isinstance(out.get("pool_after"), Sequence) and not isinstance(out["pool_after"], str):
        out["pool_after"] = sorted(dict.fromkeys(map(str, out["pool_after"])), key=_position)
    return out


def shortcut_kind(bypass: str, in_ch: int, out_ch: int) -> str:
    """The :data:`SHORTCUT_KINDS` entry a network-wide ``bypass`` gives a module of these widths."""
    if bypass != "none" and in_ch == out_ch:
        return "identity"
    return "conv" if bypass == "complex" else "none"


def build_spec(cfg: Mapping[str, Any]) -> NetSpec:
    m = validate_metaparameters(cfg)
    bn, st = m["batch_norm"], m["stem"]
    stem = Conv("conv1", m["in_channels"], st["channels"], st["kernel"], st["stride"], st["padding"], bn)
    fires: list[Fire] = []
    cin = stem.out_ch
    for i in range(m["n_fire"]):  # the paper's widths of fire{i + 2}
        e = m["base_e"] + m["incr_e"] * (i // m["freq"])
        e3 = round(m["pct3x3"] * e)
        s, e1 = max(1, round(m["sr"] * e)), e - e3
        fires.append(Fire(f"fire{i + 2}", cin, s, e1, e3, shortcut_kind(m["bypass"], cin, e), bn))
        cin = e
    head = Conv(f"conv{m['n_fire'] + 2}", cin, m["num_classes"], 1)
    names = {stem.name, head.name, *(f.name for f in fires)}
    for p in m["pool_after"]:
        if p not in names:
            raise ConfigError("model.pool_after", f"unknown layer {p!r}; allowed: conv1, "
                                                  f"fire2..fire{m['n_fire'] + 1} (not {head.name})")
        if p == head.name:
            raise ConfigError("model.pool_after", f"cannot pool after the classifier {p!r}")
    return NetSpec(stem, tuple(fires), head, tuple(m["pool_after"]), m["dropout"])


@dataclass(frozen=True)
class LayerRow:
    """One line of the per-layer table; ``bypass`` is a Fire module's ``shortcut`` (the JSON's name)."""

    name: str
    out_shape: tuple[int, int, int]  # H, W, C
    s1x1: int | None
    e1x1: int | None
    e3x3: int | None
    params: int
    macs: int
    bypass: str | None = None


@dataclass(frozen=True)
class ModelReport:
    input_shape: tuple[int, int, int]  # C, H, W
    layers: tuple[LayerRow, ...]
    params: int
    macs: int
    peak_activation: int  # largest single activation tensor, elements per image

    def size_bytes(self, bits: int = 32) -> int:
        return math.ceil(self.params * bits / 8)

    @property
    def size_bytes_fp32(self) -> int:
        return self.size_bytes(32)

    @property
    def size_mib(self) -> float:
        return to_mib(self.size_bytes_fp32)

    @property
    def size_mb(self) -> float:
        return to_mb(self.size_bytes_fp32)

    def to_dict(self) -> dict[str, Any]:
        sizes = {str(b): {"bytes": (n := self.size_bytes(b)), "MB": to_mb(n), "MiB": to_mib(n)}
                 for b in SIZE_BITS}
        return dict(input_shape=list(self.input_shape), params=self.params, macs=self.macs,
                    size_bytes_fp32=self.size_bytes_fp32, size_mb_fp32=self.size_mb,
                    size_mib_fp32=self.size_mib, sizes=sizes, peak_activation=self.peak_activation,
                    peak_activation_bytes_fp32=4 * self.peak_activation,
                    layers=[dict(asdict(r), out_shape=list(r.out_shape)) for r in self.layers])


def analyze(spec: NetSpec, image_size: int) -> ModelReport:
    """An input size propagated through the network, layer by layer; ConfigError if it collapses."""
    rows: list[LayerRow] = []
    h = w = image_size
    peak = spec.stem.in_ch * image_size**2
    for layer in spec.layers:
        if isinstance(layer, Conv):
            h, w = ((x + 2 * layer.padding - layer.kernel) // layer.stride + 1 for x in (h, w))
        if h < 1 or w < 1:
            raise ConfigError(f"model.{layer.name}", f"spatial size shrinks below 1x1 at {layer.name} "
                              f"(input {image_size}px); use a larger input, a smaller stem stride or "
                              "fewer pool_after entries")
        fire = layer if isinstance(layer, Fire) else None
        widths = (fire.s1x1, fire.e1x1, fire.e3x3) if fire else (None, None, None)
        rows.append(LayerRow(layer.name, (h, w, layer.out_ch), *widths, layer.params, layer.macs(h * w),
                             fire.shortcut if fire else None))
        peak = max(peak, h * w * layer.out_ch, h * w * (fire.s1x1 if fire else 0))
        if layer.name in spec.pool_after:
            h, w = (pool_out(x) for x in (h, w))
            if h < 1 or w < 1:
                raise ConfigError("model.pool_after", "spatial size shrinks below 1x1 at the max-pool "
                                  f"after {layer.name} (input {image_size}px); remove a pool or use a "
                                  "larger input")
            rows.append(LayerRow(f"maxpool/{layer.name}", (h, w, layer.out_ch), None, None, None, 0, 0))
    rows.append(LayerRow("avgpool", (1, 1, rows[-1].out_shape[2]), None, None, None, 0, 0))
    return ModelReport((spec.stem.in_ch, image_size, image_size), tuple(rows),
                       sum(r.params for r in rows), sum(r.macs for r in rows), peak)


def _fmt(n: float | int | None) -> str:
    return "" if n is None else f"{n:,}"


def format_table(report: ModelReport, title: str = "") -> str:
    head = ("layer", "output HxWxC", "s1x1", "e1x1", "e3x3", "params", "MACs")
    body = [(r.name + (f" [{r.bypass}]" if r.bypass not in (None, "none") else ""),
             "x".join(map(str, r.out_shape)), _fmt(r.s1x1), _fmt(r.e1x1), _fmt(r.e3x3),
             _fmt(r.params), _fmt(r.macs)) for r in report.layers]
    c, h, w = report.input_shape
    out = [*([title] if title else []), table(head, body, align=("left", "left", *["right"] * 5)), "",
           f"input          {c}x{h}x{w}", f"params         {report.params:,}",
           f"MACs           {report.macs:,} ({report.macs / 1e6:.1f} M)"]
    for b in SIZE_BITS:
        n = report.size_bytes(b)
        out.append(f"size {b:>2}-bit    {n:,} B = {to_mb(n):.3f} MB = {to_mib(n):.3f} MiB")
    out.append(f"peak activation {report.peak_activation:,} values "
               f"({to_mib(4 * report.peak_activation):.2f} MiB fp32 per image)")
    return "\n".join(out)
