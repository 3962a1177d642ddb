"""LightningDataModules for every dataset in ``conf/data/``, built by :func:`build_datamodule`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from dse.config import DataConfig, data_config
from dse.data.sources import SOURCES, load_arrays, source_args
from dse.data.tensor import StackedBatches, TensorBatches, TensorSplit, channel_stats

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


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
