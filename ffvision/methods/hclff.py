"""HCL-FF (Yao et al., CVPR 2026): DeeperForward with hierarchical and contrastive local learning.

Built on DeeperForward (methods/deeperforward.py), two changes to every layer's own loss:

* coarse to fine: a class hierarchy (levels of class groups, coarse to fine; `--hierarchy`) assigns each
  layer a level, shallow layers coarse, deep layers the classes themselves (`--level-schedule`). A layer's
  cross-entropy is over its level's groups: a group's score is the mean of its classes' scores, the label
  its class's group;
* contrastive: a projection head per layer (linear without bias, BatchNorm, L2 normalisation) on the pooled
  GroupNorm-ed features, and a supervised contrastive loss over the batch (same class: positive), whose
  temperature falls from 0.8 to 0.2 over the first `--supcon-warmup` of the epochs, then to 0.1 on a cosine.
  The head trains with the layer at twice its learning rate.

The linear head on the last features and the three strategies are DeeperForward's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ffvision.core import BlockOutput
from ffvision.kernels.reductions import grid_mean
from ffvision.methods.deeperforward import DeeperForward
from ffvision.methods.hierarchy import load_hierarchy
from ffvision.methods.options import METHODS
from ffvision.methods.registry import register_method

TAU_HIGH, TAU_MID, TAU_LOW = 0.8, 0.2, 0.1  # the contrastive temperature's schedule


def level_of_layers(layers: int, levels: int, schedule: str) -> list[int]:
    """The level (0-based, coarse first) each layer learns: spread linearly over the depth, or one per layer."""
    if schedule == "increasing":
        return [min(i, levels - 1) for i in range(layers)]
    return [min(i * levels // layers, levels - 1) for i in range(layers)]


def supcon_temperature(epoch: int, epochs: int, warmup: float) -> float:
    """The contrastive temperature at an epoch (0-based): 0.8 -> 0.2 linearly over the warm-up, then a cosine
    to 0.1 over the rest."""
    warm = max(1, round(warmup * epochs))
    if epoch < warm:
        return TAU_HIGH - (TAU_HIGH - TAU_MID) * epoch / warm
    t = (epoch - warm) / max(1, epochs - warm)
    return TAU_LOW + 0.5 * (TAU_MID - TAU_LOW) * (1 + math.cos(math.pi * t))


def supcon_loss(z: torch.Tensor, y: torch.Tensor, temperature: float) -> torch.Tensor:
    """Supervised contrastive loss of L2-normalised embeddings z (B, D): for each anchor, the mean log-probability
    of its positives (same label, not itself) under a softmax over all others at `temperature`."""
    n = z.shape[0]
    logits = (z @ z.T) / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - logits.logsumexp(1, keepdim=True)
    positive = (y[:, None] == y[None, :]) & ~self_mask
    counts = positive.sum(1).clamp_min(1)
    return -(log_prob.masked_fill(~positive, 0).sum(1) / counts).mean()


class Projection(nn.Module):
    """A layer's contrastive head: pooled features -> linear (no bias) -> BatchNorm -> L2 normalisation."""

    def __init__(self, channels: int, pool: int, dim: int) -> None:
        super().__init__()
        self.pool = pool
        self.fc = nn.Linear(channels * pool * pool, dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, dim) of hand-off features (B, C, H, W)."""
        pooled = grid_mean(y, self.pool).flatten(1)
        return F.normalize(self.bn(self.fc(pooled)).float(), dim=1)


def projection_pool(channels: int) -> int:
    """The pooled grid a layer's projection reads: 4 x 4 up to 100 channels, 2 x 2 up to 400, else 1 x 1."""
    return 4 if channels <= 100 else 2 if channels <= 400 else 1


@register_method
class HCLFF(DeeperForward):
    """DeeperForward's network and strategies; each layer learns its hierarchy level and a contrastive term."""

    spec = METHODS["hclff"]

    def __init__(self, *, num_classes: int, in_channels: int = 3, image_size: int = 32, seed: int = 0,
                 **options: Any) -> None:
        """Options: HCLFFOptions (methods/options.py); None keeps a default."""
        o = self.options_of(options)
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size, seed=seed,
                         **options)
        levels = load_hierarchy(o.hierarchy, num_classes) if o.hierarchy else [[[c] for c in range(num_classes)]]
        plan = level_of_layers(len(self.blocks), len(levels), o.level_schedule)
        self.level_of = plan
        for i, block in enumerate(self.blocks):
            groups = torch.zeros(num_classes, dtype=torch.long)
            for g, members in enumerate(levels[plan[i]]):
                groups[members] = g
            block.register_buffer("class_group", groups)
            block.loss_fn = GroupedCrossEntropy(block, len(levels[plan[i]]))
        self.supcon_weight, self.supcon_warmup = o.supcon_weight, o.supcon_warmup
        self.temperature = TAU_HIGH
        widths = [b.body.conv.out_channels for b in self.blocks]
        self.projections = nn.ModuleList(Projection(c, projection_pool(c), o.proj_dim) for c in widths)
        self.build_optimizers()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """DeeperForward's, and one per projection head at twice the learning rate."""
        groups = super().optimizer_groups()
        if hasattr(self, "projections") and self.supcon_weight > 0:
            groups.update({f"proj{i + 1}": (list(p.parameters()), 2 * self.lr, self.weight_decay)
                           for i, p in enumerate(self.projections)})
        return groups

    def trainable_units(self) -> dict[str, nn.Module]:
        """Every layer, its projection head, and the linear head."""
        units = super().trainable_units()
        if self.supcon_weight > 0:
            units.update({f"proj{i + 1}": p for i, p in enumerate(self.projections)})
        return units

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """The contrastive temperature of this epoch."""
        self.temperature = supcon_temperature(epoch, epochs, self.supcon_warmup)

    def block_regulariser(self, i: int, x: torch.Tensor | tuple, o: BlockOutput, y: torch.Tensor
                          ) -> torch.Tensor | None:
        """The layer's supervised contrastive loss on its projected, GroupNorm-ed features."""
        if self.supcon_weight <= 0 or not self.training:
            return None
        z = self.unit(f"proj{i + 1}", self.projections[i])(self.blocks[i].post(o.h))
        return self.supcon_weight * supcon_loss(z, y, self.temperature)

    def _update(self, name: str, loss: torch.Tensor) -> None:
        """A layer's update also steps its projection head (the contrastive term reaches both)."""
        super()._update(name, loss)
        partner = f"proj{name.removeprefix('block')}" if name.startswith("block") else None
        if partner not in self.optimizers:
            return
        if self._accumulating is not None:
            self._accumulating[partner] = 1.0
        else:
            self._step(partner)


class GroupedCrossEntropy:
    """A layer's cross-entropy over its level's class groups: a group's score is the mean of its classes'."""

    def __init__(self, block: nn.Module, groups: int) -> None:
        self.block, self.groups = block, groups

    def __call__(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean loss over the batch."""
        lut = self.block.class_group
        if self.groups == scores.shape[1]:  # the finest level: the classes themselves
            return F.cross_entropy(scores.float(), y)
        sums = scores.float().new_zeros(scores.shape[0], self.groups).index_add_(1, lut, scores.float())
        sizes = torch.bincount(lut, minlength=self.groups).to(sums.dtype)
        return F.cross_entropy(sums / sizes, lut[y])
