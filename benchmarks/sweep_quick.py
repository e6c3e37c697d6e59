"""Hyper-parameter sweep for the quick protocol, judged on the VALIDATION split only.

VGG8 width 0.25, FashionMNIST, 10,000 training images, 3 epochs, batch 128. Each config
line is `name key=value ...` (TrainConfig keys). Prints and appends JSON lines to --out.

    python benchmarks/sweep_quick.py --out benchmarks/results/sweep.jsonl \
        "official method=asge lr=2e-4 head_lr=2e-4 head_init=kaiming head_weight_decay=1e-3 min_lr_ratio=1"

    python benchmarks/sweep_quick.py --report sweep.jsonl   # markdown rows, newest record per config

On a GPU: `--device cuda --common "num_workers=0"`; with `--runs-dir DIR` each config trains into DIR/NAME
(best.pt kept), so that benchmarks/pick_and_test.py can test only the validation-chosen one.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from protocol import emit, load, machine, parse_pairs

from ffvision.config import TrainConfig, apply_overrides
from ffvision.data import build_splits
from ffvision.methods import create_method, method_kwargs
from ffvision.train.run import seed_everything
from ffvision.train.trainer import Trainer

QUICK = {**load("quick")["common"], "model": "vgg8", "width_mult": 0.25}  # the quick protocol's budget, ASGE's net


def sweep_rows(path: str, only: list[str] | None) -> list[str]:
    """One markdown row per sweep config (validation only): accuracy per epoch, per layer, time."""
    latest: dict[str, dict] = {}
    with open(path) as fh:
        for line in fh:
            r = json.loads(line)
            latest[r["name"]] = r
    out = ["| config | validation accuracy by epoch | last epoch, per layer | s | commit |", "|---|---|---|---|---|"]
    for name in only or list(latest):
        r = latest[name]
        epochs = " → ".join("/".join(f"{100 * v:.1f}" for v in e.values()) for e in r["val_by_epoch"])
        keys = "/".join(r["val_by_epoch"][0])
        layers = " / ".join(f"{100 * v:.1f}" for v in r.get("val_layers_last_epoch", []))
        out.append(f"| {name} | {keys}: {epochs} | {layers} | {r['seconds']:.0f} | {r.get('commit', '')} |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="*", help="'name key=value ...'")
    ap.add_argument("--report", metavar="JSONL", help="print the markdown rows of a sweep's records instead")
    ap.add_argument("--out", default=None)
    ap.add_argument("--val-size", type=int, default=10000)
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto (a config's own device=... wins)")
    ap.add_argument("--common", default="", help="'key=value ...' applied to every config before its own")
    ap.add_argument("--runs-dir", default=None, help="train each config into DIR/NAME, keeping best.pt")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)  # the runs' progress
    if args.report:
        print("\n".join(sweep_rows(args.report, args.configs or None)))
        return
    common = parse_pairs(args.common.split())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    for line in args.configs:
        name, *pairs = line.split()
        over = parse_pairs(pairs)
        run_dir = Path(args.runs_dir) / name if args.runs_dir else None
        cfg = apply_overrides(TrainConfig(), {**QUICK, "val_size": args.val_size, "device": args.device, **common,
                                              **over, **({"out": str(run_dir), "force": True} if run_dir else {})})
        seed_everything(cfg.seed)
        data = build_splits(cfg.dataset, cfg.data_dir, train_subset=cfg.train_subset, val_size=cfg.val_size,
                            image_size=cfg.image_size, augment=cfg.augment)
        method = create_method(cfg.method, **method_kwargs(cfg, data.num_classes, data.in_channels, data.image_size))
        trainer = Trainer(method, cfg, run_dir, data.meta(), show_progress=False)
        t = time.time()
        trainer.fit(data.train, data.val)
        rec = {"name": name, "overrides": {**common, **over}, "commit": commit, "val_size": args.val_size,
               "machine": machine(trainer.device), "run_dir": str(run_dir) if run_dir else None,
               "best": trainer.best,
               "seconds": round(time.time() - t, 1),
               "val_by_epoch": [r["val_accuracy_by_strategy"] for r in trainer.history],
               "val_layers_last_epoch": trainer.history[-1]["val_layer_accuracy"],
               "train_layers_last_epoch": {k: trainer.history[-1].get(k) for k in ("train_layer_accuracy",
                                                                                    "train_layer_loss")},
               "train_images_per_second": round(trainer.images_seen / max(trainer.train_seconds, 1e-9), 1)}
        emit(rec, args.out)


if __name__ == "__main__":
    main()
