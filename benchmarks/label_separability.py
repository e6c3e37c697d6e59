"""Can a receptive field read the label once it is mixed with an image? (FF-CNN label sets)

For each label set: FashionMNIST training images mixed with every class's pattern,
x_c = (1 - K) x + K T_c; random k x k windows of the mixes; a logistic regression on each
window's (phase-free) power spectrum predicts the class of the pattern. Held-out accuracy
(chance 1/N) says how well a k x k receptive field - 7 for FF-CNN's first layer, 13 for its
second - can tell the labels apart through the image. `fourier-v1` is the first Fourier
formula (2-4 cycles per image), kept here for the comparison.

    python benchmarks/label_separability.py --out benchmarks/results/label_separability.jsonl
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
from pathlib import Path

import torch
import torch.nn.functional as F

from ffvision.core.labels import balance_patterns, fourier_patterns, morphological_patterns
from ffvision.data import build_splits
from ffvision.train.devices import batch_to_device


def fourier_v1(n: int, size: int) -> torch.Tensor:
    """The first Fourier formula: k = 2, 3, ... cycles per image, ceil(sqrt(N)) orientations."""
    n_o = math.ceil(math.sqrt(n))
    v, u = torch.meshgrid(torch.arange(size) / size, torch.arange(size) / size, indexing="ij")
    return torch.stack([0.5 + 0.5 * torch.cos(2 * math.pi * (2 + c // n_o) * (u * math.cos(math.pi * (c % n_o) / n_o)
                                                                            + v * math.sin(math.pi * (c % n_o) / n_o)))
                        for c in range(n)])


def window_spectra(mixed: torch.Tensor, k: int, per_image: int, g: torch.Generator) -> torch.Tensor:
    """|FFT| of `per_image` random k x k windows (mean removed) of each (H, W) image: (B * per_image, k * k)."""
    p = F.unfold(mixed[:, None], k, padding=k // 2)  # (B, k*k, L)
    idx = torch.randint(0, p.shape[2], (mixed.shape[0], per_image), generator=g)
    w = torch.gather(p, 2, idx[:, None].expand(-1, k * k, -1)).permute(0, 2, 1).reshape(-1, k, k)
    return torch.fft.fft2(w - w.mean((1, 2), keepdim=True)).abs().reshape(-1, k * k)


def readability(patterns: torch.Tensor, images: torch.Tensor, k: int, intensity: float, seed: int = 0) -> float:
    """Held-out accuracy of a logistic regression reading the class from k x k windows of the mixes."""
    g = torch.Generator().manual_seed(seed)
    xs, ys = [], []
    for c in range(patterns.shape[0]):
        f = window_spectra((1 - intensity) * images + intensity * patterns[c], k, 40, g)
        xs.append(f)
        ys.append(torch.full((f.shape[0],), c))
    x, y = torch.cat(xs), torch.cat(ys)
    perm = torch.randperm(len(y), generator=g)
    x, y = ((x - x.mean(0)) / (x.std(0) + 1e-6))[perm], y[perm]
    n_train = int(0.8 * len(y))
    w = torch.zeros(k * k, patterns.shape[0], requires_grad=True)
    b = torch.zeros(patterns.shape[0], requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(x[:n_train] @ w + b, y[:n_train]).backward()
        opt.step()
    with torch.no_grad():
        return ((x[n_train:] @ w + b).argmax(1) == y[n_train:]).float().mean().item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--intensity", type=float, default=0.35)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.manual_seed(0)
    data = build_splits("fashion-mnist", None, train_subset=args.images, val_size=100, image_size=28, augment="none")
    x = torch.stack([data.train[i][0] for i in range(args.images)])
    x, _ = batch_to_device(x, torch.zeros(len(x), dtype=torch.long), device=torch.device("cpu"), channels_last=False)
    x = x[:, 0]
    sets = {"fourier": fourier_patterns(10, 28, 28), "fourier-v1": fourier_v1(10, 28),
            "morphological": morphological_patterns(10, 28, 28, 0)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = []
    for name, p in sets.items():
        p = balance_patterns(p)
        windows = {f"window_{k}": round(readability(p, x, k, args.intensity), 4) for k in (7, 13)}
        lines.append(json.dumps({"label_set": name, "intensity": args.intensity, "images": args.images,
                                 "commit": commit, **windows}))
        print(lines[-1], flush=True)
    if args.out:  # one append for the whole table
        with Path(args.out).open("a") as fh:
            fh.write("".join(line + "\n" for line in lines))


if __name__ == "__main__":
    main()
