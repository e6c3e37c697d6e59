"""DeeperForward (Sun et al., "DeeperForward: Enhanced Forward-Forward Training for Deeper and Better
Performance", ICLR 2025).

Every conv layer of the channel-wise ResNet (models/cwresnet.py) is a block. Its channels come in one group
per class; a class's score is the mean activation of its group ("mean goodness"), and the layer's own loss
is the cross-entropy of those scores. The hand-off is GroupNorm with one group per class, so the next layer
starts from features whose class goodness has been normalised away, then the detached shortcut (added, or
concatenated per class). A linear head on the pooled last features trains on detached inputs.

Prediction (`--strategy`, chosen on validation): `goodness`, the scores summed over a contiguous range of
layers that validation chooses; `head`, the linear head; `ensemble`, softmax(goodness) + softmax(head).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ffvision.core import BlockOutput, ClassGroupMean, LinearReadout, LocalBlock
from ffvision.core.losses import goodness_cross_entropy
from ffvision.core.metrics import Scores
from ffvision.errors import ConfigError
from ffvision.methods.base import LocalMethod, build_model
from ffvision.methods.options import METHODS
from ffvision.methods.registry import register_method
from ffvision.methods.voting import RangeVoting


@register_method
class DeeperForward(RangeVoting, LocalMethod):
    """Mean goodness of class channel groups per layer, GroupNorm hand-offs, detached shortcuts, a linear head."""

    spec = METHODS["deeperforward"]
    range_strategy = "goodness"
    # --amp auto: bf16 on a CPU with native bf16 (2 channels per class, batch 128, 28 px, Zen 4, 1 thread: 198 ->
    # 363 img/s; HCL-FF 172 -> 296); accuracy against float32 in docs/results.md ("DeeperForward and HCL-FF").
    cpu_bf16 = True

    def __init__(self, *, num_classes: int, in_channels: int = 3, image_size: int = 32, seed: int = 0,
                 **options: Any) -> None:
        """Options: DeeperForwardOptions (methods/options.py); None keeps a default."""
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size, seed=seed)
        o = self.options_of(options)
        net = build_model(o.model, in_channels=in_channels, num_classes=num_classes, width_mult=o.width_mult,
                          dropout=o.dropout, image_size=image_size)
        if not hasattr(net, "finish") or not hasattr(net, "hand_off_norm"):
            raise ConfigError(f"deeperforward needs a channel-wise network (cwresnet17), not {o.model!r}")
        self.net_finish = net.finish
        self.lr, self.weight_decay = o.lr, o.weight_decay
        self.grad_clip = o.grad_clip or None
        for layer in net.layers:
            self.blocks.append(LocalBlock(layer, ClassGroupMean(num_classes), post=net.hand_off_norm,
                                          loss=goodness_cross_entropy))
        self.head = LinearReadout(net.num_features, num_classes, init="default")
        self.init_range(len(self.blocks))
        self.build_optimizers()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """One AdamW per layer and one for the head."""
        groups = {f"block{i + 1}": (list(b.parameters()), self.lr, self.weight_decay)
                  for i, b in enumerate(self.blocks)}
        return {**groups, "head": (list(self.head.parameters()), self.lr, self.weight_decay)}

    def trainable_units(self) -> dict[str, nn.Module]:
        """Every layer, and the head."""
        return {**super().trainable_units(), "head": self.head}

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Layer norm of each image over its channels and pixels (the official input normalisation)."""
        return F.layer_norm(x, x.shape[1:])

    def head_features(self, out: torch.Tensor | tuple) -> torch.Tensor:
        """The last layer's hand-off with its shortcut, pooled (B, C) in float32: what the head reads."""
        return self.net_finish(out).mean(dim=(2, 3), dtype=torch.float32)

    def keep(self, o: BlockOutput, i: int) -> torch.Tensor | None:
        """The head's features, from the last layer only."""
        return self.head_features(o.out) if i == len(self.blocks) - 1 else None

    def finish_update(self, kept: list[torch.Tensor | None], y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Train the head on the pooled, detached last features."""
        logits = self.unit("head", self.head)(kept[-1])
        loss = F.cross_entropy(logits, y)
        self._update("head", loss)
        return {"head_loss_sum": loss.detach() * y.shape[0]}

    def scores(self, x: torch.Tensor, strategy: str | None = None) -> Scores:
        """Per-layer scores and the three strategies, from one forward pass (goodness alone: the layers up to the
        voting range's last, no head)."""
        if strategy == "goodness":
            last = self.range_bounds()[1]
            per = torch.stack([o.scores.float() for o in self.run_blocks(self.prepare(x), self.blocks[:last + 1],
                                                                          hand_off_last=False)])
            return Scores({"goodness": self.range_sum(per)}, list(per))
        outs = list(self.iter_outputs(x))
        per = torch.stack([o.scores.float() for o in outs])  # (L, B, N)
        goodness = self.range_sum(per)
        head = self.head(self.head_features(outs[-1].out))
        return Scores({"goodness": goodness, "head": head,
                       "ensemble": goodness.softmax(1) + head.softmax(1)}, list(per))

    def strategy_info(self) -> dict[str, dict[str, int]]:
        """Trainable parameters and layers each strategy runs."""
        n, blocks = len(self.blocks), self.trainable_parameters(self.blocks)
        head = blocks + self.trainable_parameters(self.head)
        last = self.range_bounds()[1] + 1
        return {"goodness": {"trainable_parameters": self.trainable_parameters(self.blocks[:last]), "layers": last},
                "head": {"trainable_parameters": head, "layers": n},
                "ensemble": {"trainable_parameters": head, "layers": n}}
