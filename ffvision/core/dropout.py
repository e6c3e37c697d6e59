"""Dropout whose mask costs a third of torch's on the CPU (same distribution, same module interface).

On the CPU `torch.nn.functional.dropout` draws one random number per element (`bernoulli_`),
which took 16-29% of an ASGE or backprop training step of VGG8 at width 0.25 (profiled,
docs/results.md section 2). This module draws one 64-bit word per four elements from torch's
generator and compares each 16-bit lane with a threshold: each element is dropped with
probability round(p * 65536) / 65536 (within 1e-5 of p), independently, and kept elements are
scaled by 1 / (1 - that probability), so the expectation is unchanged. Seeded runs stay
reproducible (the words come from torch's default generator). Elsewhere (CUDA) it is torch's
dropout, which is fused there.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LANES = 4  # 16-bit lanes per int64 word
_LEVELS = 1 << 16


def keep_mask(x: torch.Tensor, p: float) -> tuple[torch.Tensor, float]:
    """(bool mask of x's shape, True where kept, and the exact drop probability it was drawn with)."""
    n = x.numel()
    cut = round(p * _LEVELS)
    words = torch.randint(-(1 << 63), (1 << 63) - 1, (-(-n // _LANES),), dtype=torch.int64, device=x.device)
    lanes = words.view(torch.int16)[:n].view(x.shape)  # uniform over [-32768, 32767]
    return lanes >= cut - _LEVELS // 2, cut / _LEVELS


def fast_dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """Inverted dropout of x with drop probability p (differentiable; identity when not training)."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, training)
    keep, p_exact = keep_mask(x, p)
    return x * keep.to(x.dtype).mul_(1.0 / (1.0 - p_exact))


class FastDropout(nn.Dropout):
    """nn.Dropout with a cheaper mask on the CPU (`fast_dropout`); same options and state."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Drop elements with probability p while training."""
        return fast_dropout(x, self.p, self.training)
