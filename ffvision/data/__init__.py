"""Datasets by name (mnist, fashion-mnist, cifar10, cifar100, imagenet, imagefolder) and splits."""

from ffvision.data.datasets import (
    ArrayImageDataset,
    DataSplits,
    FolderImageDataset,
    build_dataset,
    build_splits,
    canonical_name,
    list_datasets,
    native_image_size,
)

__all__ = ["ArrayImageDataset", "DataSplits", "FolderImageDataset", "build_dataset", "build_splits",
           "canonical_name", "list_datasets", "native_image_size"]
