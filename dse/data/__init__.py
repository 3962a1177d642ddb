"""Datasets as LightningDataModules: in-memory tensors for small sets, ImageFolder for ImageNet."""

from dse.data.modules import ImageFolderDataModule, InMemoryDataModule, build_datamodule

__all__ = ["ImageFolderDataModule", "InMemoryDataModule", "build_datamodule"]
