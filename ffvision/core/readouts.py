"""Readouts: turn a block's feature map into one score per class.

* `SpatialGoodnessReadout` - ASGE (Gong et al. 2025, arXiv 2509.12394): the mean squared
  activation of every channel over a P x P grid of patches, projected to N class scores by a
  fixed random matrix that is never trained.
* `LinearReadout` - global average pooling then a trained linear layer (backprop's classifier,
  ASGE's linear heads).
* `ClassChannelGoodness` (Scalable FF), `ClassGroupMean` (DeeperForward), `GoodnessReadout` (FF).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ffvision.kernels.reductions import patch_goodness, sum_of_squares


def adaptive_grid(channels: int, widest: int, height: int, alpha: float = 1.0) -> int:
    """ASGE's grid size P = alpha * C_L / C_l, rounded half up and clamped to [1, height].

    The published table (64->8, 128->4, 256->2, 512->1 for C_L = 512) is this rule with
    alpha = 1. For other alphas or widths that are not powers of two the paper gives no rule;
    ffvision rounds to the nearest integer and clamps to the feature map's height so that no
    patch is empty.
    """
    if channels <= 0 or widest <= 0 or height <= 0 or alpha <= 0:
        raise ValueError("channels, widest, height and alpha must be positive")
    p = math.floor(alpha * widest / channels + 0.5)
    return max(1, min(p, height))


class SpatialGoodnessReadout(nn.Module):
    """a = g R + b with g = adaptive_avg_pool2d(h^2, P) flattened; R and b fixed buffers."""

    def __init__(self, channels: int, grid: int, num_classes: int, *, seed: int = 0) -> None:
        super().__init__()
        self.channels, self.grid, self.num_classes = channels, grid, num_classes
        gen = torch.Generator().manual_seed(seed)
        dim = channels * grid * grid
        # N(0, 1/N) as in the official code (randn / sqrt(N)); buffers: saved, never trained.
        self.register_buffer("projection", torch.randn(dim, num_classes, generator=gen) / math.sqrt(num_classes))
        self.register_buffer("bias", torch.randn(num_classes, generator=gen) / math.sqrt(num_classes))

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        """Spatial goodness: mean of h^2 over each of the P x P patches, flattened (B, C*P*P), float32."""
        b, c, height, width = h.shape
        p = self.grid
        if height % p == 0 and width % p == 0 and not torch.compiler.is_compiling():
            # (under torch.compile the plain form below: inductor fuses it, and its backward of the
            # strided norm view failed with a stride assertion)
            return patch_goodness(h, p).flatten(1)
        # float32: squares of bf16 activations lose too much precision.
        return F.adaptive_avg_pool2d(h.float().square(), p).flatten(1)  # (B, C*P*P)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Class scores (B, num_classes) of the feature map h (B, C, H, W)."""
        # Kept in float32 under autocast: the projection sums thousands of goodness values.
        with torch.autocast(device_type=h.device.type, enabled=False):
            return torch.addmm(self.bias, self.goodness(h), self.projection)  # (B, N)

    def extra_repr(self) -> str:
        """Show the grid and projection size in print(model)."""
        return f"channels={self.channels}, grid={self.grid}, num_classes={self.num_classes}"


class LinearReadout(nn.Module):
    """Global average pooling followed by a trained linear classifier."""

    def __init__(self, channels: int, num_classes: int, *, init: str = "kaiming") -> None:
        super().__init__()
        self.fc = nn.Linear(channels, num_classes)
        init_linear(self.fc, init)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Class scores (B, num_classes) of a feature map (B, C, H, W) or vector (B, C)."""
        if h.ndim == 4:
            h = h.mean(dim=(2, 3))  # (B, C)
        return self.fc(h)


class ClassChannelGoodness(nn.Module):
    """Scalable FF readout: a k x k conv to one channel per class, g_k = mean_HW (z_k)^2."""

    def __init__(self, channels: int, num_classes: int, kernel_size: int = 1) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"aux kernel size must be odd and positive, got {kernel_size}")
        self.conv = nn.Conv2d(channels, num_classes, kernel_size, padding=kernel_size // 2)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Class goodness vector (B, num_classes)."""
        z = self.conv(h)  # (B, N, H, W)
        return z.float().square().mean(dim=(2, 3))


class ClassGroupMean(nn.Module):
    """DeeperForward's readout: channels come in one contiguous group per class; a class's score is the mean
    activation of its group over its channels and the map (no parameters)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Class scores (B, num_classes)."""
        return h.reshape(h.shape[0], self.num_classes, -1).float().mean(2)

    def extra_repr(self) -> str:
        """Shown in the module's repr."""
        return f"num_classes={self.num_classes}"


class GoodnessReadout(nn.Module):
    """FF goodness logit: G - threshold, G = sum (or mean) of squared activities per sample."""

    def __init__(self, threshold: float, reduction: str = "sum") -> None:
        super().__init__()
        if reduction not in ("sum", "mean"):
            raise ValueError(f"goodness reduction must be sum or mean, got {reduction!r}")
        self.threshold, self.reduction = float(threshold), reduction

    def goodness(self, h: torch.Tensor) -> torch.Tensor:
        """G per sample, (B,), accumulated in float32."""
        # over the sample's dims, not a flattened copy: h may be a spatial-major view (a spectral conv's output)
        g = sum_of_squares(h, tuple(range(1, h.ndim)))  # float32 accumulation, no float32 copy of h
        return g if self.reduction == "sum" else g / h[0].numel()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Logit of "this input is positive", (B,)."""
        return self.goodness(h) - self.threshold

    def extra_repr(self) -> str:
        """Show the threshold and reduction in print(model)."""
        return f"threshold={self.threshold:g}, reduction={self.reduction}"


def init_linear(layer: nn.Linear | nn.Conv2d, init: str) -> None:
    """Initialise weights as 'kaiming' (normal, ReLU gain), 'zeros' or 'default' (PyTorch's)."""
    if init == "kaiming":
        nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    elif init == "zeros":
        nn.init.zeros_(layer.weight)
    elif init != "default":
        raise ValueError(f"unknown init {init!r}; choose kaiming, zeros or default")
    if layer.bias is not None and init != "default":
        nn.init.zeros_(layer.bias)
