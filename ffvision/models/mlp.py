"""Fully connected stack for Hinton's original Forward-Forward (784-2000-2000-2000-2000 on MNIST).

Each layer is Linear -> ReLU; the transition to the next layer is per-sample RMS ("length")
normalisation, so a layer cannot pass on its goodness, only the direction of its activity.
The input is flattened; the method decides whether to normalise it (Hinton's FF does, so
the image's brightness cannot decide the first layer's goodness).
"""

from __future__ import annotations

from torch import Tensor, nn

from ffvision.core import FastDropout, LinearReadout, RMSNorm
from ffvision.errors import ConfigError
from ffvision.models.registry import register_model


class DenseLayer(nn.Module):
    """Linear -> ReLU on the flattened input; `post` is the RMS normalisation after it."""

    def __init__(self, in_features: int, out_features: int, dropout: float) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)
        self.act = nn.ReLU(inplace=True)
        self.post = nn.Sequential(FastDropout(dropout), RMSNorm())

    @property
    def linear(self) -> nn.Linear:
        """The layer's linear map (FF's goodness inference exploits its linearity in the label)."""
        return self.fc

    def forward(self, x: Tensor) -> Tensor:
        """(B, out_features) activities."""
        return self.act(self.fc(x.flatten(1)))


class MLP(nn.Module):
    """Stack of DenseLayers with `layers` and `feature_info` like the conv stacks."""

    def __init__(self, hidden: tuple[int, ...] = (2000, 2000, 2000, 2000), *, in_channels: int = 1,
                 image_size: int = 28, num_classes: int = 0, width_mult: float = 1.0, dropout: float = 0.0) -> None:
        super().__init__()
        if width_mult <= 0 or not hidden:
            raise ConfigError("mlp needs at least one hidden layer and a positive width_mult")
        self.stem = nn.Identity()
        self.layers = nn.ModuleList()
        self.feature_info: list[dict[str, int | str | bool]] = []
        d_in = in_channels * image_size * image_size
        for i, h in enumerate(hidden):
            d_out = max(1, round(h * width_mult))
            self.layers.append(DenseLayer(d_in, d_out, dropout))
            self.feature_info.append({"num_chs": d_out, "reduction": 1, "size": 1, "pool": False,
                                      "module": f"layers.{i}"})
            d_in = d_out
        self.num_features = d_in
        self.head = LinearReadout(d_in, num_classes) if num_classes > 0 else None

    def forward_features(self, x: Tensor) -> Tensor:
        """Activities of the last layer after its normalisation, (B, hidden[-1])."""
        for layer in self.layers:
            x = layer.post(layer(x))
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Class scores (needs num_classes > 0)."""
        if self.head is None:
            raise RuntimeError("this MLP was built with num_classes=0 (features only)")
        return self.head(self.forward_features(x))


@register_model
def mlp(*, depth: int = 4, hidden_size: int = 2000, **kwargs: object) -> MLP:
    """Hinton's FF network: `depth` fully connected layers of `hidden_size` units."""
    return MLP(tuple([hidden_size] * depth), **kwargs)
