"""Datasets as LightningDataModules: in-memory tensors for small sets, ImageFolder for ImageNet
(loaded on first use: dse.validate reads :data:`dse.data.sources.SOURCES` without torch)."""

from typing import Any

__all__ = ["ImageFolderDataModule", "InMemoryDataModule", "build_datamodule"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from dse.data import modules

        return getattr(modules, name)
    raise AttributeError(name)
