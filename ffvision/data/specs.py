"""The datasets ffvision knows, by name, with their defaults (image size, validation size, augmentation).

Torch-free (`ffvision list` and config checks read it); data/datasets.py builds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ffvision.errors import unknown_name


@dataclass(frozen=True)
class DatasetSpec:
    """Per-dataset defaults: image size, validation size, augmentation."""

    image_size: int  # 0: the images' own typical size (a user's ImageFolder)
    val_size: float  # >= 1: a number of images; in (0, 1): a fraction of the training data
    augment: str
    folder: bool = False
    native_size: int | None = None  # the stored size, when the default resizes (MNIST family: 28 -> 32)


SPECS = {
    "mnist": DatasetSpec(32, 10000, "none", native_size=28),
    "fashion-mnist": DatasetSpec(32, 10000, "flip", native_size=28),
    "cifar10": DatasetSpec(32, 5000, "cifar"),
    "cifar100": DatasetSpec(32, 5000, "cifar"),
    "imagenet": DatasetSpec(224, 10000, "imagenet", folder=True),
    "imagefolder": DatasetSpec(0, 0.1, "shift", folder=True),
}
ALIASES = {"fmnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
           "cifar-100": "cifar100"}
AUGMENTS = ("none", "shift", "flip", "crop", "cifar", "imagenet", "affine", "affine-flip",
            "contrastive")


def list_datasets() -> list[str]:
    """Names accepted by build_splits / --dataset."""
    return sorted(SPECS)


def canonical_name(name: str) -> str:
    """Resolve aliases (fmnist -> fashion-mnist); ConfigError for unknown names."""
    name = ALIASES.get(name.lower(), name.lower())
    if name not in SPECS:
        raise unknown_name("dataset", name, list(SPECS))
    return name


def native_image_size(name: str) -> int | None:
    """The size a dataset is stored at when its default resizes it (28 for MNIST and FashionMNIST), else None."""
    return SPECS[canonical_name(name)].native_size
