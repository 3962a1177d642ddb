"""Per-layer k-means weight sharing with trainable centroids (Deep Compression, stage 2).

Each conv's kept weights become at most ``2**bits`` shared values: a codebook (a parameter) and a
code per weight (a buffer), recombined by a parametrization ``where(mask, codebook[codes], 0)``.
Autograd sums the gradients of the weights sharing a centroid, which is Deep Compression's
fine-tuning rule, so ordinary training fine-tunes the centroids and nothing else.
"""

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

    def __init__(self, codebook: torch.Tensor, codes: torch.Tensor, mask: torch.Tensor,
                 bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.codebook = nn.Parameter(codebook.float().clone())
        self.register_buffer("codes", codes.long().clone())
        self.register_buffer("mask", mask.bool().clone())

    def forward(self, original: torch.Tensor) -> torch.Tensor:
        shared = self.codebook[self.codes].to(original.dtype)
        return torch.where(self.mask, shared, torch.zeros((), dtype=shared.dtype,
                                                          device=shared.device))


def check_bits(bits: int) -> int:
    """Validate a bit width (the paper uses 8 and 6; 1..16 are storable)."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ConfigError("--bits", f"must be an integer in 1..{MAX_BITS} (got {bits!r})")
    if not 1 <= bits <= MAX_BITS:
        raise ConfigError("--bits", f"must be in 1..{MAX_BITS} (got {bits})")
    return int(bits)


def kmeans_1d(values: np.ndarray, bits: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, labels) of ``values`` with linear initialisation, as Deep Compression chose: the
    few large (important) weights keep centroids of their own. With at most ``2**bits`` distinct
    values each is its own centroid (exact)."""
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
    """Replace every conv weight by a shared-weight parametrization in place (``bits`` may be a
    per-layer map); only kept weights are clustered, and pruned ones stay exactly zero."""
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
    """Bake the shared weights into plain tensors, in place. Not on a ``deepcopy`` still in use
    (it shares the parametrized class): :func:`dse.compress.storage.plain_state_dict` then."""
    for module in conv_layers(model).values():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model
