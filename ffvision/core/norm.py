"""Parameter-free per-sample RMS normalisation, the FF family's "layer norm" between blocks."""

from __future__ import annotations

import math

import torch
from torch import nn

# The official ASGE code adds exp(-50) to the RMS; any value far below a real RMS works and
# keeps an all-zero input at zero instead of producing NaN.
TINY = 1e-20


def rms_normalize(x: torch.Tensor, eps: float = TINY) -> torch.Tensor:
    """Divide each sample by the root-mean-square of all its values (over C, H, W)."""
    dims = tuple(range(1, x.ndim))
    norm = sum_of_squares(x, dims, keepdim=True).sqrt()  # (B, 1, 1, 1)
    rms = norm / math.sqrt(x[0].numel())
    # Multiply in x's own dtype: a bf16 x / float32 rms would materialise a float32 copy of x.
    return x * (1.0 / (rms + eps)).to(x.dtype)


def sum_of_squares(x: torch.Tensor, dims: tuple[int, ...], keepdim: bool = False) -> torch.Tensor:
    """Sum of x^2 over dims as float32, in one pass that never materialises x^2 or a float32 copy of x.

    vector_norm accumulates in float32 for every input dtype. Asked for a float32 result of a
    bf16 input it first copies the whole input to float32 (20x slower on a CPU); the bf16
    result is rounded to 8 bits of mantissa (2^-9 relative), the precision bf16 activations
    carry anyway, so for reduced-precision inputs that rounding is accepted.
    """
    if x.dtype in (torch.bfloat16, torch.float16):
        return torch.linalg.vector_norm(x, ord=2, dim=dims, keepdim=keepdim).float().square()
    return torch.linalg.vector_norm(x, ord=2, dim=dims, keepdim=keepdim, dtype=torch.float32).square()


class RMSNorm(nn.Module):
    """Module form of `rms_normalize` (no learnable scale: it is not a trained layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each sample to unit RMS."""
        return rms_normalize(x)
