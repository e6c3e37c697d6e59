"""Kernel timings behind issue 14's changes (CPU, ms per call, best of 3 x 20 calls):

* dropout's mask: torch's `F.dropout` (`bernoulli_`) vs ffvision's `fast_dropout` on a
  (128, 64, 16, 16) float32 map (2 M elements, VGG8 x0.25 layer 2's pooled hand-off);
* bf16 spatial goodness of layer 2's map (128, 64, 32, 32), P = 2, channels_last: the float32
  vector norm of the bf16 map (before) vs `patch_goodness` (pooled bf16 squares, after);
* the dropout multiply on layer 1's bf16 channels_last map (128, 32, 32, 32): a mask in NCHW
  order converted from bool (before) vs a mask in the map's own layout multiplied as uint8 (after);
* the fused step's gradient over h on the same map (P = 4): dL/dg broadcast in NCHW order
  (before) vs laid out as h is (after), and the compiled form;
* the RMS norm of the same map without autograd: whole, with float32 temporaries twice the map's
  size (before), vs `rms_normalize` in batch slices (after).

    python benchmarks/cpu_kernels.py
"""

from __future__ import annotations

import time
from typing import Callable

import torch
import torch.nn.functional as F

from ffvision.core import fast_dropout
from ffvision.core.dropout import random_lanes
from ffvision.core.fused import _grad_over_h_, _patch_view
from ffvision.core.norm import TINY, rms_normalize
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


def _grad_nchw_(h: torch.Tensor, dscores: torch.Tensor, projection: torch.Tensor, grid: int, area: int) -> None:
    """The gradient over h as before: dL/dg broadcast in NCHW order whatever h's layout."""
    b, c = h.shape[:2]
    dg = (dscores.float() @ projection.T).view(b, c, grid, 1, grid, 1) * (2.0 / area)
    _patch_view(h, grid).mul_(dg.to(h.dtype))


def _rms_whole(x: torch.Tensor) -> torch.Tensor:
    """The RMS norm as before: the float32 sum of squares and quotient of the whole batch at once."""
    ss = torch.linalg.vector_norm(x, dim=tuple(range(1, x.ndim)), keepdim=True, dtype=torch.float32).square()
    return (x / (ss.sqrt() / x[0].numel() ** 0.5 + TINY)).to(x.dtype)


def main() -> None:
    """Print every comparison."""
    x = torch.rand(128, 64, 16, 16)
    print(f"dropout p=0.1, {tuple(x.shape)} float32: F.dropout {ms(lambda: F.dropout(x, 0.1, True)):.2f} ms, "
          f"fast_dropout {ms(lambda: fast_dropout(x, 0.1)):.2f} ms")
    h = torch.rand(128, 64, 32, 32).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    v = h.unflatten(2, (2, 16)).unflatten(4, (2, 16))
    print(f"goodness P=2, {tuple(h.shape)} bf16 channels_last: float32 norm "
          f"{ms(lambda: torch.linalg.vector_norm(v, dim=(3, 5), dtype=torch.float32)):.2f} ms, "
          f"patch_goodness {ms(lambda: patch_goodness(h, 2)):.2f} ms")
    h1 = torch.rand(128, 32, 32, 32).to(torch.bfloat16).contiguous(memory_format=torch.channels_last)
    nchw = torch.randint(-(1 << 15), 1 << 15, h1.shape, dtype=torch.int16) >= -26214
    own = random_lanes(h1) >= -26214
    print(f"dropout multiply, {tuple(h1.shape)} bf16 channels_last: NCHW bool mask "
          f"{ms(lambda: h1 * nchw.to(h1.dtype).mul_(1 / 0.9)):.2f} ms, own-layout uint8 mask "
          f"{ms(lambda: (h1 * own.view(torch.uint8)).mul_(1 / 0.9)):.2f} ms")
    proj, ds = torch.randn(32 * 16, 10), torch.randn(128, 10)
    compiled = torch.compile(_grad_over_h_, dynamic=False)
    print(f"gradient over h, {tuple(h1.shape)} bf16 channels_last, P=4: NCHW-order dL/dg "
          f"{ms(lambda: _grad_nchw_(h1, ds, proj, 4, 64)):.2f} ms, own layout "
          f"{ms(lambda: _grad_over_h_(h1, ds, proj, 4, 64)):.2f} ms, compiled "
          f"{ms(lambda: compiled(h1, ds, proj, 4, 64)):.2f} ms")
    with torch.no_grad():
        print(f"RMS norm, {tuple(h1.shape)} bf16 channels_last, no autograd: whole "
              f"{ms(lambda: _rms_whole(h1)):.2f} ms, rms_normalize {ms(lambda: rms_normalize(h1)):.2f} ms  "
              f"({torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
