"""DeeperForward's channel-wise ResNet (Sun et al., ICLR 2025): 17 conv layers whose channels come in one group
per class.

Each layer is conv 3x3 (no bias) -> ReLU (-> dropout): what its class-group readout sees. Its hand-off is
GroupNorm with one group per class (no affine), so the next layer does not inherit this layer's goodness,
then the shortcut: the stages are [layer, layer, +shortcut, layer, concat-shortcut] with the shortcut taken
after layers 1, 3, 5 (1-based, and so on per stage), added, or concatenated per class (which doubles the
channels), and average-pooled where the next stage starts with a stride-2 conv. Widths (k, 2k, 4k, 8k) per
class for k = `class_channels`; 32 px inputs end at 8 x 8.

A layer's body takes the previous hand-off, a tensor or a (features, shortcut) pair, applies the previous
layer's shortcut (add or concat) and takes a new shortcut where one starts, then convolves; it returns
(h, shortcut), which LocalBlock hands on detached. Nothing crosses a layer boundary with a gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ffvision.core import FastDropout
from ffvision.errors import ConfigError, ImageTooSmall
from ffvision.models.registry import register_model

NONE, ADD, CONCAT = "none", "add", "concat"
STAGES = 4


def layer_plan() -> list[tuple[int, int, str, bool, bool]]:
    """Per layer: (stage: its width, stride, the shortcut merged into its output, whether a shortcut starts after
    it, whether that shortcut is pooled for the next stage's stride-2 conv)."""
    plan = [(0, 1, NONE, True, False)]  # the entry layer; its output starts the first shortcut
    for stage in range(STAGES):
        last = stage == STAGES - 1
        for j in range(4):
            mode = (NONE, ADD, NONE, ADD if last else CONCAT)[j]
            plan.append((stage, 2 if j == 0 and stage in (1, 2) else 1, mode, j in (1, 3), j == 3 and stage < 2))
    return plan


def merge(y: Tensor, shortcut: Tensor | None, mode: str, groups: int) -> Tensor:
    """A layer's hand-off with its shortcut: added, or concatenated per class group (channels double)."""
    if mode == ADD:
        return y + shortcut
    if mode == CONCAT:
        b, _, h, w = y.shape
        return torch.cat([y.view(b, groups, -1, h, w), shortcut.view(b, groups, -1, h, w)], 2).view(b, -1, h, w)
    return y


class GroupNorm(nn.Module):
    """GroupNorm without affine parameters: one group per class (a layer's hand-off)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, h: Tensor) -> Tensor:
        """h normalised over each group's channels and pixels."""
        return F.group_norm(h, self.groups)


class ChannelwiseLayer(nn.Module):
    """The previous layer's shortcut merged into its hand-off, then conv 3x3 -> ReLU (-> dropout)."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int, dropout: float,
                 previous: tuple[str, bool, bool] | None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        self.act = nn.ReLU()
        self.drop = FastDropout(dropout) if dropout > 0 else nn.Identity()
        self.groups = groups
        self.previous = previous  # (its shortcut mode, whether a shortcut starts after it, pooled)

    def forward(self, inp: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None]:
        """(h, the shortcut carried on): h = dropout(relu(conv(x))) of the merged input x."""
        y, shortcut = inp if isinstance(inp, tuple) else (inp, None)
        if self.previous is not None:
            mode, starts, pooled = self.previous
            y = merge(y, shortcut, mode, self.groups)
            if starts:
                shortcut = F.avg_pool2d(y, 2) if pooled else y
        return self.drop(self.act(self.conv(y))), shortcut


class CWResNet(nn.Module):
    """The 17-layer channel-wise ResNet: `layers` (bodies), `hand_off_norm` (a hand-off's per-class GroupNorm)."""

    def __init__(self, *, in_channels: int = 3, num_classes: int = 10, class_channels: int = 10,
                 width_mult: float = 1.0, dropout: float = 0.0, image_size: int = 32) -> None:
        super().__init__()
        if num_classes < 2:
            raise ConfigError(f"cwresnet17 groups its channels by class: it needs num_classes >= 2, got {num_classes}")
        if width_mult <= 0 or class_channels < 1:
            raise ConfigError("class_channels and width_mult must be positive")
        if image_size < 4:
            raise ImageTooSmall(f"image_size {image_size} is too small: this model halves the size twice and needs "
                                "at least 4 px", 4)
        k = max(1, round(class_channels * width_mult))
        widths = [k * num_classes * 2**s for s in range(STAGES)]
        self.groups, self.widths = num_classes, widths
        self.hand_off_norm = GroupNorm(num_classes)  # every layer's hand-off
        self.layers = nn.ModuleList()
        c_in, prev = in_channels, None
        for stage, stride, mode, starts, pooled in layer_plan():
            c_out = widths[stage]
            if prev is not None and prev[0] == CONCAT:
                c_in *= 2
            self.layers.append(ChannelwiseLayer(c_in, c_out, stride, num_classes, dropout, prev))
            c_in, prev = c_out, (mode, starts, pooled)
        self.last = prev  # the last layer's shortcut, merged into the features a head reads
        self.num_features = c_in * (2 if prev[0] == CONCAT else 1)

    def finish(self, out: Tensor | tuple[Tensor, Tensor]) -> Tensor:
        """The last layer's hand-off with its shortcut merged: the features a head pools."""
        y, shortcut = out if isinstance(out, tuple) else (out, None)
        return merge(y, shortcut, self.last[0], self.groups)

    def forward_features(self, x: Tensor) -> Tensor:
        """The whole stack end to end (backprop trains this): layer norm, every layer, its hand-off."""
        out: Tensor | tuple[Tensor, Tensor] = F.layer_norm(x, x.shape[1:])
        for layer in self.layers:
            h, shortcut = layer(out)
            y = self.hand_off_norm(h)
            out = y if shortcut is None else (y, shortcut)
        return self.finish(out)


@register_model
def cwresnet17(**kwargs: object) -> CWResNet:
    """DeeperForward's channel-wise ResNet: 17 layers, widths (k, 2k, 4k, 8k) x classes, k = class_channels."""
    return CWResNet(**kwargs)


cwresnet17.sized_by_classes = True  # type: ignore[attr-defined]  # its channel groups are the classes
