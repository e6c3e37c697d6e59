"""Write FashionMNIST's own images as an ImageFolder tree of PNG files (the folder protocol trains on both).

ROOT/train/<class>/*.png holds exactly the training images a built-in run would use (the
same validation carve, seed and train subset), ROOT/val the validation split and ROOT/test
the test set, so `--dataset imagefolder --data-dir ROOT` and `--dataset fashion-mnist` see
the same images. `python benchmarks/protocol.py folder` trains on both (protocols/folder.yaml).

    python benchmarks/fmnist_folder.py --root /tmp/fmnist-png --train-subset 10000
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset

from ffvision.data import build_splits


def write_split(ds: Dataset, root: Path, classes: list[str], limit: int | None = None) -> int:
    """Save each (uint8 (1, H, W) image, label) of ds as root/<class>/<index>.png; returns the count."""
    n = len(ds) if limit is None else min(limit, len(ds))
    for c in classes:
        (root / c.replace("/", "-")).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        x, y = ds[i]
        Image.fromarray(x[0].numpy()).save(root / classes[y].replace("/", "-") / f"{i:06d}.png")
    return n


def write_fmnist_folder(root: Path, train_subset: int | None = None, val_size: int = 10000,
                        limits: tuple[int | None, int | None] = (None, None), image_size: int = 28) -> Path:
    """FashionMNIST's train subset, validation and test splits as PNG folders under root (at its native 28 px, or
    downscaled with antialiasing to image_size: tiny images)."""
    data = build_splits("fashion-mnist", image_size=image_size, val_size=val_size, train_subset=train_subset,
                        augment="none")
    write_split(data.train, root / "train", data.classes)
    write_split(data.val, root / "val", data.classes, limits[0])
    write_split(data.test, root / "test", data.classes, limits[1])
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--image-size", type=int, default=28, help="px; below 28 the images are downscaled")
    args = ap.parse_args()
    t = time.time()
    write_fmnist_folder(args.root, args.train_subset, image_size=args.image_size)
    print(f"wrote {args.root} in {time.time() - t:.0f} s", flush=True)


if __name__ == "__main__":
    main()
