"""Write FashionMNIST's own images as an ImageFolder tree of PNG files, and compare the two loaders.

ROOT/train/<class>/*.png holds exactly the training images a built-in run would use (the
same validation carve, seed and train subset), ROOT/val the validation split and ROOT/test
the test set, so `--dataset imagefolder --data-dir ROOT` and `--dataset fashion-mnist` see
the same images. With --compare, both loaders train ASGE and bp on the quick protocol with
the same image size and augmentation, and one JSON line per run goes to --out.

    python benchmarks/fmnist_folder.py --root /tmp/fmnist-png --train-subset 10000
    python benchmarks/fmnist_folder.py --root /tmp/fmnist-png --train-subset 10000 --compare \\
        --out benchmarks/results/folder_vs_builtin.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch
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
                        limits: tuple[int | None, int | None] = (None, None)) -> Path:
    """FashionMNIST's train subset, validation and test splits (native 28 px) as PNG folders under root."""
    data = build_splits("fashion-mnist", image_size=28, val_size=val_size, train_subset=train_subset, augment="none")
    write_split(data.train, root / "train", data.classes)
    write_split(data.val, root / "val", data.classes, limits[0])
    write_split(data.test, root / "test", data.classes, limits[1])
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--train-subset", type=int, default=10000)
    ap.add_argument("--compare", action="store_true", help="train asge and bp on both loaders")
    ap.add_argument("--methods", nargs="*", default=["asge", "bp"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--augment", default="none")
    ap.add_argument("--out", default="benchmarks/results/folder_vs_builtin.jsonl")
    args = ap.parse_args()
    if not (args.root / "train").is_dir():
        t = time.time()
        write_fmnist_folder(args.root, args.train_subset)
        print(f"wrote {args.root} in {time.time() - t:.0f} s", flush=True)
    if not args.compare:
        return
    from ffvision.config import TrainConfig, apply_overrides
    from ffvision.train.run import train

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    common = {"model": "vgg8", "width_mult": 0.25, "epochs": args.epochs, "batch_size": 128, "image_size": 28,
              "augment": args.augment, "device": "cpu"}
    loaders = {"builtin": {"dataset": "fashion-mnist", "train_subset": args.train_subset, "val_size": 10000},
               "folder": {"dataset": "imagefolder", "data_dir": str(args.root)}}
    for method in args.methods:
        for loader, spec in loaders.items():
            out = Path("runs/folder-vs-builtin") / f"{method}-{loader}-{time.strftime('%Y%m%d-%H%M%S')}"
            cfg = apply_overrides(TrainConfig(), {**common, **spec, "method": method, "out": str(out)})
            t = time.time()
            s = train(cfg, show_progress=False)
            rec = {"name": f"{method}-{loader}", "machine": f"{platform.processor() or platform.machine()}, "
                   f"{torch.get_num_threads()} torch threads, CPU", "commit": commit, "wall_seconds": time.time() - t,
                   **{k: s[k] for k in ("test_accuracy", "test_accuracy_by_strategy", "val_accuracy_best",
                                        "train_images_per_second", "num_train", "num_val", "num_test")},
                   "data": s.get("data"), "config": s["config"]}
            print(json.dumps(rec), flush=True)
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
