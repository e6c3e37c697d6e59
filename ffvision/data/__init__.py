"""Datasets by name (mnist, fashion-mnist, cifar10, cifar100, imagenet, imagefolder) and splits.

The names and defaults (data/specs.py) are torch-free; the loaders import torch on first use.
"""

from __future__ import annotations

import importlib

from ffvision.data.specs import canonical_name, list_datasets, native_image_size

_LAZY = ("ArrayImageDataset", "DataSplits", "FolderImageDataset", "build_dataset", "build_splits")

__all__ = ["ArrayImageDataset", "DataSplits", "FolderImageDataset", "build_dataset", "build_splits",
           "canonical_name", "list_datasets", "native_image_size"]


def __getattr__(name: str) -> object:
    """The loaders (and torch) on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module("ffvision.data.datasets"), name)
    raise AttributeError(f"module 'ffvision.data' has no attribute {name!r}")
