"""Parameter-free per-sample RMS normalisation, the FF family's "layer norm" between blocks."""

from __future__ import annotations

import math

import torch
from torch import nn

from ffvision.core.slicing import batch_slices

# The official ASGE code adds exp(-50) to the RMS; any value far below a real RMS works and
# keeps an all-zero input at zero instead of producing NaN.
TINY = 1e-20
_SLICES = 4  # batch slices of reduced-precision work without autograd (`_slices`)


def rms_normalize(x: torch.Tensor, eps: float = TINY, inplace: bool = False) -> torch.Tensor:
    """Divide each sample by the root-mean-square of all its values (over C, H, W).

    inplace: overwrite x when no gradient is recorded through it (a hand-off's temporary).
    """
    dims = tuple(range(1, x.ndim))
    rms = sum_of_squares(x, dims, keepdim=True).sqrt() / math.sqrt(x[0].numel()) + eps  # (B, 1, 1, 1), float32
    # Divide in float32, round once: a bf16 scale factor would be off by up to 2^-9 for a whole sample,
    # and FF compares goodness between label overlays at that level.
    slices = _slices(x)  # None under autograd
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        if slices is None:
            return x.div_(rms)  # float32 x (or a small batch): one kernel
        # A bf16 x divided in place by a float32 (B, 1, 1, 1) whole takes a slow mixed-dtype
        # broadcast path on the CPU (VGG8 x0.25 layer 2 hand-off, channels_last: 7 ms); a few
        # samples at a time through a cache-sized float32 quotient it is ~1 ms, same values.
        for sl in slices:
            x[sl] = x[sl] / rms[sl]
        return x
    if slices is None:
        return (x / rms).to(x.dtype)
    out = torch.empty_like(x)
    for sl in slices:
        out[sl] = x[sl] / rms[sl]
    return out


def _slices(x: torch.Tensor) -> list[slice] | None:
    """Batch slices for a reduced-precision x without autograd, else None (work on x whole).

    A float32 result of a bf16 map computed whole needs a float32 temporary twice the map's size
    (the float32 copy inside vector_norm, the float32 quotient): fresh pages at every call. A few
    samples at a time it stays cache-sized (bf16 hand-off of VGG8 x0.25 layer 1: the RMS norm
    2.5 -> 1.2 ms, timed alone); the values are the same.
    """
    if x.dtype == torch.float32 or x.ndim < 2 or x.shape[0] < 2 * _SLICES or (
            torch.is_grad_enabled() and x.requires_grad):
        return None
    return batch_slices(x.shape[0], _SLICES)


def sum_of_squares(x: torch.Tensor, dims: tuple[int, ...], keepdim: bool = False) -> torch.Tensor:
    """Sum of x^2 over dims, accumulated and returned in float32 (exact to ~1e-5 also for bf16 x).

    Asked for a float32 result, vector_norm of a bf16 tensor copies it to float32 first; its
    bf16 result would be 20x faster but rounded to 2^-9, which costs FF-CNN's goodness
    inference about 6 points (measured): the goodness of the label overlays of one image
    differ by a few tenths of a percent. Without autograd, and over dims that exclude the batch,
    the copy is made a few samples at a time (`_slices`).
    """
    slices = None if 0 in dims else _slices(x)
    if slices is None:
        return torch.linalg.vector_norm(x, ord=2, dim=dims, keepdim=keepdim, dtype=torch.float32).square()
    return torch.cat([torch.linalg.vector_norm(x[sl], ord=2, dim=dims, keepdim=keepdim, dtype=torch.float32)
                      for sl in slices]).square()


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
