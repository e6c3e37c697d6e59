"""Hyper-parameter sweep for the quick protocol, judged on the VALIDATION split only.

VGG8 width 0.25, FashionMNIST, 10,000 training images, 3 epochs, batch 128. Each config
line is `name key=value ...` (TrainConfig keys). Prints and appends JSON lines to --out.

    python benchmarks/sweep_quick.py --out benchmarks/results/sweep.jsonl \
        "official method=asge lr=2e-4 head_lr=2e-4 head_init=kaiming head_weight_decay=1e-3 min_lr_ratio=1"
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time

import torch
import yaml

from ffvision.config import TrainConfig, apply_overrides
from ffvision.data import build_splits
from ffvision.methods import create_method, method_kwargs
from ffvision.train.run import seed_everything
from ffvision.train.trainer import Trainer

QUICK = {"model": "vgg8", "width_mult": 0.25, "dataset": "fashion-mnist", "train_subset": 10000, "epochs": 3,
         "batch_size": 128}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+", help="'name key=value ...'")
    ap.add_argument("--out", default=None)
    ap.add_argument("--val-size", type=int, default=10000)
    args = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    for line in args.configs:
        name, *pairs = line.split()
        over = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in pairs)}
        cfg = apply_overrides(TrainConfig(), {**QUICK, "val_size": args.val_size, **over})
        seed_everything(cfg.seed)
        data = build_splits(cfg.dataset, cfg.data_dir, train_subset=cfg.train_subset, val_size=cfg.val_size,
                            image_size=cfg.image_size, augment=cfg.augment)
        method = create_method(cfg.method, **method_kwargs(cfg, data.num_classes, data.in_channels, data.image_size))
        trainer = Trainer(method, cfg, None, show_progress=False)
        t = time.time()
        trainer.fit(data.train, data.val)
        rec = {"name": name, "overrides": over, "commit": commit, "val_size": args.val_size,
               "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
               "seconds": round(time.time() - t, 1),
               "val_by_epoch": [r["val_accuracy_by_strategy"] for r in trainer.history],
               "val_layers_last_epoch": trainer.history[-1]["val_layer_accuracy"],
               "train_layers_last_epoch": {k: trainer.history[-1].get(k) for k in ("train_layer_accuracy",
                                                                                    "train_layer_loss")},
               "train_images_per_second": round(trainer.images_seen / max(trainer.train_seconds, 1e-9), 1)}
        print(json.dumps(rec), flush=True)
        if args.out:
            with open(args.out, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
