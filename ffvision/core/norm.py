"""Parameter-free per-sample RMS normalisation, the FF family's "layer norm" between blocks."""

from __future__ import annotations

import math

import torch
from torch import nn

from ffvision.kernels.reductions import divide_rows, sum_of_squares

# The official ASGE code adds exp(-50) to the RMS; any value far below a real RMS works and
# keeps an all-zero input at zero instead of producing NaN.
TINY = 1e-20


def rms_normalize(x: torch.Tensor, eps: float = TINY, inplace: bool = False) -> torch.Tensor:
    """Divide each sample by the root-mean-square of all its values (over C, H, W).

    inplace: overwrite x when no gradient is recorded through it (a hand-off's temporary).
    """
    dims = tuple(range(1, x.ndim))
    rms = sum_of_squares(x, dims, keepdim=True).sqrt() / math.sqrt(x[0].numel()) + eps  # (B, 1, 1, 1), float32
    # Divide in float32, round once: a bf16 scale factor would be off by up to 2^-9 for a whole sample,
    # and FF compares goodness between label overlays at that level.
    return divide_rows(x, rms, inplace)


class RMSNorm(nn.Module):
    """Module form of `rms_normalize` (no learnable scale: it is not a trained layer).

    inplace: overwrite the input where no gradient goes through it (set where the input is a
    temporary nothing else holds, e.g. after a pool).
    """

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = inplace

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each sample to unit RMS."""
        return rms_normalize(x, inplace=self.inplace)
