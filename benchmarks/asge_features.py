"""Per-layer feature statistics of a trained ASGE checkpoint: dead channels, energy spread, readout.

For 4,000 training and 4,000 validation images (the run's own split): each layer's readout
accuracy, channels that never fire (dead), channels active at < 1% of positions (rare), the
share of energy in the top 10% of channels, the effective number of channels
((sum e)^2 / sum e^2 of the per-channel energies), the logits' spread over classes and the part
of it that the map's mean goodness alone gives (mean(g) * column sums of R, the common mode).

    python benchmarks/asge_features.py RUN_DIR
"""

from __future__ import annotations

import json
import sys

import torch

from ffvision.train.run import checkpoint_data
from ffvision.train.trainer import Trainer


def batches(trainer: Trainer, ds: object, n: int = 4000, bs: int = 500):
    """Up to n images of ds as float batches on the trainer's device."""
    seen = 0
    for x, y in trainer._loader(ds, bs, None, 0):
        yield trainer._to_device(x, y)
        seen += y.numel()
        if seen >= n:
            break


@torch.no_grad()
def layer_stats(method: torch.nn.Module, trainer: Trainer, ds: object) -> list[dict]:
    """The statistics above for every layer over the images of ds."""
    acc: list[dict] = []
    for x, y in batches(trainer, ds):
        for i, o in enumerate(method.iter_outputs(x)):
            h = o.h.float()
            ro = method.blocks[i].readout
            g = ro.goodness(h)
            a = g @ ro.projection + ro.bias
            cm = g.mean(1, keepdim=True) * ro.projection.sum(0)
            if len(acc) <= i:
                zero = torch.zeros(h.shape[1])
                acc.append({"n": 0, "correct": 0, "cm_sd": 0.0, "a_sd": 0.0, "max": zero.clone(),
                            "active": zero.clone(), "energy": zero.clone()})
            s = acc[i]
            s["n"] += y.numel()
            s["correct"] += int((a.argmax(1) == y).sum())
            s["cm_sd"] += float(cm.std(1).sum())
            s["a_sd"] += float(a.std(1).sum())
            s["max"] = torch.maximum(s["max"], h.amax(dim=(0, 2, 3)))
            s["active"] += (h > 0).float().mean(dim=(0, 2, 3)) * y.numel()
            s["energy"] += h.square().mean(dim=(0, 2, 3)) * y.numel()
    out = []
    for s in acc:
        en, act = s["energy"] / s["n"], s["active"] / s["n"]
        top = en.sort(descending=True).values
        k = max(1, len(top) // 10)
        out.append({"accuracy": round(100 * s["correct"] / s["n"], 2), "channels": len(en),
                    "dead": int((s["max"] == 0).sum()), "rare": int((act < 0.01).sum()),
                    "top10_energy_share": round(float(top[:k].sum() / top.sum()), 3),
                    "effective_channels": round(float(en.sum() ** 2 / (en ** 2).sum()), 1),
                    "logit_sd": round(s["a_sd"] / s["n"], 3), "common_mode_sd": round(s["cm_sd"] / s["n"], 3)})
    return out


def main() -> None:
    """Print one JSON line per layer (train and validation statistics)."""
    torch.manual_seed(0)
    method, cfg, data = checkpoint_data(sys.argv[1])
    trainer = Trainer(method, cfg, None)
    train, val = layer_stats(method, trainer, data.train), layer_stats(method, trainer, data.val)
    for i, (t, v) in enumerate(zip(train, val)):
        print(json.dumps({"layer": i + 1, "train_accuracy": t["accuracy"], "val": v}))


if __name__ == "__main__":
    main()
