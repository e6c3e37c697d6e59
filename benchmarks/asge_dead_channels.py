"""Dead channels per ASGE layer over the first training steps (no warm-up, constant lr).

A channel is dead when it is zero at every position of 1,000 validation images. Trains the
quick protocol's model (VGG8 x0.25, FashionMNIST, 10,000 images) for two epochs with plain
train_step calls and prints the dead count per layer after 0, 5, 10, 20, 40, 78, 156 steps.

    python benchmarks/asge_dead_channels.py                  # ffvision's defaults (lr 1e-2)
    python benchmarks/asge_dead_channels.py lr=1e-3
    python benchmarks/asge_dead_channels.py lr_fan_in=288     # any ASGE option, KEY=VALUE
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
import yaml

import ffvision
from ffvision.data import build_splits


def tensors(ds: object, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (float, 32 px) and labels of ds at idx."""
    x = torch.stack([ds[i][0] for i in idx])
    y = torch.tensor([int(ds[i][1]) for i in idx])
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
    return (F.interpolate(x, size=32, mode="bilinear") if x.shape[-1] != 32 else x), y


def main() -> None:
    """Print the dead-channel counts."""
    torch.manual_seed(0)
    options = {k: yaml.safe_load(v) for k, v in (a.split("=", 1) for a in sys.argv[1:])}
    data = build_splits("fashion-mnist", None, train_subset=10000, val_size=1000, image_size=None, augment="none")
    probe, _ = tensors(data.val, list(range(1000)))
    m = ffvision.create_method("asge", num_classes=10, in_channels=1, image_size=32, model="vgg8",
                               width_mult=0.25, **options)

    def dead() -> list[int]:
        m.eval()
        with torch.no_grad():
            return [int((o.h.float().amax(dim=(0, 2, 3)) == 0).sum()) for o in m.iter_outputs(probe)]

    print("channels", [b.readout.channels for b in m.blocks])
    print("step 0 dead", dead(), flush=True)
    perm, step = torch.randperm(10000), 0
    for _ in range(2):
        for i in range(0, 10000 - 127, 128):
            m.train_step(*tensors(data.train, perm[i:i + 128].tolist()))
            step += 1
            if step in (5, 10, 20, 40, 78, 156):
                print(f"step {step} dead", dead(), flush=True)


if __name__ == "__main__":
    main()
