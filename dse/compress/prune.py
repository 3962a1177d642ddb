"""Magnitude pruning of a Fire network's convolutions to exact per-layer densities (Deep
Compression's first stage), with ``torch.nn.utils.prune``: an integer amount keeps exactly that many
weights, and the hook holds the mask while retraining. Biases and BatchNorm are never pruned."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import torch
from torch import nn
from torch.nn.utils import prune

from dse.errors import ConfigError
from dse.text import comma_list

# SqueezeNet paper, Table 1: kept fraction of each layer's weights (squeeze, expand1x1, expand3x3).
TABLE1_FIRE: dict[str, tuple[float, float, float]] = {
    "fire2": (1.0, 1.0, 0.33), "fire3": (1.0, 1.0, 0.33), "fire4": (1.0, 1.0, 0.33),
    "fire5": (1.0, 1.0, 0.33), "fire6": (1.0, 0.5, 0.33), "fire7": (0.5, 1.0, 0.33),
    "fire8": (1.0, 0.5, 0.3), "fire9": (0.5, 1.0, 0.3),
}
TABLE1_STEM, TABLE1_CLASSIFIER = 1.0, 0.2
BRANCHES = ("squeeze", "expand1x1", "expand3x3")


def conv_layers(model: nn.Module) -> dict[str, nn.Conv2d]:
    """Every convolution by module name (``features.fire2.squeeze.conv`` ...), in network order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


def short_name(name: str) -> str:
    """``features.fire2.squeeze.conv`` -> ``fire2.squeeze`` (the names used on the command line)."""
    for prefix in ("features.", "classifier."):
        name = name.removeprefix(prefix)
    return name.removesuffix(".conv")


def classifier_name(model: nn.Module) -> str:
    """Full name of the final convolution (the paper's conv10, whatever it is called here)."""
    return list(conv_layers(model))[-1]


def table1_densities(model: nn.Module) -> dict[str, float]:
    """Table 1 mapped onto a network by name; layers SqueezeNet lacks (fire10+, shortcuts) stay dense."""
    table = {"conv1": TABLE1_STEM, **{f"{fire}.{branch}": d for fire, densities in TABLE1_FIRE.items()
                                      for branch, d in zip(BRANCHES, densities, strict=True)}}
    last = classifier_name(model)
    return {n: TABLE1_CLASSIFIER if n == last else table.get(short_name(n), 1.0) for n in conv_layers(model)}


def _check_density(key: str, value: object) -> float:
    try:
        d = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(key, f"density must be a number in (0, 1] (got {value!r})") from None
    if not 0.0 < d <= 1.0:
        raise ConfigError(key, f"density must be in (0, 1] (got {value!r})")
    return d


def _density_map(text: str) -> dict[str, str]:
    """``fire2.squeeze=0.5,conv10=0.2`` as a layer -> density-text map; every item needs its ``=``."""
    pairs = [item.split("=", 1) for item in comma_list(text)]
    bad = next(("=".join(p) for p in pairs if len(p) != 2), None)
    if bad is not None:
        raise ConfigError("--density", f"{bad!r} is not layer=D (in {text!r})")
    return dict(pairs)


def resolve_densities(model: nn.Module, spec: str | float | Mapping[str, float]) -> dict[str, float]:
    """Per-conv densities from ``table1``, ``uniform:D``, a number or a map (or ``name=D,...``) of
    full or short layer names; unnamed layers stay dense."""
    convs = conv_layers(model)
    if isinstance(spec, str):
        text = spec.strip()
        if text == "table1":
            return table1_densities(model)
        if "=" in text:
            spec = _density_map(text)
        else:
            spec = _check_density("--density", text.removeprefix("uniform:"))
    if not isinstance(spec, Mapping):
        d = _check_density("--density", spec)
        return dict.fromkeys(convs, d)
    by_short = {short_name(n): n for n in convs}
    out = dict.fromkeys(convs, 1.0)
    for key, value in spec.items():
        name = key.strip() if key.strip() in convs else by_short.get(key.strip())
        if name is None:
            raise ConfigError("--density", f"unknown layer {key!r}; layers: {', '.join(by_short)}")
        out[name] = _check_density(f"--density {key}", value)
    return out


def kept_count(density: float, n: int) -> int:
    """ceil(density * n), computed on the decimal value so 0.3 * 147456 is not off by one."""
    return min(n, max(1, math.ceil(Fraction(str(density)) * n)))


def prune_model(model: nn.Module, densities: Mapping[str, float]) -> dict[str, int]:
    """Attach pruning masks in place; the kept count per layer. Pruned entries become +0.0 (not
    -0.0), so a decoded model is bit-identical."""
    convs = conv_layers(model)
    kept: dict[str, int] = {}
    for name, density in densities.items():
        module = convs[name]
        n = module.weight.numel()
        kept[name] = kept_count(density, n)
        prune.l1_unstructured(module, "weight", amount=n - kept[name])
        with torch.no_grad():
            module.weight_orig.mul_(module.weight_mask)
            module.weight_orig.add_(0.0)  # -0.0 + 0.0 = +0.0
    return kept


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Boolean keep-masks of the pruned layers (from the hooks, or from non-zeros once removed)."""
    return {name: (m.weight_mask if hasattr(m, "weight_mask") else m.weight.detach()) != 0
            for name, m in conv_layers(model).items()}


def finalize(model: nn.Module) -> nn.Module:
    """Make pruning permanent: plain ``weight`` tensors with +0.0 where pruned, no hooks."""
    for m in conv_layers(model).values():
        if prune.is_pruned(m) and hasattr(m, "weight_mask"):
            mask = m.weight_mask != 0
            prune.remove(m, "weight")
            with torch.no_grad():
                m.weight.copy_(torch.where(mask, m.weight, torch.zeros_like(m.weight)))
    return model


def nonzero_weights(model: nn.Module) -> int:
    """Non-zero conv weights (what Table 1 and Deep Compression count as the model's weights)."""
    return sum(int((m.weight.detach() != 0).sum()) for m in conv_layers(model).values())


def count_params(model: nn.Module) -> int:
    """Non-zero conv weights plus every other parameter: Table 1's total."""
    other = sum(p.numel() for name, m in model.named_modules() if ".parametrizations" not in name
                for pname, p in m.named_parameters(recurse=False)
                if not (isinstance(m, nn.Conv2d) and pname in ("weight", "weight_orig")))
    return nonzero_weights(model) + other
