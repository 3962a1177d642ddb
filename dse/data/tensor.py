"""In-memory datasets as uint8 tensors (on the GPU when training there), each batch indexed, augmented
and normalised by a few tensor ops: per-sample transforms would cost more than the tiny networks' math."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class TensorSplit:
    """One split: uint8 images [N, C, H, W] and int64 labels [N]."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def take(self, idx: torch.Tensor) -> TensorSplit:
        return TensorSplit(self.x[idx], self.y[idx])

    def to(self, device: torch.device | str) -> TensorSplit:
        return TensorSplit(self.x.to(device, non_blocking=True), self.y.to(device, non_blocking=True))


def random_crop_flip(x: torch.Tensor, pad: int, flip: bool, gen: torch.Generator | None) -> torch.Tensor:
    """Per-sample random crop (zero padding ``pad``) and horizontal flip, all samples at once."""
    b, _, h, w = x.shape
    dev = x.device
    rdev = gen.device if gen is not None else dev  # CPU draws copied over would sync every step
    if pad > 0:
        xp = F.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=rdev)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device=rdev)
        rows = (oy.to(dev)[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (ox.to(dev)[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        bidx = torch.arange(b, device=dev)[:, None, None, None]
        cidx = torch.arange(x.shape[1], device=dev)[None, :, None, None]
        x = xp[bidx, cidx, rows, cols]
    if flip:
        m = torch.rand(b, generator=gen, device=rdev).to(dev) < 0.5
        x = torch.where(m[:, None, None, None], x.flip(3), x)
    return x


def keyed_seed(*keys: int) -> int:
    """A 63-bit seed from (run seed, epoch[, batch]), the same in every process: keyed by position,
    not advanced since epoch 0, so a resumed run sees the batches an uninterrupted one sees."""
    digest = hashlib.blake2b(",".join(map(str, keys)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class TensorBatches:
    """Epoch by epoch, normalised (image, label) batches of a :class:`TensorSplit`, shuffled and augmented
    by :func:`keyed_seed` generators. ``position``: the next (epoch, first batch), else iteration n is n."""

    def __init__(self, split: TensorSplit, batch_size: int, mean: torch.Tensor, std: torch.Tensor,
                 shuffle: bool = False, drop_last: bool = False, augment: bool = False,
                 flip: bool = False, pad: int = 4, seed: int = 0,
                 position: Callable[[], tuple[int, int]] | None = None) -> None:
        self.split, self.batch_size = split, batch_size
        self.shuffle, self.augment, self.flip, self.pad = shuffle, augment, flip, pad
        self.drop_last = drop_last and len(split) > batch_size
        self.mean, self.std = mean, std
        self.seed, self.position, self._iterations = seed, position, 0

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch, first = self.position() if self.position is not None else (self._iterations, 0)
        self._iterations += 1
        n, dev = len(self.split), self.split.x.device
        order = None
        if self.shuffle:
            g = torch.Generator().manual_seed(keyed_seed(self.seed, epoch))
            order = torch.randperm(n, generator=g).to(dev)
        aug = torch.Generator(device=dev) if self.augment else None
        mean, std = self.mean.to(dev), self.std.to(dev)
        for i in range(first, len(self)):
            idx = slice(i * self.batch_size, (i + 1) * self.batch_size)
            idx = idx if order is None else order[idx]
            x, y = self.split.x[idx], self.split.y[idx]
            x = x.float().div_(255.0)
            if aug is not None:
                aug.manual_seed(keyed_seed(self.seed, epoch, i))
                x = random_crop_flip(x, self.pad, self.flip, aug)
            yield x.sub_(mean).div_(std), y


class StackedBatches:
    """K seeds' training batches as one: images stacked on channels, labels ``[N, K]``."""

    def __init__(self, streams: list[TensorBatches]) -> None:
        self.streams = streams

    def __len__(self) -> int:
        return len(self.streams[0])

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batches in zip(*self.streams, strict=True):
            yield torch.cat([x for x, _ in batches], 1), torch.stack([y for _, y in batches], 1)


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of uint8 images, as [1, C, 1, 1] tensors in [0, 1] units."""
    xf = x[: min(len(x), 20000)].float().div(255.0)
    mean = xf.mean(dim=(0, 2, 3))
    std = xf.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
