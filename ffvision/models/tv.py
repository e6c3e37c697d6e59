"""torchvision's own ResNet18 and MobileNetV3 (not re-written), adapted and split into blocks.

`TorchvisionNet` holds the unmodified torchvision module `net` and only replaces what the
data demands:
  * in_channels != 3: the stem convolution is rebuilt with that many input channels;
  * small inputs (stem="auto" and image_size <= 64, or stem="cifar"), as CIFAR ResNets do:
    ResNet18's 7x7/2 stem conv becomes 3x3/1 and its max-pool is removed; MobileNetV3's
    first conv gets stride 1. A 32 px image then reaches the last stage at 4x4 (ResNet18)
    or 2x2 (MobileNetV3) instead of 1x1;
  * num_classes: the last classifier layer (fc / classifier[3]) is resized (backprop only);
  * BatchNorm momentum is 0.1 (PyTorch's default; `bn_momentum`). torchvision's MobileNetV3
    uses 0.01, set for its 600-epoch ImageNet schedule: in runs of a few epochs its running
    statistics still describe the untrained network and eval-mode accuracy stays at chance.

`local_blocks(granularity)` lists the modules an FF method trains as separate blocks:
  stage  ResNet: stem, layer1..layer4. MobileNetV3: stem, then runs of `features` at one
         resolution (a new stage starts where the resolution drops).
  block  ResNet: stem and every BasicBlock. MobileNetV3: every element of `features`
         (stem, each inverted-residual block, the last 1x1 conv).
  layer  pure FF: every convolution (with its BN and activation) is its own block. A
         residual block becomes 2 (ResNet) or 2-3 (MobileNetV3) parts that pass (y, skip)
         tuples: the first part keeps the block input as `skip`; the last part adds
         shortcut(skip) - ResNet's downsample conv included - and applies the activation
         that follows the addition. skip is detached like everything crossing a boundary,
         so each part still learns only from its own loss.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from ffvision.errors import CheckpointError, ConfigError, ImageTooSmall
from ffvision.io import read_torch_file
from ffvision.models.registry import register_model

GRANULARITIES = ("layer", "block", "stage")
TV_ARCHS = ("resnet18", "mobilenet_v3_small", "mobilenet_v3_large")


class ResidualPart(nn.Module):
    """One part of a residual block split for layer-wise training; passes (y, skip) tuples."""

    def __init__(self, body: nn.Module, *, first: bool, last: bool, shortcut: nn.Module | None = None,
                 act: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.first, self.last = body, first, last
        self.shortcut = shortcut if shortcut is not None else nn.Identity()
        self.act = act if act is not None else nn.Identity()

    def forward(self, inp: Tensor | tuple[Tensor, Tensor]) -> Tensor | tuple[Tensor, Tensor]:
        """first: x -> (body(x), x); middle: (y, s) -> (body(y), s); last: act(body(y) + shortcut(s))."""
        y, skip = (inp, inp) if self.first else inp
        y = self.body(y)
        if not self.last:
            return y, skip
        return self.act(y + self.shortcut(skip))


class TorchvisionNet(nn.Module):
    """A torchvision classifier adapted to the data, with `local_blocks(granularity)`."""

    def __init__(self, arch: str, *, in_channels: int = 3, num_classes: int = 0, image_size: int = 224,
                 stem: str = "auto", width_mult: float = 1.0, dropout: float | None = None,
                 bn_momentum: float | None = 0.1) -> None:
        super().__init__()
        if stem not in ("auto", "imagenet", "cifar"):
            raise ConfigError(f"stem must be auto, imagenet or cifar, got {stem!r}")
        if image_size < 16:
            raise ImageTooSmall(f"image_size must be at least 16 for {arch}, got {image_size}", 16)
        small = stem == "cifar" or (stem == "auto" and image_size <= 64)
        self.arch, self.num_classes, self.small_input = arch, num_classes, small
        if arch == "resnet18":
            if width_mult != 1.0:
                raise ConfigError("resnet18 has fixed widths in torchvision; width_mult must be 1")
            net = torchvision.models.resnet18()
            if small or in_channels != 3:
                k, s = (3, 1) if small else (7, 2)
                net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=k, stride=s, padding=k // 2, bias=False)
            if small:
                net.maxpool = nn.Identity()
            net.fc = nn.Linear(512, max(num_classes, 1))
        elif arch.startswith("mobilenet_v3_"):
            kwargs = {} if dropout is None else {"dropout": dropout}
            net = getattr(torchvision.models, arch)(width_mult=width_mult, **kwargs)
            conv = net.features[0][0]
            if small or in_channels != 3:
                net.features[0][0] = nn.Conv2d(in_channels, conv.out_channels, kernel_size=3,
                                               stride=1 if small else 2, padding=1, bias=False)
            head = net.classifier[3]
            net.classifier[3] = nn.Linear(head.in_features, max(num_classes, 1))
        else:
            raise ConfigError(f"unknown torchvision architecture {arch!r}")
        if bn_momentum is not None:
            if not 0.0 < bn_momentum <= 1.0:
                raise ConfigError(f"bn_momentum must be in (0, 1], got {bn_momentum}")
            for m in net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.momentum = bn_momentum
        self.net = net
        self.stem = nn.Identity()
        self.num_features = 512 if arch == "resnet18" else net.classifier[0].in_features

    # ------------------------------------------------------------------ whole network (backprop)
    def forward_features(self, x: Tensor) -> Tensor:
        """Feature map before global pooling (B, C, H, W)."""
        if self.arch == "resnet18":
            n = self.net
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            return n.layer4(n.layer3(n.layer2(n.layer1(x))))
        return self.net.features(x)

    def classifier(self) -> nn.Module:
        """torchvision's own head after global pooling (fc, or MobileNetV3's classifier MLP)."""
        return self.net.fc if self.arch == "resnet18" else self.net.classifier

    def forward(self, x: Tensor) -> Tensor:
        """Class scores, exactly torchvision's forward."""
        return self.net(x)

    # ------------------------------------------------------------------ local blocks
    def local_blocks(self, granularity: str) -> list[nn.Module]:
        """Modules trained as separate FF blocks, in order (see the module docstring)."""
        if granularity not in GRANULARITIES:
            raise ConfigError(f"unknown granularity {granularity!r}; choose one of: {', '.join(GRANULARITIES)}")
        return self._resnet_blocks(granularity) if self.arch == "resnet18" else self._mobilenet_blocks(granularity)

    def _resnet_blocks(self, granularity: str) -> list[nn.Module]:
        n = self.net
        stem = nn.Sequential(n.conv1, n.bn1, n.relu, n.maxpool)
        stages = [n.layer1, n.layer2, n.layer3, n.layer4]
        if granularity == "stage":
            return [stem, *stages]
        basic = [b for stage in stages for b in stage]
        if granularity == "block":
            return [stem, *basic]
        parts: list[nn.Module] = [stem]
        for b in basic:
            parts.append(ResidualPart(nn.Sequential(b.conv1, b.bn1, b.relu), first=True, last=False))
            parts.append(ResidualPart(nn.Sequential(b.conv2, b.bn2), first=False, last=True,
                                      shortcut=b.downsample, act=nn.ReLU(inplace=False)))
        return parts

    def _mobilenet_blocks(self, granularity: str) -> list[nn.Module]:
        feats = list(self.net.features)
        if granularity == "block":
            return feats
        if granularity == "stage":
            sizes, x = [], torch.zeros(1, self.net.features[0][0].in_channels, 64, 64)
            with torch.no_grad():
                was = self.training
                self.eval()
                for f in feats:
                    x = f(x)
                    sizes.append(x.shape[-1])
                self.train(was)
            stages: list[list[nn.Module]] = []
            for i, f in enumerate(feats):
                if i == 0 or sizes[i] < sizes[i - 1]:
                    stages.append([])
                stages[-1].append(f)
            return [nn.Sequential(*s) for s in stages]
        parts: list[nn.Module] = []
        for f in feats:
            if not isinstance(f, torchvision.models.mobilenetv3.InvertedResidual):
                parts.append(f)
                continue
            convs: list[list[nn.Module]] = []
            for m in f.block:  # squeeze-excitation joins the depthwise conv before it
                if isinstance(m, torchvision.ops.SqueezeExcitation):
                    convs[-1].append(m)
                else:
                    convs.append([m])
            groups = [nn.Sequential(*g) for g in convs]
            if not f.use_res_connect:
                parts += groups
                continue
            for j, g in enumerate(groups):
                parts.append(ResidualPart(g, first=j == 0, last=j == len(groups) - 1))
        return parts

    # ------------------------------------------------------------------ transfer learning
    def load_torchvision_weights(self, path: str | Path) -> list[str]:
        """Load a torchvision state_dict file; returns keys skipped because the stem/head was adapted."""
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"weights file {p} not found")
        state = read_torch_file(p, "weights file")
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError(f"weights file {p} does not hold a state_dict")
        own = self.net.state_dict()
        adapted = ("conv1.", "fc.") if self.arch == "resnet18" else ("features.0.0.", "classifier.3.")
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        bad = [k for k in missing + unexpected + wrong if not k.startswith(adapted)]
        if bad:
            raise CheckpointError(f"weights file {p} does not fit {self.arch} (another architecture?): "
                                  f"{len(bad)} mismatched keys, e.g. {bad[0]}")
        skipped = sorted(set(missing + wrong))
        self.net.load_state_dict({k: v for k, v in state.items() if k in own and k not in skipped}, strict=False)
        return skipped


def _builder(arch: str):  # noqa: ANN202 - returns a registered entrypoint
    def build(**kwargs: object) -> TorchvisionNet:
        return TorchvisionNet(arch, **kwargs)

    build.__name__ = arch
    build.__doc__ = f"torchvision's {arch}, adapted to the input size and channels."
    return build


for _arch in TV_ARCHS:
    register_model(_builder(_arch))
