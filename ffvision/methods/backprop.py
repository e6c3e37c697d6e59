"""Backprop baseline: the same network as a single block trained end to end.

The whole feature stack (the same convs, pooling, dropout and RMS normalisation as the FF
methods) is one LocalBlock whose readout is a linear classifier on the pooled last layer, so
backprop runs through exactly the machinery (trainer, checkpoints, metrics) the FF methods use.
"""

from __future__ import annotations

import torch
from torch import nn

from ffvision.core import LinearReadout, LocalBlock
from ffvision.errors import ConfigError
from ffvision.methods.base import LocalMethod, build_model
from ffvision.methods.registry import register_method
from ffvision.models.tv import TV_ARCHS


class FeatureStack(nn.Module):
    """Adapter: a model's `forward_features` as a module's forward."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's feature map."""
        return self.net.forward_features(x)


@register_method
class Backprop(LocalMethod):
    """End-to-end backprop: one block that is the whole network."""

    name = "bp"
    strategies = ("last",)
    default_strategy = "last"

    def __init__(
        self,
        *,
        model: str = "vgg8",
        num_classes: int,
        in_channels: int = 3,
        image_size: int = 32,
        width_mult: float = 1.0,
        dropout: float | None = None,
        filters: int | None = None,
        init_weights: str | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-3,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
        is_tv = model in TV_ARCHS
        net = build_model(model, in_channels=in_channels, num_classes=num_classes if is_tv else 0,
                          width_mult=width_mult, dropout=dropout, image_size=image_size, filters=filters)
        self.lr, self.weight_decay = lr, weight_decay
        if init_weights:
            if not hasattr(net, "load_torchvision_weights"):
                raise ConfigError(f"init_weights needs a torchvision model, not {model!r}")
            net.load_torchvision_weights(init_weights)
        if hasattr(net, "classifier"):  # torchvision's own head: pooled features -> fc / classifier MLP
            readout = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), net.classifier())
        else:
            readout = LinearReadout(net.num_features, num_classes)
        self.blocks.append(LocalBlock(FeatureStack(net), readout))
        self.build_optimizers()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """A single optimizer over the whole network."""
        return {"block1": (list(self.blocks[0].parameters()), self.lr, self.weight_decay)}
