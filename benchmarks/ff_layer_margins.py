"""Per-layer goodness margins of a trained FF checkpoint (docs/results.md section 5, stop 25).

For the first --images validation images: each layer's accuracy alone, the argmax histogram over
classes, each label's mean goodness logit, the accuracy once it is subtracted, the per-image
spread over labels and the true label's margin over the mean wrong one; then two votes.

    OMP_NUM_THREADS=1 python benchmarks/ff_layer_margins.py runs/quick-protocol/hinton-recipe-full-*/best.pt
"""

from __future__ import annotations

import argparse

import torch

from ffvision.train.run import checkpoint_data
from ffvision.train.trainer import Trainer


def main() -> None:
    """Print the per-layer margins and the votes of layers 2-4 and 1-2."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--images", type=int, default=1000)
    args = ap.parse_args()
    method, cfg, data = checkpoint_data(args.checkpoint, None, None, "cpu", False)
    method.eval()
    trainer = Trainer(method, cfg, None)
    xs, ys, seen = [], [], 0
    for batch in trainer._loader(data.val, 500, None, 0):
        xb, yb = trainer._to_device(*batch)
        xs.append(xb)
        ys.append(yb)
        seen += len(yb)
        if seen >= args.images:
            break
    x, y = torch.cat(xs)[:args.images], torch.cat(ys)[:args.images]
    with torch.no_grad():
        g = method.goodness_scores(x)  # (L, B, N)
    for layer, s in enumerate(g, 1):
        bias = s.mean(0)
        true = s.gather(1, y[:, None])[:, 0]
        margin = true - (s.sum(1) - true) / (s.shape[1] - 1)
        print(f"layer {layer}: acc {(s.argmax(1) == y).float().mean():.3f}, without label bias "
              f"{((s - bias).argmax(1) == y).float().mean():.3f}; argmax histogram "
              f"{torch.bincount(s.argmax(1), minlength=s.shape[1]).tolist()}")
        print(f"   mean logit per label {[round(v, 2) for v in bias.tolist()]}; spread over labels per image "
              f"{s.std(1).mean():.3f}; true minus mean wrong {margin.mean():.3f}")
    for a, b in ((2, 4), (1, 2)):
        vote = g[a - 1:b].sum(0)
        print(f"vote {a}-{b}: {(vote.argmax(1) == y).float().mean():.3f}")


if __name__ == "__main__":
    main()
