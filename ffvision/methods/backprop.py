"""Backprop baseline: the same network as a single block trained end to end.

The whole feature stack (the same convs, pooling, dropout and RMS normalisation as the FF
methods) is one LocalBlock whose readout is a linear classifier on the pooled last layer, so
backprop runs through exactly the machinery (trainer, checkpoints, metrics) the FF methods use.

Two memory-saving variants are what a memory-bound user of backprop would run instead of a
local method, so comparisons include them (`memory_saving`):
  checkpoint  activation checkpointing per layer (torch.utils.checkpoint): only each layer's
              input is kept; the backward pass recomputes the layer.
  accumulate  the batch in micro-batches (four, or --micro-batches), gradients accumulated, one
              optimizer step (LocalMethod.train_step): the same update (up to dropout draws) with a
              quarter of the activations. `--micro-batches K` does the same for every method.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.checkpoint
from torch import nn

from ffvision.core import LinearReadout, LocalBlock
from ffvision.core.losses import smoothed_cross_entropy
from ffvision.errors import ConfigError
from ffvision.methods.base import LocalMethod, build_model
from ffvision.methods.options import METHODS
from ffvision.methods.registry import register_method
from ffvision.models.registry import sized_by_classes
from ffvision.models.tv import TV_ARCHS

MICRO_BATCHES = 4


class FeatureStack(nn.Module):
    """Adapter: a model's `forward_features` as a module's forward (per-layer checkpointing optional)."""

    def __init__(self, net: nn.Module, checkpoint: bool = False) -> None:
        super().__init__()
        self.net = net
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's feature map."""
        if not (self.checkpoint and torch.is_grad_enabled()):
            return self.net.forward_features(x)
        x = self.net.stem(x)
        for layer in self.net.layers:  # keep only each layer's input; recompute the layer in backward
            x = torch.utils.checkpoint.checkpoint(_layer_and_transition, layer, x, use_reentrant=False)
        return x


def _layer_and_transition(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """One layer and its transition (pool, dropout, RMS norm)."""
    return layer.post(layer(x))


@register_method
class Backprop(LocalMethod):
    """End-to-end backprop: one block that is the whole network."""

    spec = METHODS["bp"]

    def __init__(self, *, num_classes: int, in_channels: int = 3, image_size: int = 32, seed: int = 0,
                 **options: Any) -> None:
        """Options: BackpropOptions (methods/options.py); None keeps a default."""
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size, seed=seed)
        o = self.options_of(options)
        is_tv = o.model in TV_ARCHS
        by_classes = is_tv or sized_by_classes(o.model)
        net = build_model(o.model, in_channels=in_channels, num_classes=num_classes if by_classes else 0,
                          width_mult=o.width_mult, dropout=o.dropout, image_size=image_size, filters=o.filters)
        if o.memory_saving == "checkpoint" and not hasattr(net, "layers"):
            raise ConfigError("per-layer checkpointing needs a layered model (vgg8, ffcnn3, mlp, ...), "
                              f"not {o.model!r}")
        self.lr, self.weight_decay, self.memory_saving = o.lr, o.weight_decay, o.memory_saving
        if o.memory_saving == "accumulate":
            self.micro_batches = MICRO_BATCHES  # unless the run gives --micro-batches
        # measured on the VGG stacks only (bf16 + channels_last ~1.9x float32 on a Zen 5 CPU, quick-protocol
        # accuracy 79.91 vs 79.85%); other models keep float32 on the CPU
        self.cpu_bf16 = self.cpu_channels_last = o.model.startswith("vgg")
        # tiny images (8 and 14 px, 2,000 of them) upscaled to 32 px rather than VGG8's 16 validated 1.4-1.6
        # points better over 3 seeds at 24 epochs, level at today's 100 (docs/results.md, "Tiny images")
        self.tiny_image_size = 32 if o.model.startswith("vgg") else None
        if o.init_weights:
            if not hasattr(net, "load_torchvision_weights"):
                raise ConfigError(f"init_weights needs a torchvision model, not {o.model!r}")
            net.load_torchvision_weights(o.init_weights)
        if hasattr(net, "classifier"):  # torchvision's own head: pooled features -> fc / classifier MLP
            readout = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), net.classifier())
        else:
            readout = LinearReadout(net.num_features, num_classes)
        self.blocks.append(LocalBlock(FeatureStack(net, checkpoint=o.memory_saving == "checkpoint"), readout,
                                      loss=smoothed_cross_entropy(o.label_smoothing)))
        self.build_optimizers()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """A single optimizer over the whole network."""
        return {"block1": (list(self.blocks[0].parameters()), self.lr, self.weight_decay)}
