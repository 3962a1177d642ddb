"""LightningDataModules for every dataset in ``conf/data/``, built by :func:`build_datamodule`. In-memory
datasets are uint8 tensors (on the GPU when training there), each batch indexed, augmented and normalised
by a few tensor ops: per-sample transforms would cost more than the tiny networks' math."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from dse.config import DataConfig, data_config
from dse.data.sources import SOURCES, load_arrays, source_args

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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


@lru_cache(maxsize=2)
def _prepared_splits(split_seed: int, val_size: int, subset: int | None, normalize: bool, **source: Any
                     ) -> tuple[TensorSplit, TensorSplit, TensorSplit, torch.Tensor, torch.Tensor]:
    """Train/val/test splits and normalisation stats, once per process per data config, so a
    sweep's later runs start at once (docs/BENCHMARKS.md). Nothing downstream mutates them."""
    xtr, ytr, xte, yte = load_arrays(**source)
    g = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(len(ytr), generator=g)  # fixed split, whatever the run seed
    train, val = TensorSplit(xtr, ytr).take(perm[val_size:]), TensorSplit(xtr, ytr).take(perm[:val_size])
    test = TensorSplit(xte, yte)
    if subset:
        train, val, test = (s.take(torch.arange(min(subset, len(s)))) for s in (train, val, test))
    mean, std = channel_stats(train.x) if normalize else (
        torch.zeros(1, train.x.shape[1], 1, 1), torch.ones(1, train.x.shape[1], 1, 1))
    return train, val, test, mean, std


class InMemoryDataModule(L.LightningDataModule):
    """Train/val/test splits held as tensors, moved to the training device once when resident;
    ``position``: (epoch, first batch) of the next training epoch, set by a resuming run."""

    def __init__(self, cfg: DataConfig, batch_size: int, eval_batch_size: int,
                 seed: int | Sequence[int] = 0) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.eval_batch_size = cfg, batch_size, eval_batch_size
        self.seeds = [seed] if isinstance(seed, int) else list(seed)
        self.splits: dict[str, TensorSplit] = {}
        self.position: Callable[[], tuple[int, int]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        c = self.cfg
        train, val, test, self.mean, self.std = _prepared_splits(
            c.split_seed, c.val_size, c.subset, c.normalize, **source_args(c))
        self.splits = {"train": train, "val": val, "test": test}

    def _batches(self, split: str, seed: int = 0) -> TensorBatches:
        if self.trainer is not None and self.trainer.world_size > 1:  # dse.validate refuses it first
            raise RuntimeError(f"in-memory data trains on one device, not {self.trainer.world_size} "
                               "(batches are not sharded per rank): set trainer.devices=1")
        self.setup()
        resident = self.trainer is not None and self.cfg.device_resident
        dev = self.trainer.strategy.root_device if resident else torch.device("cpu")
        data, train = self.splits[split], split == "train"
        if data.x.device != dev:  # one host->device copy per run, not per batch
            self.splits[split] = data = data.to(dev)
        return TensorBatches(
            data, self.batch_size if train else self.eval_batch_size, self.mean, self.std,
            shuffle=train, drop_last=train, augment=train and self.cfg.augment,
            flip=self.cfg.flip, seed=seed, position=self.position if train else None)

    @property
    def num_train(self) -> int:
        self.setup()
        return len(self.splits["train"])

    def train_dataloader(self) -> TensorBatches | StackedBatches:
        """One seed's batches; several seeds' (a fused group's) stacked, from the one copy of the data."""
        streams = [self._batches("train", s) for s in self.seeds]
        return streams[0] if len(streams) == 1 else StackedBatches(streams)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val")

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test")


class ImageFolderDataModule(L.LightningDataModule):
    """An ImageNet-style tree (``root/train``, ``root/val``) read by DataLoader workers."""

    def __init__(self, cfg: DataConfig, batch_size: int, eval_batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.eval_batch_size, self.seed = cfg, batch_size, eval_batch_size, seed

    def setup(self, stage: str | None = None) -> None:
        from torchvision import datasets
        from torchvision import transforms as T

        size, root = self.cfg.image_size, Path(str(self.cfg.root)).expanduser()
        norm = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
        aug = [T.RandomResizedCrop(size)] if self.cfg.augment else [
            T.Resize(int(size * 256 / 224)), T.CenterCrop(size)]
        if self.cfg.flip:
            aug.append(T.RandomHorizontalFlip())
        evaluate = T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), *norm])
        train = datasets.ImageFolder(root / "train", T.Compose([*aug, *norm]))
        val_dir = root / "val" if (root / "val").is_dir() else root / "train"
        val = datasets.ImageFolder(val_dir, evaluate)
        subset = self.cfg.subset
        if subset:
            g = torch.Generator().manual_seed(self.cfg.split_seed)
            train, val = (Subset(d, torch.randperm(len(d), generator=g)[: int(subset)].tolist())
                          for d in (train, val))
        self.train_set, self.val_set = train, val
        self.num_train = len(train)

    def _loader(self, ds: Any, train: bool) -> DataLoader:
        workers = self.cfg.num_workers
        return DataLoader(ds, self.batch_size if train else self.eval_batch_size, shuffle=train,
                          drop_last=train, num_workers=workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=workers > 0, generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:  # ImageNet's test labels are private: use val
        return self._loader(self.val_set, False)


def build_datamodule(cfg: Any, batch_size: int = 128, eval_batch_size: int = 1024,
                     seed: int | Sequence[int] = 0) -> L.LightningDataModule:
    """The data module ``cfg.data`` (or ``cfg``, a data node) describes, typed here once."""
    data = data_config(cfg.get("data", cfg))
    cls = InMemoryDataModule if SOURCES[data.name].load else ImageFolderDataModule
    return cls(data, batch_size, eval_batch_size, seed)
