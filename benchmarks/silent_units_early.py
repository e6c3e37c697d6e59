"""How fast FF-CNN's channels go silent in the first training steps (issue 12, 128 filters; stop 30).

Trains ffcnn3 on FashionMNIST batches (batch 128, the quick protocol's, linear warm-up over the same 23
steps as --warmup-epochs 0.3 of 10,000 images) and every `--every` steps counts, per layer, the channels
that never fire on 256 fixed images with their true label overlaid (diagnose's "silent units"): the last 256 of
the training file, which the steps never draw (they draw from the first 50,000); after the last step, goodness
inference's accuracy on the same 256 images (each layer alone, and layers 2..L summed).

    OMP_NUM_THREADS=2 python benchmarks/silent_units_early.py --steps 40 lr=1e-2 "peer_norm=1" ...
"""

from __future__ import annotations

import argparse
import json

import torch

import ffvision
from ffvision.data import build_splits


def silent(method, x: torch.Tensor, y: torch.Tensor) -> list[float]:
    """Per layer: the fraction of channels with no positive activity on x (true label overlaid)."""
    method.eval()
    out = []
    with torch.no_grad():
        for o in method.iter_outputs(method.labels.encode(x, y)):
            out.append(float(((o.h > 0).sum((0, 2, 3)) == 0).float().mean()))
    method.train()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+", help="space-separated key=value option sets, e.g. 'lr=1e-2 peer_norm=1'")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--filters", type=int, default=128)
    ap.add_argument("--json", default=None)
    ap.add_argument("--data-dir", default=None, help="FashionMNIST's IDX files (default: where ffvision finds them)")
    args = ap.parse_args()
    train_file = build_splits("fashion-mnist", args.data_dir, image_size=28).train  # the whole file, in its order
    xs, ys = train_file.images.float().div(255), train_file.labels
    xv, yv = xs[-256:], ys[-256:]
    rows = []
    for spec in args.configs:
        opts = {k: float(v) if k not in ("labels", "negatives", "ff_loss", "optimizer") else v
                for k, v in (kv.split("=") for kv in spec.split())}
        opts.setdefault("num_negatives", 3)
        opts.setdefault("goodness_scale", 16)
        opts["num_negatives"] = int(opts["num_negatives"])
        if "centre_step" in opts:
            opts["centre_step"] = bool(opts["centre_step"])
        torch.manual_seed(0)
        m = ffvision.create_method("ffcnn", num_classes=10, in_channels=1, image_size=28, model="ffcnn3",
                                   filters=args.filters, **opts)
        m.amp_dtype = torch.bfloat16
        m.build_optimizers()
        base = {id(g): g["lr"] for opt in m.optimizers.values() for g in opt.param_groups}
        g = torch.Generator().manual_seed(0)
        trace = [(0, silent(m, xv, yv))]
        for step in range(1, args.steps + 1):
            idx = torch.randint(0, 50000, (128,), generator=g)
            for opt in m.optimizers.values():
                for grp in opt.param_groups:
                    grp["lr"] = base[id(grp)] * min(1.0, step / 23)
            m.train_step(xs[idx], ys[idx])
            if step % args.every == 0:
                trace.append((step, silent(m, xv, yv)))
        # goodness inference on the same 256 images after the last step: each layer alone, and layers 2..L summed
        m.eval()
        with torch.no_grad():
            g = m.goodness_scores(xv)  # (L, B, N)
        m.train()
        acc = [float((g[i].argmax(1) == yv).float().mean()) for i in range(g.shape[0])]
        acc_vote = float((g[1:].sum(0).argmax(1) == yv).float().mean())
        rows.append({"config": spec, "trace": trace, "accuracy_by_layer": acc, "accuracy_layers_2_to_L": acc_vote})
        print(spec, " ".join(f"{s}:" + "/".join(f"{v:.2f}" for v in f[1:]) for s, f in trace),
              "| goodness accuracy per layer", "/".join(f"{a:.3f}" for a in acc), f"layers 2..L {acc_vote:.3f}",
              flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
