"""ASGE's conv -> ReLU -> spatial goodness -> fixed projection as one autograd function.

A layer-local step needs only the weight gradient of its conv (its input is detached), and the
readout's backward needs only h: with a = g R + b, g = patch-mean(h^2) and h = relu(conv(x)),

    dL/dh   = 2 h * up(dL/dg) / |patch|,   dL/dg = dL/da R^T,
    dL/dpre = dL/dh                          (h = 0 exactly where the ReLU is off),
    dL/dW   = conv_weight_grad(x, dL/dpre),  dL/db = sum dL/dpre.

So the function saves the conv input and h once, and its backward writes dL/dpre over h (the
block has handed h off before), where autograd's chain (conv, ReLU, square or norm, pooling,
matmul) keeps h twice or more and allocates a gradient per op. Two details matter as much:
autograd must not materialise a zero gradient for the (non-differentiable) h output, and the
convolutions (forward and weight gradient) run in batch slices where the CPU convolution
reorders NCHW buffers (`slices_for`). Measured: VGG8 x0.25, batch
128, float32, the exact peak falls from 135.9 to 81.7 MiB (0.39x backprop's) and a step is
~1.4x faster, so it is on by default (`fused_readout`;
`ffvision.kernels.enabled()` above it). Under autocast the conv runs in the autocast dtype, goodness
and projection in float32. Used by `LocalBlock` while training; evaluation and class
activation maps use the plain modules.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ffvision.kernels.layout import batch_slices, is_channels_last_only
from ffvision.kernels.reductions import patch_goodness


def _patch_view(h: torch.Tensor, p: int) -> torch.Tensor:
    """(B, C, H, W) as (B, C, P, H/P, P, W/P)."""
    b, c, height, width = h.shape
    return h.unflatten(2, (p, height // p)).unflatten(4, (p, width // p))


class _ConvGoodness(torch.autograd.Function):
    """h = relu(conv(x)), scores = patch-mean(h^2) R + b; gradients for the conv weight and bias only."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                projection: torch.Tensor, proj_bias: torch.Tensor, grid: int, padding: int,
                dtype: torch.dtype | None, chunks: int, compiled: bool) -> tuple[torch.Tensor, torch.Tensor]:
        cdt = dtype or x.dtype
        xc, wc = x.to(cdt), weight.to(cdt)
        bc = bias.to(cdt) if bias is not None else None
        with torch.autocast(device_type=x.device.type, enabled=False):
            h = _sliced_conv(xc, wc, bc, padding, chunks or slices_for(xc))  # (B, C, H, W), before the ReLU
            area = (h.shape[2] // grid) * (h.shape[3] // grid)
            scores = _readout(compiled)(h, projection, proj_bias, grid)  # ReLU in place; (B, N) float32
        ctx.save_for_backward(xc, h, wc, projection)
        ctx.grid, ctx.padding, ctx.area, ctx.chunks = grid, padding, area, chunks
        ctx.has_bias, ctx.weight_dtype = bias is not None, weight.dtype
        ctx.mark_non_differentiable(h)
        ctx.set_materialize_grads(False)  # else autograd hands backward an h-sized tensor of zeros for h
        return h, scores

    @staticmethod
    def backward(ctx: Any, _dh: torch.Tensor, dscores: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xc, h, wc, projection = ctx.saved_tensors
        b, c = h.shape[:2]
        # dL/dpre = h * up(dg), zero where the ReLU was off: written over h (the caller has
        # taken its hand-off already), so the backward allocates no h-sized gradient.
        _grad_over_h_(h, dscores, projection, ctx.grid, ctx.area)
        dpre = h
        dw = db = None
        # The weight gradient is a sum over samples: computed in `chunks` slices of the batch it
        # needs the convolution's working buffers for one slice at a time only.
        for sl in batch_slices(b, ctx.chunks or slices_for(dpre)):
            _, dwi, dbi = torch.ops.aten.convolution_backward(
                dpre[sl], xc[sl], wc, [c] if ctx.has_bias else None, [1, 1],
                [ctx.padding, ctx.padding], [1, 1], False, [0, 0], 1, [False, True, ctx.has_bias])
            dw = dwi if dw is None else dw.add_(dwi)
            if ctx.has_bias:
                db = dbi if db is None else db.add_(dbi)
        dw = dw.to(ctx.weight_dtype)
        db = db.to(ctx.weight_dtype) if ctx.has_bias else None
        return None, dw, db, None, None, None, None, None, None, None


def _readout_(h: torch.Tensor, projection: torch.Tensor, proj_bias: torch.Tensor, grid: int) -> torch.Tensor:
    """ReLU h in place and return its class scores patch-mean(h^2) R + b, (B, N) in float32."""
    h.relu_()
    return torch.addmm(proj_bias, patch_goodness(h, grid).flatten(1), projection)


def _grad_over_h_(h: torch.Tensor, dscores: torch.Tensor, projection: torch.Tensor, grid: int, area: int) -> None:
    """Overwrite h with dL/dpre = h * up(dL/dg) * 2 / |patch|, dL/dg = dL/da R^T."""
    b, c = h.shape[:2]
    dg = ((dscores.float() @ projection.T) * (2.0 / area)).to(h.dtype).view(b, c, grid, grid)
    if is_channels_last_only(h):
        # dL/dg in h's own layout (channels innermost): a broadcast over channels-strided values
        # made this multiply ~6x slower than the one over h's memory order (timed alone)
        dg = dg.contiguous(memory_format=torch.channels_last)
    _patch_view(h, grid).mul_(dg.unsqueeze(3).unsqueeze(5))  # (B, C, P, 1, P, 1) over (B, C, P, H/P, P, W/P)


@functools.cache
def _compiled_readout() -> Any:
    """The readout through torch.compile (compiled on first use; one static-shape graph per layer)."""
    return torch.compile(_readout_, dynamic=False)


def _readout(compiled: bool) -> Any:
    """The readout, eager or through torch.compile.

    Compiled, its ReLU, squares, patch means and projection fuse into one loop (~3x faster than
    eager). The gradient over h stays eager either way: one multiply in h's memory order, which
    measured ~2x faster than the compiler's loop for grids above 1 (timed alone).
    """
    return _compiled_readout() if compiled else _readout_


def _sliced_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int,
                 slices: int) -> torch.Tensor:
    """conv2d(x) computed in `slices` slices of the batch into one output (the same values)."""
    parts = batch_slices(x.shape[0], slices)
    if len(parts) == 1:
        return F.conv2d(x, weight, bias, padding=padding)
    first = F.conv2d(x[parts[0]], weight, bias, padding=padding)
    out = first.new_empty((x.shape[0], *first.shape[1:]))
    out[parts[0]] = first
    del first
    for sl in parts[1:]:
        out[sl] = F.conv2d(x[sl], weight, bias, padding=padding)
    return out


def slices_for(dpre: torch.Tensor) -> int:
    """How many batch slices the convolution (forward and weight gradient) runs in: 8 for NCHW, else 1.

    For NCHW tensors the CPU convolution reorders its input, output and gradient into its own
    layout (buffers of their sizes, seen with the exact memory measure); in slices the reorders of
    one slice are alive at a time (exact peak of VGG8 x0.25, batch 128: 112 -> 88 MiB with four;
    full width, once the hand-off works in place: 382.7 -> 370.2 MiB from four to eight, at the
    same step time within noise). channels_last tensors need no reorder.
    """
    return 1 if dpre.is_contiguous(memory_format=torch.channels_last) else 8


def conv_goodness(body: nn.Module, readout: nn.Module, x: torch.Tensor,
                  chunks: int = 0, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, scores) of a fusable layer: h without autograd history, scores differentiable in the conv's weights.

    The backward pass overwrites h with the gradient: use h (hand it off) before it. `chunks`:
    batch slices of the convolutions (0: `slices_for` decides). `compiled`: the readout (ReLU,
    goodness, projection) through torch.compile; the convolutions and the gradient over h eager.
    """
    conv = body.conv
    if x.shape[2] % readout.grid or x.shape[3] % readout.grid:
        raise ValueError("the feature map does not tile into the readout's grid")
    dtype = torch.get_autocast_dtype(x.device.type) if torch.is_autocast_enabled(x.device.type) else None
    return _ConvGoodness.apply(x, conv.weight, conv.bias, readout.projection, readout.bias, readout.grid,
                               conv.padding[0], dtype, chunks, compiled)


def conv_goodness_reference(body: nn.Module, readout: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(h, scores) through autograd's chain of the same modules: the values and weight gradients to match."""
    h = body(x)
    return h, readout(h)
