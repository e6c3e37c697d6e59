"""Markdown rows from the JSON lines the benchmarks write (the tables in docs/results.md).

    python benchmarks/report.py benchmarks/results/quick_protocol.jsonl --only ffcnn-fourier hinton bp-mlp
    python benchmarks/report.py benchmarks/results/small_data.jsonl
    python benchmarks/report.py --sweep benchmarks/results/sweep_ff_validation.jsonl --only ffcnn-f-default ffcnn-f-ce

The newest record of each (name, training images, epochs) is used.
"""

from __future__ import annotations

import argparse
import json


def rows(path: str, only: list[str] | None) -> list[str]:
    """One markdown row per run: name, images x epochs, accuracy per strategy, params, img/s, commit."""
    latest: dict[tuple, dict] = {}
    with open(path) as fh:
        for line in fh:
            r = json.loads(line)
            latest[(r["name"], r.get("train_subset"), r.get("epochs_run"))] = r
    out = ["| run | images × epochs | test accuracy by strategy | val (best) | trainable params | "
           "train img/s | commit |", "|---|---|---|---|---|---|---|"]
    for (name, n, ep), r in latest.items():
        if only and name not in only:
            continue
        acc = ", ".join(f"`{k}` {100 * v:.1f}%" for k, v in r["test_accuracy_by_strategy"].items())
        out.append(f"| {name} | {n} × {ep} | {acc} | {100 * r['val_accuracy_best']:.1f}% | "
                   f"{r['trainable_parameters']:,} | {r['train_images_per_second']:.0f} | {r.get('commit')} |")
    return out


def sweep_rows(path: str, only: list[str] | None) -> list[str]:
    """One markdown row per sweep config (validation only): the change, accuracy per epoch, per layer, time."""
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
    """Print the rows of one results file."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path")
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--sweep", action="store_true", help="the file is a validation sweep (sweep_quick.py)")
    args = ap.parse_args()
    print("\n".join(sweep_rows(args.path, args.only) if args.sweep else rows(args.path, args.only)))


if __name__ == "__main__":
    main()
