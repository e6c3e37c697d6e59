"""LocalBlock: the unit of layer-local learning.

A block owns a body (the layers it trains), a readout (features -> class scores or goodness)
and a local loss. Its input is detached on entry and its output is detached on exit, so no
gradient can ever cross a block boundary - the defining property of every FF method here.
The optimizer of each block lives with the method that built it (`method.optimizers`), one
per block, so one block's step touches only that block's parameters.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ffvision import kernels
from ffvision.core.readouts import SpatialGoodnessReadout
from ffvision.kernels.conv_goodness import conv_goodness


def fusable(body: nn.Module, readout: nn.Module) -> bool:
    """Whether (body, readout) is a stride-1 conv + ReLU layer under a spatial goodness readout that tiles exactly."""
    conv = getattr(body, "conv", None)
    return (isinstance(readout, SpatialGoodnessReadout) and isinstance(conv, nn.Conv2d)
            and isinstance(getattr(body, "act", None), nn.ReLU) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1 and conv.kernel_size[0] == conv.kernel_size[1]
            and conv.padding == (conv.kernel_size[0] // 2,) * 2)


class BlockOutput(NamedTuple):
    """What one block computes: feature map h (with graph), readout scores, detached output.

    `out` is a tensor, or a (y, skip) tuple inside a residual block split into parts; it is
    None when the hand-off was deferred (`forward(x, hand_off=False)`), and `skip` then holds
    the residual input the hand-off will need.
    """

    h: torch.Tensor
    scores: torch.Tensor
    out: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None
    skip: torch.Tensor | None = None


def detach(x: torch.Tensor | tuple) -> torch.Tensor | tuple:
    """Detach a tensor or every tensor of a tuple."""
    return tuple(detach(t) for t in x) if isinstance(x, tuple) else x.detach()


class LocalBlock(nn.Module):
    """Wrap existing modules as one locally trained block (detaches on both sides)."""

    def __init__(
        self,
        body: nn.Module,
        readout: nn.Module,
        post: nn.Module | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.body = body
        self.readout = readout
        self.post = post if post is not None else nn.Identity()
        self.loss_fn = loss if loss is not None else F.cross_entropy
        self.device: torch.device | None = None  # set when blocks are pipelined over devices
        self.fused = False  # training step through kernels/conv_goodness.py (conv -> ReLU -> spatial goodness)
        self.fused_chunks = 0  # batch slices of the fused step's convolutions (0: by memory layout)
        self.compiled = False  # set by compile()

    def forward(self, x: torch.Tensor | tuple, hand_off: bool = True) -> BlockOutput:
        """Run the body and readout; hand on post(h) without autograd history.

        With hand_off=False the output is left for `hand_off(o)` after the block's update: h
        does not change when the weights do, so the values are the same, and the hand-off
        tensors are not alive during the backward pass (a lower peak memory).
        """
        x = detach(x)
        if self.device is not None:  # pipelined: the previous block may live on another device
            x = tuple(t.to(self.device) for t in x) if isinstance(x, tuple) else x.to(self.device)
        if self.fused and self.training and torch.is_grad_enabled() and torch.is_tensor(x) and kernels.enabled():
            # one autograd node; its backward writes the gradient over h, so the hand-off is
            # taken now, whatever `hand_off` says (the caller only hands off when out is None)
            h, scores = conv_goodness(self.body, self.readout, x, self.fused_chunks, self.compiled)
            o = BlockOutput(h, scores, None)
            return o._replace(out=self.hand_off(o))
        res = self.body(x)
        h, skip = res if isinstance(res, tuple) else (res, None)  # a (y, skip) pair inside a residual
        o = BlockOutput(h, self.readout(h), None, skip)
        return o._replace(out=self.hand_off(o)) if hand_off else o

    def compile(self, *args: object, **kwargs: object) -> None:
        """torch.compile this block in place, for its own (static) shapes.

        A fused block (ASGE) keeps its hand-written step and compiles its readout (ReLU, squares,
        patch means, projection), where the compiler's fusion pays; autograd through a compiled
        graph could not keep the gradient written over h. Other blocks are compiled whole,
        activations out of place. All blocks share LocalBlock.forward, so dynamo would see one
        function at many shapes and switch to a dynamic-shape graph, whose backward failed for
        ASGE's readout with a stride assertion (torch 2.14); static shapes per block avoid it.
        """
        import torch._dynamo

        cfg = torch._dynamo.config  # one entry per block and mode: allow them all
        for name in ("recompile_limit", "cache_size_limit"):
            if hasattr(cfg, name):
                setattr(cfg, name, max(getattr(cfg, name), 64))
        self.compiled = True
        if self.fused:
            # the hand-off stays eager: its dropout mask is cheaper from torch's generator than from
            # the compiler's (VGG8 x0.25 bf16 hand-offs: 33 vs 42 ms a step, measured)
            return
        for m in self.modules():
            if getattr(m, "inplace", False) is True:
                m.inplace = False
        super().compile(*args, **{"dynamic": False, **kwargs})

    def hand_off(self, o: BlockOutput) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """post(h), detached (with the detached skip input inside a residual block)."""
        with torch.no_grad():  # the hand-off never needs a graph: nothing upstream learns from it
            out = self.post(o.h.detach())
        return out if o.skip is None else (out, o.skip.detach())

    def local_loss(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """This block's own loss; its gradient reaches only this block's parameters."""
        return self.loss_fn(scores, y)
