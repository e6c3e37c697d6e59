"""Quick protocol (CPU): VGG8 width 0.25, FashionMNIST, 10,000 training images, 3 epochs, batch 128.

Trains each configuration through the normal `train()` entry point (validation split of 10,000
images selects the epoch; the full 10,000-image test set is evaluated once) and writes one JSON
line per run with test accuracy by strategy, early exit, img/s and parameters.

    python benchmarks/quick_protocol.py --out benchmarks/results/quick_protocol.jsonl
    python benchmarks/quick_protocol.py --only asge-default bp-default
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from ffvision.cli import RECIPES
from ffvision.config import TrainConfig, apply_overrides, load_recipe
from ffvision.train.run import train

QUICK = {"model": "vgg8", "width_mult": 0.25, "dataset": "fashion-mnist", "train_subset": 10000, "epochs": 3,
         "batch_size": 128}
RUNS = {
    "asge-default": {"method": "asge"},
    "asge-paper-recipe": {"recipe": "asge-fmnist"},  # the official settings, with epochs=3 (T_max = 3)
    "bp-default": {"method": "bp"},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/quick_protocol.jsonl")
    ap.add_argument("--only", nargs="*", default=list(RUNS), help=f"subset of {', '.join(RUNS)}")
    ap.add_argument("--runs-dir", default="runs/quick-protocol")
    args = ap.parse_args()
    for name in args.only:
        spec = dict(RUNS[name])
        cfg = TrainConfig()
        if "recipe" in spec:
            cfg = apply_overrides(cfg, load_recipe(RECIPES / f"{spec.pop('recipe')}.yaml"))
        out = Path(args.runs_dir) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
        cfg = apply_overrides(cfg, {**QUICK, **spec, "out": str(out), "device": "cpu"})
        s = train(cfg, show_progress=False)
        rec = {"name": name, "machine": f"{platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} torch threads, CPU", "command": f"python benchmarks/quick_protocol.py "
               f"--only {name}", "run_dir": str(out),
               **{k: s[k] for k in ("method", "test_accuracy", "test_accuracy_by_strategy", "val_accuracy_best",
                                    "train_images_per_second", "train_seconds", "trainable_parameters",
                                    "strategies")},
               "early_exit": s.get("early_exit", []), "config": s["config"]}
        print(json.dumps(rec), flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        with open(args.out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
