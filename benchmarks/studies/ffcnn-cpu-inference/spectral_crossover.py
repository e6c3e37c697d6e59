"""Where the frequency-domain convolution pays: float32 spectral vs torch's direct bf16 7x7 convolution.

Rows per second of one 7x7 "same" convolution at 28 px, batch 64, for several channel counts: inference
(no grad, kernel spectrum computed once) and a training step (forward + backward to the weight), both under
bf16 autocast. Sets `SPECTRAL_MIN_CHANNELS` in ffvision/kernels/spectral.py.

    OMP_NUM_THREADS=1 python benchmarks/studies/ffcnn-cpu-inference/spectral_crossover.py > spectral-crossover.txt
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from ffvision.kernels.spectral import kernel_spectrum, spectral_conv2d


def seconds(fn, reps: int = 3) -> float:
    """Mean seconds of fn() over reps calls, after one warm-up call."""
    fn()
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def rates(c: int, o: int, h: int = 28, k: int = 7, bs: int = 64) -> str:
    """One line: inference and training rows/s of a c -> o k x k convolution, direct bf16 vs spectral."""
    w = torch.nn.Parameter(torch.randn(o, c, k, k) * 0.05)
    x = torch.randn(bs, c, h, h).relu()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.no_grad():
            spec = kernel_spectrum(w, h, h)
            ed = seconds(lambda: F.conv2d(x, w, None, padding=k // 2))
            es = seconds(lambda: spectral_conv2d(x, w, None, spec))
        td = seconds(lambda: F.conv2d(x, w, None, padding=k // 2).float().square().mean().backward())
        ts = seconds(lambda: spectral_conv2d(x, w).float().square().mean().backward())
    return (f"C{c}->O{o}: eval direct bf16 {bs / ed:.0f} spectral(fp32) {bs / es:.0f} rows/s | "
            f"train direct {bs / td:.0f} spectral {bs / ts:.0f}")


def main() -> None:
    for c, o in [(1, 32), (1, 128), (32, 32), (64, 64), (96, 96), (128, 128)]:
        print(rates(c, o), flush=True)

if __name__ == "__main__":
    main()
