"""Two small layout helpers shared by the kernels: batch slices, and whether a map is channels_last."""

from __future__ import annotations

import torch


def batch_slices(n: int, slices: int) -> list[slice]:
    """`slices` (at most) equal consecutive slices covering range(n)."""
    step = -(-n // max(1, slices))
    return [slice(i, i + step) for i in range(0, n, step)]


def is_channels_last_only(x: torch.Tensor) -> bool:
    """Whether a 4-d x is laid out channels_last and not also plain contiguous (channels innermost in memory)."""
    return x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
