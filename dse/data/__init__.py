"""Datasets as LightningDataModules: in-memory tensors for small sets, ImageFolder for ImageNet."""

from dse.data.modules import (
    DATASETS,
    ImageFolderDataModule,
    InMemoryDataModule,
    build_datamodule,
    validate_data,
)

__all__ = ["DATASETS", "ImageFolderDataModule", "InMemoryDataModule", "build_datamodule",
           "validate_data"]
