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
    # vector_norm reduces in one pass without materialising x^2; float32 keeps bf16 accurate.
    norm = torch.linalg.vector_norm(x, ord=2, dim=dims, keepdim=True, dtype=torch.float32)  # (B, 1, 1, 1)
    rms = norm / math.sqrt(x[0].numel())
    # Multiply in x's own dtype: a bf16 x / float32 rms would materialise a float32 copy of x.
    return x * (1.0 / (rms + eps)).to(x.dtype)


class RMSNorm(nn.Module):
    """Module form of `rms_normalize` (no learnable scale: it is not a trained layer)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each sample to unit RMS."""
        return rms_normalize(x)
