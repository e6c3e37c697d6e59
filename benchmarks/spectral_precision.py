"""Goodness inference of one FF checkpoint with direct vs spectral convolutions, in float32 and bf16 (stop 30).

Per-layer goodness accuracy on the last N images of FashionMNIST's training file (the validation split of the
run that wrote the checkpoint) and how often each variant's argmax over labels agrees with float32 spectral
(= float32 direct: exact to ~1e-6).

    OMP_NUM_THREADS=1 python benchmarks/spectral_precision.py runs/sweep128/ffcnn128-f-k3s16-lr5e-3/best.pt
"""

from __future__ import annotations

import argparse
import time

import torch

from ffvision.data import build_splits
from ffvision.models.convstack import set_conv_impl
from ffvision.train.checkpoint import load_checkpoint, method_from_checkpoint


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--variants", nargs="+", default=["fp32/spectral", "bf16/spectral", "bf16/direct"],
                    help="amp/conv pairs; fp32/spectral is the reference and always runs")
    ap.add_argument("--data-dir", default=None)
    args = ap.parse_args()
    method, _ = method_from_checkpoint(load_checkpoint(args.checkpoint))
    train_file = build_splits("fashion-mnist", args.data_dir, image_size=28).train
    x = train_file.images[-args.images:].float().div(255)
    y = train_file.labels[-args.images:]
    method.eval()
    layers = {}
    for variant in dict.fromkeys(["fp32/spectral", *args.variants]):
        amp, conv = variant.split("/")
        method.amp_dtype = torch.bfloat16 if amp == "bf16" else None
        set_conv_impl(method, conv)
        t = time.time()
        with torch.no_grad():
            layers[variant] = torch.stack(method.scores(x, None, select=True).layers)
        acc = [round(float((s.argmax(1) == y).float().mean()), 3) for s in layers[variant]]
        agree = [round(float((a.argmax(1) == b.argmax(1)).float().mean()), 3)
                 for a, b in zip(layers[variant], layers["fp32/spectral"])]
        print(f"{variant:<14} per-layer goodness acc {acc}  agreement with fp32 {agree}  {time.time() - t:.0f}s",
              flush=True)


if __name__ == "__main__":
    main()
