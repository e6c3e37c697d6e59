"""Reductions and divisions of bf16 feature maps without their float32 temporaries, and patch goodness.

A float32 result of a bf16 map computed whole needs a float32 temporary twice the map's size (the
float32 copy inside vector_norm, the float32 quotient): fresh pages at every call. A few samples at a
time it stays cache-sized (bf16 hand-off of VGG8 x0.25 layer 1: the RMS norm 2.5 -> 1.2 ms, timed
alone); the values are the same. Each function's `*_reference` is the whole-tensor form.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ffvision import kernels
from ffvision.kernels.layout import batch_slices

_SLICES = 4  # batch slices of reduced-precision work without autograd


def bf16_slices(x: torch.Tensor) -> list[slice] | None:
    """Batch slices for a reduced-precision x without autograd, else None (work on x whole)."""
    if not kernels.enabled() or x.dtype == torch.float32 or x.ndim < 2 or x.shape[0] < 2 * _SLICES or (
            torch.is_grad_enabled() and x.requires_grad):
        return None
    return batch_slices(x.shape[0], _SLICES)


def sum_of_squares(x: torch.Tensor, dims: tuple[int, ...], keepdim: bool = False) -> torch.Tensor:
    """Sum of x^2 over dims, accumulated and returned in float32 (exact to ~1e-5 also for bf16 x).

    Asked for a float32 result, vector_norm of a bf16 tensor copies it to float32 first; its
    bf16 result would be 20x faster but rounded to 2^-9, which costs FF-CNN's goodness
    inference about 6 points (measured): the goodness of the label overlays of one image
    differ by a few tenths of a percent. Without autograd, and over dims that exclude the batch,
    the copy is made a few samples at a time.
    """
    slices = None if 0 in dims else bf16_slices(x)
    if slices is None:
        return sum_of_squares_reference(x, dims, keepdim)
    return torch.cat([torch.linalg.vector_norm(x[sl], ord=2, dim=dims, keepdim=keepdim, dtype=torch.float32)
                      for sl in slices]).square()


def sum_of_squares_reference(x: torch.Tensor, dims: tuple[int, ...], keepdim: bool = False) -> torch.Tensor:
    """Sum of x^2 over dims in float32, x whole."""
    return torch.linalg.vector_norm(x, ord=2, dim=dims, keepdim=keepdim, dtype=torch.float32).square()


def divide_rows(x: torch.Tensor, scale: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """x / scale in x's dtype, scale float32 (B, 1, ...): divided in float32 and rounded once; in place
    (over x) when asked and no gradient is recorded through x."""
    slices = bf16_slices(x)  # None under autograd
    if slices is None:
        return divide_rows_reference(x, scale, inplace)
    inplace = inplace and not (torch.is_grad_enabled() and x.requires_grad)
    # A bf16 x divided in place by a float32 (B, 1, 1, 1) whole takes a slow mixed-dtype broadcast path on
    # the CPU (VGG8 x0.25 layer 2 hand-off, channels_last: 7 ms); a few samples at a time through a
    # cache-sized float32 quotient it is ~1 ms, same values.
    out = x if inplace else torch.empty_like(x)
    for sl in slices:
        out[sl] = x[sl] / scale[sl]
    return out


def divide_rows_reference(x: torch.Tensor, scale: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """x / scale in x's dtype, whole (in place when asked and no gradient is recorded through x)."""
    if inplace and not (torch.is_grad_enabled() and x.requires_grad):
        return x.div_(scale)
    return (x / scale).to(x.dtype)


def patch_goodness(h: torch.Tensor, p: int) -> torch.Tensor:
    """Mean of h^2 over each of the P x P patches that tile h exactly, (B, C, P, P) in float32 (bf16 for a
    bf16 h, rounded once).

    Measured on the CPU, each form where it is fastest:
    float32 with P <= 2: per-patch vector norms, reduced in one pass without materialising h^2
    (several times faster than pooling h^2); float32 with P > 2: pooled squares; bf16: the pooled
    bf16 squares, accumulated in float32 by the pooling kernel and rounded to bf16 once (relative
    error ~2^-9, the precision h itself has) - a float32 norm of bf16 h copies h to float32 first,
    which took a quarter of a bf16 ASGE step.
    """
    if not kernels.enabled():
        return patch_goodness_reference(h, p)
    height, width = h.shape[2] // p, h.shape[3] // p
    if h.dtype == torch.float32 and p <= 2:
        patches = h.unflatten(2, (p, height)).unflatten(4, (p, width))  # (B, C, P, h, P, w)
        return torch.linalg.vector_norm(patches, dim=(3, 5), dtype=torch.float32).square() / (height * width)
    if h.dtype == torch.float32:
        return F.avg_pool2d(h.square(), (height, width))
    slices = bf16_slices(h)
    if slices is None:
        return F.avg_pool2d(h * h, (height, width)).float()
    # Without autograd, a few samples at a time: the whole h^2 of VGG8 x0.25 layer 2 (17 MB of fresh
    # pages at every step) took 27 ms in a training step against ~3 ms for the slices; same values.
    return torch.cat([F.avg_pool2d(h[sl] * h[sl], (height, width)) for sl in slices]).float()


def patch_goodness_reference(h: torch.Tensor, p: int) -> torch.Tensor:
    """Mean of h^2 over each P x P patch in float32: the squares pooled."""
    return F.avg_pool2d(h.float().square(), (h.shape[2] // p, h.shape[3] // p))


def grid_mean(x: torch.Tensor, p: int) -> torch.Tensor:
    """Adaptive average pooling of x (B, C, H, W) to (B, C, P, P) as one matmul over the flattened maps.

    Each output cell is the mean of its adaptive window (rows floor(iH/P) to ceil((i+1)H/P), likewise
    columns), written as a (H*W, P*P) averaging matrix: on the CPU the pooling kernels' backward is slow
    for windows that do not tile the map and for bf16 (7 x 7 -> 4 x 4, 128 x 80 channels, forward and
    backward: 4.1 -> 1.2 ms in float32, 6.3 -> 0.9 ms in bf16, Zen 4, 1 thread). In x's own dtype.
    """
    if not kernels.enabled():
        return grid_mean_reference(x, p)
    weights = _grid_weights(x.shape[-2], x.shape[-1], p, x.dtype, x.device)
    with torch.autocast(x.device.type, enabled=False):
        return (x.flatten(-2) @ weights).unflatten(-1, (p, p))


def grid_mean_reference(x: torch.Tensor, p: int) -> torch.Tensor:
    """Adaptive average pooling of x to P x P."""
    return F.adaptive_avg_pool2d(x, p)


@functools.lru_cache(maxsize=64)
def _grid_weights(height: int, width: int, p: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The (H*W, P*P) matrix of adaptive average pooling's windows, each column summing to 1."""

    def windows(n: int) -> torch.Tensor:
        m = torch.zeros(p, n, dtype=torch.float64)
        for i in range(p):
            start, end = (i * n) // p, -(-((i + 1) * n) // p)
            m[i, start:end] = 1.0 / (end - start)
        return m

    return torch.kron(windows(height), windows(width)).t().to(dtype=dtype, device=device)
