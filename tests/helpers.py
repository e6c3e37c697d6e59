"""Write tiny datasets in the real on-disk formats (IDX, CIFAR pickles, ImageFolder PNGs)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

FMNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encode a uint8 array as an IDX file."""
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def class_images(n: int, num_classes: int, size: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy images whose class is a bright square at a class-specific place (learnable)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, n)
    images = rng.integers(0, 60, (n, channels, size, size)).astype(np.uint8)
    cells = int(np.ceil(np.sqrt(num_classes)))
    step = size // cells
    for i, y in enumerate(labels):
        r, c = divmod(int(y), cells)
        images[i, :, r * step:(r + 1) * step, c * step:(c + 1) * step] = 220
    return images, labels.astype(np.uint8)


def write_mnist_like(root: Path, n_train: int = 240, n_test: int = 80, gz: bool = True, seed: int = 0) -> Path:
    """Four IDX files (28x28, 10 classes) as Debian's / torchvision's raw folder hold them."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n, s in (("train", n_train, seed), ("t10k", n_test, seed + 1)):
        x, y = class_images(n, 10, 28, 1, s)
        for kind, arr in (("images-idx3", x[:, 0]), ("labels-idx1", y)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}-ubyte"
            if gz:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
    return root


def write_cifar(root: Path, hundred: bool = False, per_batch: int = 40, seed: int = 0) -> Path:
    """CIFAR-10 (5 train batches) or CIFAR-100 python pickles under root/<base folder>."""
    n_cls = 100 if hundred else 10
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True, exist_ok=True)
    key = "fine_labels" if hundred else "labels"

    def dump(name: str, n: int, s: int) -> None:
        x, y = class_images(n, n_cls, 32, 3, s)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": x.reshape(n, -1), key: [int(v) for v in y]}, fh)

    if hundred:
        dump("train", per_batch * 5, seed)
        dump("test", per_batch, seed + 9)
        with open(folder / "meta", "wb") as fh:
            pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, fh)
    else:
        for i in range(1, 6):
            dump(f"data_batch_{i}", per_batch, seed + i)
        dump("test_batch", per_batch, seed + 9)
        with open(folder / "batches.meta", "wb") as fh:
            pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    return root


def write_imagefolder(root: Path, classes: int = 3, per_class: int = 6, size: int = 20, mode: str = "RGB",
                      splits: tuple[str, ...] = ("train", "val"), seed: int = 0) -> Path:
    """ROOT/<split>/<class>/*.png with class-dependent images."""
    for k, split in enumerate(splits):
        x, _ = class_images(classes * per_class, classes, size, 3, seed + k)
        for c in range(classes):
            d = root / split / f"cls{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                arr = np.full((size, size, 3), 30, np.uint8)
                arr[:, c * size // classes:(c + 1) * size // classes] = 200
                arr = np.clip(arr.astype(int) + x[c * per_class + i].transpose(1, 2, 0) // 4, 0, 255).astype(np.uint8)
                Image.fromarray(arr).convert(mode).save(d / f"{i}.png")
    return root
