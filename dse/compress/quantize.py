"""Per-layer k-means weight sharing with trainable centroids (Deep Compression, stage 2): a
parametrization ``where(mask, codebook[codes], 0)``, so autograd sums the gradients sharing a
centroid (the paper's fine-tuning rule) and ordinary training fine-tunes the centroids only."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from sklearn.cluster import KMeans
from torch import nn
from torch.nn.utils import parametrize

from dse.compress.prune import conv_layers, finalize, masks
from dse.errors import ConfigError

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


def quantize_model(model: nn.Module, bits: int | Mapping[str, int], seed: int = 0
                   ) -> dict[str, SharedWeights]:
    """Share every conv's kept weights in place (``bits`` may be per layer); pruned ones stay 0."""
    keep = masks(model)
    finalize(model)
    out: dict[str, SharedWeights] = {}
    for name, module in conv_layers(model).items():
        b = check_bits(bits[name] if isinstance(bits, Mapping) else bits)
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
    """The layer's weight-sharing parametrization, if it has one."""
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
