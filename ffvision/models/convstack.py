"""Plain conv stacks: ASGE's VGGs and the FF-CNN of Scodellaro et al., from one class.

`ConvStack` layers are conv(k x k, same padding) -> ReLU (what a local readout sees), then a
parameter-free transition: optional AvgPool2d(2), Dropout, per-sample RMS normalisation.
`vgg8`, `vgg11`, `vgg11a` (3x3, dropout 0.1, RMS-normalised input) and `ffcnn3`, `ffcnn4`,
`ffcnn6` (7x7, no pooling in ffcnn3, input left as is so a label pattern mixed into it
keeps its contrast) are short entrypoints. Backprop trains exactly this function end to
end; FF methods train each layer locally.
"""

from __future__ import annotations

from torch import Tensor, nn

from ffvision.core import FastDropout, LinearReadout, RMSNorm
from ffvision.errors import ConfigError, ImageTooSmall
from ffvision.kernels.spectral import CONV_IMPLS, SpectrumCache, prefer_spectral, spectral_conv2d
from ffvision.models.registry import register_model

# (channels, pool after the layer). From the ASGE paper (docs/methods.md).
VGG8 = [(128, False), (256, True), (256, False), (512, True), (512, True), (512, True), (512, False)]
VGG11 = [(128, False), (256, True), (256, False), (512, True), (512, False), (512, True),
         (512, False), (512, True), (512, False), (512, False)]
# VGG configuration "A" (Simonyan & Zisserman), 64 -> 512 channels: the ImageNet default,
# since ASGE's ImageNet network is not published (its unused C=64 grid entry suggests it).
VGG11A = [(64, True), (128, True), (256, False), (256, True), (512, False), (512, True),
          (512, False), (512, True)]


class ConvLayer(nn.Module):
    """conv k x k -> ReLU; `post` is the transition to the next layer (pool, dropout, RMS norm)."""

    def __init__(self, in_channels: int, out_channels: int, *, pool: bool, dropout: float,
                 kernel_size: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, stride=1,
                              padding=kernel_size // 2)
        self.act = nn.ReLU(inplace=True)  # safe: conv's backward needs its input, not its output
        self.pool = pool
        # after a pool, dropout and (without autograd) the RMS norm work in place on the pooled map:
        # nothing else holds it (the pool's backward needs no output), so a hand-off keeps two
        # buffers fewer at its peak (ASGE's peak memory, measured)
        self.post = nn.Sequential(nn.AvgPool2d(2) if pool else nn.Identity(), FastDropout(dropout, inplace=pool),
                                  RMSNorm(inplace=pool))
        self.conv_impl = "auto"  # auto | direct | spectral: see kernels/spectral.py (`set_conv_impl`)
        self._spectrum = SpectrumCache()  # the kernel's spectrum between weight updates (evaluation)

    @property
    def linear(self) -> nn.Conv2d:
        """The layer's linear map (FF's goodness inference exploits its linearity in the label)."""
        return self.conv

    def forward(self, x: Tensor) -> Tensor:
        """Post-ReLU feature map, before pooling (where ASGE takes its goodness)."""
        if prefer_spectral(self.conv, x, self.conv_impl):  # wide 5x5+ kernels on a CPU: same values, faster
            conv = self.conv
            return self.act(spectral_conv2d(x, conv.weight, conv.bias, self._spectrum.get(conv.weight, *x.shape[-2:])))
        return self.act(self.conv(x))  # (B, C_out, H, W)


class ConvStack(nn.Module):
    """A plain stack of ConvLayers; exposes `layers` and `feature_info` for local readouts."""

    def __init__(
        self,
        cfg: list[tuple[int, bool]],
        *,
        in_channels: int = 3,
        num_classes: int = 0,
        width_mult: float = 1.0,
        dropout: float = 0.1,
        image_size: int = 32,
        kernel_size: int = 3,
        input_norm: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ConfigError(f"kernel_size must be odd and positive, got {kernel_size}")
        if width_mult <= 0:
            raise ConfigError(f"width_mult must be positive, got {width_mult}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        if in_channels <= 0:
            raise ConfigError(f"in_channels must be positive, got {in_channels}")
        npool = sum(p for _, p in cfg)
        if image_size < 2**npool:
            raise ImageTooSmall(f"image_size {image_size} is too small: this model pools {npool} times "
                                f"and needs at least {2**npool} px", 2**npool)
        # ASGE RMS-normalises the raw image like every hand-off; FF-CNN feeds it as is.
        self.stem = RMSNorm() if input_norm else nn.Identity()
        self.layers = nn.ModuleList()
        self.feature_info: list[dict[str, int | str | bool]] = []
        c_in, size, reduction = in_channels, image_size, 1
        for i, (c, pool) in enumerate(cfg):
            c_out = max(1, round(c * width_mult))
            self.layers.append(ConvLayer(c_in, c_out, pool=pool, dropout=dropout, kernel_size=kernel_size))
            # size: the spatial size of this layer's output before its pool (its goodness map).
            self.feature_info.append({"num_chs": c_out, "reduction": reduction, "size": size,
                                      "pool": pool, "module": f"layers.{i}"})
            if pool:
                size, reduction = size // 2, reduction * 2
            c_in = c_out
        self.num_features = c_in
        self.num_classes = num_classes
        self.head = LinearReadout(c_in, num_classes) if num_classes > 0 else None
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """The whole feature stack: stem norm, then every layer and its transition."""
        x = self.stem(x)
        for layer in self.layers:
            x = layer.post(layer(x))
        return x  # (B, C_L, H_L, W_L)

    def forward(self, x: Tensor) -> Tensor:
        """Class scores from the pooled last layer (needs num_classes > 0)."""
        if self.head is None:
            raise RuntimeError("this network was built with num_classes=0 (features only)")
        return self.head(self.forward_features(x))


def set_conv_impl(model: nn.Module, impl: str) -> None:
    """Set how every ConvLayer of `model` convolves: auto (see `prefer_spectral`), direct or spectral."""
    if impl not in CONV_IMPLS:
        raise ConfigError(f"conv must be one of {', '.join(CONV_IMPLS)}, got {impl!r}")
    for m in model.modules():
        if isinstance(m, ConvLayer):
            m.conv_impl = impl


def _init_weights(m: nn.Module) -> None:
    """Kaiming-normal weights and zero biases, as in the official ASGE code."""
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)


@register_model
def vgg8(**kwargs: object) -> ConvStack:
    """ASGE's VGG8: 128, 256p, 256, 512p, 512p, 512p, 512 (p = AvgPool after the goodness)."""
    return ConvStack(VGG8, **kwargs)


@register_model
def vgg11(**kwargs: object) -> ConvStack:
    """ASGE's VGG11: 128, 256p, 256, 512p, 512, 512p, 512, 512p, 512, 512."""
    return ConvStack(VGG11, **kwargs)


@register_model
def vgg11a(**kwargs: object) -> ConvStack:
    """VGG configuration A (64p, 128p, 256, 256p, 512, 512p, 512, 512p): the ImageNet default."""
    return ConvStack(VGG11A, **kwargs)


def _ffcnn(depth: int, pools: tuple[int, ...], filters: int, kwargs: dict) -> ConvStack:
    """FF-CNN stack: `depth` 7x7 layers of `filters`, AvgPool after the layers in `pools`."""
    kwargs.setdefault("dropout", 0.0)
    kwargs.setdefault("kernel_size", 7)
    kwargs.setdefault("input_norm", False)
    return ConvStack([(filters, i in pools) for i in range(depth)], **kwargs)


@register_model
def ffcnn3(*, filters: int = 128, **kwargs: object) -> ConvStack:
    """Scodellaro et al.'s FF-CNN: 3 conv 7x7 layers of 128 filters, same padding, no pooling."""
    return _ffcnn(3, (), filters, kwargs)


@register_model
def ffcnn4(*, filters: int = 128, **kwargs: object) -> ConvStack:
    """Deeper FF-CNN for CIFAR: 4 layers of 7x7, AvgPool after layers 2 and 3."""
    return _ffcnn(4, (1, 2), filters, kwargs)


@register_model
def ffcnn6(*, filters: int = 128, **kwargs: object) -> ConvStack:
    """Deeper FF-CNN for CIFAR: 6 layers of 7x7, AvgPool after layers 2 and 4."""
    return _ffcnn(6, (1, 3), filters, kwargs)
