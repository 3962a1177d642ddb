"""Deep Compression's two stages on a Fire network's convolution weights (never biases or BatchNorm).
Pruning to exact per-layer densities with ``torch.nn.utils.prune`` (an integer amount keeps exactly
that many; the hook holds the mask while retraining). k-means weight sharing as a parametrization
``where(mask, codebook[codes], 0)``: autograd sums the gradients sharing a centroid (the paper's
fine-tuning rule), so ordinary training fine-tunes the centroids only."""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn
from torch.nn.utils import parametrize, prune

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


def _check_density(key: str, value: object) -> float:
    try:
        d = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(key, f"density must be a number in (0, 1] (got {value!r})") from None
    if not 0.0 < d <= 1.0:
        raise ConfigError(key, f"density must be in (0, 1] (got {value!r})")
    return d


def resolve_densities(model: nn.Module, spec: str | Mapping[str, float]) -> dict[str, float]:
    """Per-conv densities from ``table1``, ``uniform:D``, D or ``layer=D,...`` (unnamed layers stay dense)."""
    convs = conv_layers(model)
    if isinstance(spec, str):
        text = spec.strip()
        if text == "table1":  # mapped by name; layers SqueezeNet lacks (fire10+, shortcuts) stay dense
            table = {"conv1": TABLE1_STEM, **{f"{fire}.{branch}": d for fire, densities in TABLE1_FIRE.items()
                                              for branch, d in zip(BRANCHES, densities, strict=True)}}
            last = classifier_name(model)
            return {n: TABLE1_CLASSIFIER if n == last else table.get(short_name(n), 1.0) for n in convs}
        if "=" not in text:
            return dict.fromkeys(convs, _check_density("--density", text.removeprefix("uniform:")))
        pairs = [item.split("=", 1) for item in comma_list(text)]  # fire2.squeeze=0.5,conv10=0.2
        if bad := next(("=".join(p) for p in pairs if len(p) != 2), None):
            raise ConfigError("--density", f"{bad!r} is not layer=D (in {text!r})")
        spec = dict(pairs)
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


MAX_BITS = 16


class SharedWeights(nn.Module):
    """Parametrization: a weight rebuilt from a codebook, per-weight codes and a mask (``where``, not
    ``* mask``: a negative centroid times 0 is -0.0, and the file stores +0.0)."""

    def __init__(self, codebook: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.codebook = nn.Parameter(codebook.float().clone())
        self.register_buffer("codes", codes.long().clone())
        self.register_buffer("mask", mask.bool().clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        shared = self.codebook[self.codes].to(original.dtype)
        return torch.where(self.mask, shared, torch.zeros((), dtype=shared.dtype, device=shared.device))


def check_bits(bits: int) -> int:
    """Validate a bit width (the paper uses 8 and 6; 1..16 are storable)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ConfigError("--bits", f"must be an integer in 1..{MAX_BITS} (got {bits!r})")
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError("--bits", f"must be in 1..{MAX_BITS} (got {bits})")
    return int(bits)


def kmeans_1d(values: np.ndarray, bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, labels) of ``values``, linear initialisation as Deep Compression chose (large
    weights keep centroids of their own); few distinct values are their own centroids."""
    values = np.asarray(values, dtype=np.float64).ravel()
    distinct = np.unique(values)
    k = 1 << check_bits(bits)
    if len(distinct) <= k:
        return distinct.astype(np.float32), np.searchsorted(distinct, values)
    init = np.linspace(values.min(), values.max(), k).reshape(-1, 1)
    km = KMeans(n_clusters=k, init=init, n_init=1, random_state=seed).fit(values.reshape(-1, 1))
    return km.cluster_centers_.ravel().astype(np.float32), km.labels_.astype(np.int64)


def quantize_model(model: nn.Module, bits: int, seed: int = 0) -> dict[str, SharedWeights]:
    """Share every conv's kept weights in place; pruned ones stay 0."""
    keep = masks(model)
    finalize(model)
    b = check_bits(bits)
    out: dict[str, SharedWeights] = {}
    for name, module in conv_layers(model).items():
        w = module.weight.detach()
        mask = keep[name].to(w.device)
        centroids, labels = kmeans_1d(w[mask].cpu().numpy(), b, seed)
        codes = torch.zeros(w.shape, dtype=torch.long, device=w.device)
        codes[mask] = torch.from_numpy(labels).to(w.device)
        share = SharedWeights(torch.from_numpy(centroids).to(w.device), codes, mask, b)
        parametrize.register_parametrization(module, "weight", share)
        module.parametrizations.weight.original.requires_grad_(False)
        out[name] = share
    return out


def shared(module: nn.Module) -> SharedWeights | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    found = [p for p in module.parametrizations.weight if isinstance(p, SharedWeights)]
    return found[0] if found else None


def strip(model: nn.Module) -> nn.Module:
    """Bake the shared weights into plain tensors in place (not on a ``deepcopy`` still in use)."""
    for module in conv_layers(model).values():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model
