"""Medium protocol (CPU, 10-20 min a run on 2 cores): FashionMNIST's full training split (50,000 train /
10,000 validation carved from it), VGG8 at width 0.25, 15 epochs, batch 128, ASGE and bp with the
same augmentation (the dataset's flip), each at its validated dropout (the defaults: ASGE 0, bp
0.1) and ASGE at its validated lr for this length (5e-3, `VALIDATED`); the epoch and the reported
strategy are chosen on validation, the test set is evaluated once.

    python benchmarks/medium_protocol.py --out benchmarks/results/medium_protocol.jsonl   # train both
    python benchmarks/medium_protocol.py --only asge --dropout 0.1                        # a variant
    python benchmarks/medium_protocol.py --only asge --set lr_fan_in=288                  # any config key
    python benchmarks/medium_protocol.py --plot RUN_DIR [RUN_DIR ...] --png docs/medium_protocol.png
    python benchmarks/medium_protocol.py --record RUN_DIR [RUN_DIR ...]   # runs made with `ffvision train`

Each run writes one JSON line (test accuracy by strategy, early exit, parameters, layers, img/s);
--plot draws the validation accuracy per epoch of finished run directories (metrics.jsonl).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

MEDIUM = {"model": "vgg8", "width_mult": 0.25, "dataset": "fashion-mnist", "epochs": 15, "batch_size": 128}
# Settings chosen on this protocol's validation split where the quick-protocol default does not hold at
# this length (docs/results.md section 9): ASGE's lr 1e-2 is best for 3 epochs of 10,000 images, 5e-3 for
# 15 epochs of 50,000 (validation goodness-sum 91.86 at 1e-2, 92.43 at 5e-3, 92.38 at 3e-3).
VALIDATED = {"asge": {"lr": 5e-3}}


def plot(run_dirs: list[Path], png: Path) -> None:
    """Validation accuracy per epoch (the strategy chosen on validation each epoch) of each run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for d in run_dirs:
        rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines() if line.strip()]
        cfg = json.loads((d / "summary.json").read_text())["config"]
        label = f"{cfg['method']} (dropout {cfg.get('dropout') if cfg.get('dropout') is not None else 'default'})"
        ax.plot([r["epoch"] for r in rows], [100 * r["val_accuracy"] for r in rows], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("FashionMNIST, VGG8 x0.25, 50k train / 10k val")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    print(f"wrote {png}")


def record_of(s: dict, run_dir: Path | str, commit: str) -> dict:
    """One JSON line of a finished run's summary.json."""
    dropout = s["config"].get("dropout")
    name = f"medium-{s['method']}" + (f"-dropout{dropout:g}" if dropout is not None else "")
    name += "".join(f"-{k}{s['config'][k]}" for k in ("lr", "lr_fan_in", "weight_decay")
                    if s["config"].get(k) is not None)
    return {"name": name, "machine": f"{platform.processor() or platform.machine()}, "
            f"{s.get('torch_threads', torch.get_num_threads())} torch threads, {s.get('device', 'cpu')}",
            "commit": commit, "run_dir": str(run_dir),
            **{k: s.get(k) for k in ("method", "test_accuracy", "strategy", "test_accuracy_by_strategy",
                                     "val_accuracy_best", "best_epoch", "train_images_per_second", "train_seconds",
                                     "trainable_parameters", "strategies", "early_exit")},
            "config": s["config"]}


def append(path: str, rec: dict) -> None:
    """Print and append one JSON line."""
    print(json.dumps(rec), flush=True)
    with open(path, "a") as fh:
        fh.write(json.dumps(rec) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="benchmarks/results/medium_protocol.jsonl")
    ap.add_argument("--only", nargs="*", default=["asge", "bp"], help="methods to train")
    ap.add_argument("--dropout", type=float, default=None, help="dropout of both (default: each method's own)")
    ap.add_argument("--epochs", type=int, default=MEDIUM["epochs"])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="more config overrides of the trained runs (TrainConfig keys, YAML values)")
    ap.add_argument("--runs-dir", default="runs/medium-protocol")
    ap.add_argument("--plot", nargs="*", type=Path, help="plot these finished run directories instead of training")
    ap.add_argument("--png", type=Path, default=Path("docs/medium_protocol.png"))
    ap.add_argument("--record", nargs="*", type=Path, help="append the JSON lines of finished run directories")
    ap.add_argument("--commit", default=None, help="with --record: the commit the runs were made at")
    args = ap.parse_args()
    commit = args.commit or subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                           text=True).stdout.strip()
    if args.plot:
        plot(args.plot, args.png)
        return
    if args.record:
        for d in args.record:
            append(args.out, record_of(json.loads((d / "summary.json").read_text()), d, commit))
        return
    import yaml

    from ffvision.config import TrainConfig, apply_overrides
    from ffvision.train.run import train

    extra = {k: yaml.safe_load(v) for k, v in (p.split("=", 1) for p in args.set)}

    for method in args.only:
        out = Path(args.runs_dir) / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
        spec = {**MEDIUM, **VALIDATED.get(method, {}), "epochs": args.epochs, "method": method, "out": str(out)}
        if args.dropout is not None:
            spec["dropout"] = args.dropout
        spec.update(extra)
        s = train(apply_overrides(TrainConfig(), spec), show_progress=False)
        append(args.out, record_of(s, out, commit))


if __name__ == "__main__":
    main()
