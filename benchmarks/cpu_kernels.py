"""Two kernel timings behind issue 14's changes (CPU, ms per call, best of 3 x 20 calls):

* dropout's mask: torch's `F.dropout` (`bernoulli_`) vs ffvision's `fast_dropout` on a
  (128, 64, 16, 16) float32 map (2 M elements, VGG8 x0.25 layer 2's pooled hand-off);
* bf16 spatial goodness of layer 2's map (128, 64, 32, 32), P = 2, channels_last: the float32
  vector norm of the bf16 map (before) vs `patch_goodness` (pooled bf16 squares, after).

    python benchmarks/cpu_kernels.py
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from ffvision.core import fast_dropout
from ffvision.core.readouts import patch_goodness


def ms(f: Callable[[], object], n: int = 20) -> float:
    """Best of 3 means over n calls, in ms."""
    f()
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n * 1e3)
    return best


def main() -> None:
    """Print both comparisons."""
    x = torch.rand(128, 64, 16, 16)
    print(f"dropout p=0.1, {tuple(x.shape)} float32: F.dropout {ms(lambda: F.dropout(x, 0.1, True)):.2f} ms, "
          f"fast_dropout {ms(lambda: fast_dropout(x, 0.1)):.2f} ms")
    h = torch.rand(128, 64, 32, 32).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    v = h.unflatten(2, (2, 16)).unflatten(4, (2, 16))
    print(f"goodness P=2, {tuple(h.shape)} bf16 channels_last: float32 norm "
          f"{ms(lambda: torch.linalg.vector_norm(v, dim=(3, 5), dtype=torch.float32)):.2f} ms, "
          f"patch_goodness {ms(lambda: patch_goodness(h, 2)):.2f} ms  ({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
