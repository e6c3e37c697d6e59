"""Post-hoc check of ASGE strategy mixtures on a checkpoint (validation first; test reported beside it).

Mixes the log-softmax of goodness-sum and of the heads with weight w, and sums every layer's
log-softmax, on FashionMNIST's validation split (50k/10k, split seed 42) and test split, in float32:

    python benchmarks/strategy_mix.py runs/medium-protocol/asge-.../best.pt
"""

from __future__ import annotations

import argparse

import torch

from ffvision.data import build_splits
from ffvision.train.checkpoint import load_checkpoint, method_from_checkpoint


def collect(method: torch.nn.Module, ds: torch.utils.data.Dataset) -> tuple[torch.Tensor, ...]:
    """(goodness-sum scores, heads scores, per-layer scores, labels) over a dataset."""
    g, h, layers, ys = [], [], [], []
    with torch.no_grad():
        for x, y in torch.utils.data.DataLoader(ds, batch_size=500):
            s = method.scores(x.float() / 255 if x.dtype == torch.uint8 else x)
            g.append(s["goodness-sum"])
            h.append(s["heads"])
            layers.append(torch.stack(s.layers))
            ys.append(y)
    return torch.cat(g), torch.cat(h), torch.cat(layers, 1), torch.cat(ys)


def main() -> None:
    """Print the accuracy of each mixture on validation and test."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    args = ap.parse_args()
    method, _ = method_from_checkpoint(load_checkpoint(args.checkpoint))
    method.eval()
    data = build_splits("fashion-mnist", val_size=10000, split_seed=42)
    for split, ds in (("val", data.val), ("test", data.test)):
        g, h, layers, y = collect(method, ds)
        acc = {"goodness-sum": (g.argmax(1) == y).float().mean().item(),
               "heads": (h.argmax(1) == y).float().mean().item(),
               "layers-logsoftmax-sum": (layers.log_softmax(2).sum(0).argmax(1) == y).float().mean().item()}
        for w in (0.25, 0.5, 0.75):
            mix = w * g.log_softmax(1) + (1 - w) * h.log_softmax(1)
            acc[f"mix{w}"] = (mix.argmax(1) == y).float().mean().item()
        print(split, {k: round(100 * v, 2) for k, v in acc.items()}, flush=True)


if __name__ == "__main__":
    main()
