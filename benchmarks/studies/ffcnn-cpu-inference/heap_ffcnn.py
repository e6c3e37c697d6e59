"""Which glibc heap settings make FF-CNN's 128-filter goodness inference fast, and where.

Run each setting in its own process (mallopt changes the process for good):

    cd benchmarks/studies/ffcnn-cpu-inference
    for s in none thr trim pad thr+trim trim+pad thr+trim+pad; do python heap_ffcnn.py --set $s; done
    python heap_ffcnn.py --set none --stages; python heap_ffcnn.py --set thr+trim+pad --stages

thr: mmap threshold fixed at 32 MiB; trim: no trimming of the heap's free top; pad: 256 MiB top pad
(thr+trim+pad is what `ffvision.train.heap.keep_freed_memory` sets). Prints goodness img/s (untrained
ffcnn3, 128 filters, 256 random images, all 3 layers, 3 repeats) or, with --stages, the time of each
stage of one spectral 128 -> 128 layer on one evaluation pass (83 rows).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

import ffvision
from ffvision.kernels.spectral import _mix, _stage_matrices, kernel_spectrum
from ffvision.train import heap


def apply(setting: str) -> None:
    """mallopt the parts named in setting ('none' or '+'-joined thr, trim, pad; see heap.SETTINGS)."""
    names = [n for n in setting.split("+") if n != "none"]
    assert not names or heap.mallopt(names), setting


def ms(f, repeats: int = 10) -> float:
    """Mean milliseconds of f() after one warm-up call."""
    f()
    t = time.perf_counter()
    for _ in range(repeats):
        f()
    return (time.perf_counter() - t) / repeats * 1e3


def stages() -> None:
    """Time each stage of one spectral layer (83 rows of 128 channels at 28 px, 7x7)."""
    n, c, o, h, w, p = 83, 128, 128, 28, 28, 3
    x = torch.randn(h, w, n * c)
    kr, ki = kernel_spectrum(torch.randn(o, c, 7, 7) * 0.05, h, w)
    fwd_w, fwd_h, inv_h, inv_w = _stage_matrices(h, w, p, x.device, torch.float32)
    py, fx = h + p, (w + p) // 2 + 1
    a = torch.matmul(fwd_w, x)
    spec = (fwd_h @ a.view(2 * h, fx * n * c)).view(2, py * fx, n, c)
    ys = _mix(spec[0], spec[1], kr, ki, torch.empty(2, py * fx, n, o))
    z = inv_h @ ys.view(2 * py, fx * n * o)
    print(f"forward W  {ms(lambda: torch.matmul(fwd_w, x)):6.1f} ms")
    print(f"forward H  {ms(lambda: fwd_h @ a.view(2 * h, fx * n * c)):6.1f} ms")
    print(f"mix        {ms(lambda: _mix(spec[0], spec[1], kr, ki, torch.empty(2, py * fx, n, o))):6.1f} ms")
    print(f"inverse H  {ms(lambda: inv_h @ ys.view(2 * py, fx * n * o)):6.1f} ms")
    print(f"inverse W  {ms(lambda: torch.matmul(inv_w, z.view(h, 2 * fx, n * o))):6.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", default="none", help="none, or '+'-joined thr, trim, pad")
    ap.add_argument("--stages", action="store_true")
    args = ap.parse_args()
    apply(args.set)
    torch.manual_seed(0)
    print(f"== {args.set}")
    if args.stages:
        stages()
        return
    m = ffvision.create_method("ffcnn", num_classes=10, in_channels=1, image_size=28, model="ffcnn3", filters=128)
    m.eval()
    x = torch.rand(256, 1, 28, 28)
    with torch.no_grad():
        m.goodness_scores(x[:16], 3)
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            m.goodness_scores(x, 3)
            runs.append(256 / (time.perf_counter() - t))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    print("goodness img/s " + " ".join(f"{r:.1f}" for r in runs) + f"   peak RSS {rss} MB")


if __name__ == "__main__":
    main()
