"""Hybrid blocks: consecutive layers of a plain stack grouped into one block, trained end to end inside it.

A layered model (`ConvStack`, `MLP`) exposes `layers` (each with its `post` transition) and `feature_info`.
`group_layers(net, k)` replaces them with groups of k consecutive layers (the last group may be shorter): a
group runs its layers and their transitions with autograd between them and hands on its last layer's output,
so a method that builds one local block per layer trains k layers end to end against the last one's local loss,
never across groups. k = 1 is layer-local learning, k = the number of layers is backprop through the whole
stack under one local readout.
"""

from __future__ import annotations

from torch import Tensor, nn

from ffvision.errors import ConfigError


class LayerGroup(nn.Module):
    """Layers run in turn, each but the last followed by its transition; `post` is the last layer's."""

    def __init__(self, layers: list[nn.Module]) -> None:
        super().__init__()
        self.inner = nn.ModuleList(layers)
        self.post = layers[-1].post

    def forward(self, x: Tensor) -> Tensor:
        """The last layer's output (before its transition), with autograd through the group."""
        for layer in self.inner[:-1]:
            x = layer.post(layer(x))
        return self.inner[-1](x)


def group_layers(net: nn.Module, k: int) -> nn.Module:
    """Group net.layers (and net.feature_info) by k, in place; ConfigError when k exceeds the layers."""
    n = len(net.layers)
    if k < 1 or k > n:
        raise ConfigError(f"layers_per_block must be in 1..{n} (this model has {n} layers), got {k}")
    if k == 1:
        return net
    layers = list(net.layers)
    groups = [layers[i:i + k] for i in range(0, n, k)]
    net.feature_info = [{**net.feature_info[i + len(g) - 1], "layers": len(g)}
                        for i, g in zip(range(0, n, k), groups)]
    net.layers = nn.ModuleList(LayerGroup(g) for g in groups)
    return net
