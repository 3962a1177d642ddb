"""LightningDataModules for every dataset in ``conf/data/``, built by :func:`build_datamodule`."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Subset

from dse.config import DataConfig, data_config
from dse.data.sources import SOURCES, load_arrays
from dse.data.tensor import TensorBatches, TensorSplit, channel_stats

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@lru_cache(maxsize=2)
def _prepared_splits(name: str, root: str | None, download: bool, channels: int, image_size: int,
                     num_classes: int, synthetic_size: int, split_seed: int, val_size: int,
                     subset: int | None, normalize: bool
                     ) -> tuple[TensorSplit, TensorSplit, TensorSplit, torch.Tensor, torch.Tensor]:
    """Train/val/test splits and normalisation stats, computed once per process per data config.

    :func:`load_arrays` already caches the parsed files; this also caches what every run used to
    redo from them (the split's fancy-index copies and the channel statistics; docs/BENCHMARKS.md
    has the figures), so the runs of a sweep after the first start training at once. Nothing
    downstream mutates these CPU tensors (batches are copies; ``.to(cuda)`` copies).
    """
    xtr, ytr, xte, yte = load_arrays(name, root=root, download=download, channels=channels,
                                     image_size=image_size, num_classes=num_classes,
                                     synthetic_size=synthetic_size)
    g = torch.Generator().manual_seed(split_seed)
    perm = torch.randperm(len(ytr), generator=g)  # fixed split, whatever the run seed
    n_val = val_size  # at most half the train split: dse.validate.val_split refuses more
    train, val = TensorSplit(xtr, ytr).take(perm[n_val:]), TensorSplit(xtr, ytr).take(perm[:n_val])
    test = TensorSplit(xte, yte)
    if subset:
        train, val, test = (s.take(torch.arange(min(subset, len(s)))) for s in (train, val, test))
    mean, std = channel_stats(train.x) if normalize else (
        torch.zeros(1, train.x.shape[1], 1, 1), torch.ones(1, train.x.shape[1], 1, 1))
    return train, val, test, mean, std


class InMemoryDataModule(L.LightningDataModule):
    """Train/val/test splits held as tensors; moved to the training device once when resident.

    ``position``: where the next training epoch starts, (epoch, first batch); set by a run that
    resumes from checkpoints (dse.train.checkpoints), see :class:`TensorBatches`.
    """

    def __init__(self, cfg: DataConfig, batch_size: int, eval_batch_size: int, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.batch_size, self.eval_batch_size, self.seed = cfg, batch_size, eval_batch_size, seed
        self.splits: dict[str, TensorSplit] = {}
        self.position: Callable[[], tuple[int, int]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        c = self.cfg
        train, val, test, self.mean, self.std = _prepared_splits(
            c.name, c.root, c.download, c.channels, c.image_size, c.num_classes, c.synthetic_size,
            c.split_seed, c.val_size, c.subset, c.normalize)
        self.splits = {"train": train, "val": val, "test": test}

    def _device(self) -> torch.device:
        trainer = self.trainer
        if trainer is not None and self.cfg.device_resident:
            return trainer.strategy.root_device
        return torch.device("cpu")

    def _batches(self, split: str, train: bool, seed: int | None = None) -> TensorBatches:
        if self.trainer is not None and self.trainer.world_size > 1:  # dse.validate refuses it first
            raise RuntimeError(f"in-memory data trains on one device, not {self.trainer.world_size} "
                               "(batches are not sharded per rank): set trainer.devices=1")
        self.setup()
        data = self.splits[split]
        dev = self._device()
        if data.x.device != dev:  # one host->device copy per run, not per batch
            self.splits[split] = data = data.to(dev)
        return TensorBatches(
            data, self.batch_size if train else self.eval_batch_size, self.mean, self.std,
            shuffle=train, drop_last=train, augment=train and self.cfg.augment,
            flip=self.cfg.flip, seed=self.seed if seed is None else seed,
            position=self.position if train else None)

    @property
    def num_train(self) -> int:
        self.setup()
        return len(self.splits["train"])

    def train_dataloader(self) -> TensorBatches:
        return self._batches("train", True)

    def train_batches(self, seed: int) -> TensorBatches:
        """The training batches a run with this seed sees (order, augmentation): fused training
        draws one stream per member from the one copy of the data on the device."""
        return self._batches("train", True, seed)

    def val_dataloader(self) -> TensorBatches:
        return self._batches("val", False)

    def test_dataloader(self) -> TensorBatches:
        return self._batches("test", False)


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
                          persistent_workers=workers > 0,
                          generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:  # ImageNet's test labels are private: use val
        return self._loader(self.val_set, False)


def build_datamodule(cfg: Any, batch_size: int = 128, eval_batch_size: int = 1024,
                     seed: int = 0) -> L.LightningDataModule:
    """The data module ``cfg.data`` describes (``cfg``: the root config or its data node, validated
    by the entry point; a DictConfig or a checkpoint's plain dict), typed here once."""
    data = data_config(cfg.get("data", cfg))
    cls = InMemoryDataModule if SOURCES[data.name].load else ImageFolderDataModule
    return cls(data, batch_size, eval_batch_size, seed)
