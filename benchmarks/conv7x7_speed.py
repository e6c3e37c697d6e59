"""Speed of one FF-CNN layer (128 -> 128 channels, 7x7, 28 px) on this CPU: float32 / bf16, NCHW / channels_last.

Goodness inference at the paper's 128 filters costs ten such convolutions per image per voting layer, so this
bounds what any FF-CNN setting of the same work can reach on a machine.

    OMP_NUM_THREADS=2 python benchmarks/conv7x7_speed.py
"""

from __future__ import annotations

import time

import torch


def images_per_second(channels_last: bool, bf16: bool, grad: bool, batch: int = 64, repeats: int = 3) -> float:
    """Best-of-repeats img/s of one conv (forward, or forward + backward of its squared mean)."""
    conv = torch.nn.Conv2d(128, 128, 7, padding=3)
    x = torch.randn(batch, 128, 28, 28)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    x.requires_grad_(grad)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = conv(x)
            if grad:
                y.float().square().mean().backward()
        best = min(best, time.perf_counter() - t)
    return batch / best


def main() -> None:
    torch.manual_seed(0)
    flops = 2 * 128 * 128 * 49 * 28 * 28  # multiply-adds x 2 per image, forward
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    for grad in (False, True):
        for channels_last in (False, True):
            for bf16 in (False, True):
                ips = images_per_second(channels_last, bf16, grad)
                print(f"{'fwd+bwd' if grad else 'forward':8s} {'channels_last' if channels_last else 'NCHW':14s} "
                      f"{'bf16' if bf16 else 'float32':8s} {ips:7.1f} img/s"
                      + ("" if grad else f"  ({ips * flops / 1e9:.0f} GFLOP/s)"), flush=True)


if __name__ == "__main__":
    main()
