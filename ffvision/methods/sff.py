"""Scalable Forward-Forward (Krutsylo, "Scalable Forward-Forward Algorithm", arXiv 2501.03176).

Wraps torchvision's ResNet18 / MobileNetV3 (models/tv.py) as a stack of local blocks. Every
block has an auxiliary k x k convolution with one output channel per class; its class
goodness g_k = mean_HW z_k^2 is one forward pass's vector of scores, where the true class is
the positive and all others are negatives. Loss: softmax cross-entropy over g, or
softplus(logsumexp_{j != y} g_j - g_y + m). The block output is RMS-normalised and detached.

Granularity: `layer` (pure FF: every conv its own block), `block` (hybrid: backprop inside
each BasicBlock / inverted-residual block, never across; the default), `stage` (each ResNet
layerN). Prediction: the average of all blocks' goodness vectors, the last block's, or the
average over a contiguous range of blocks chosen on the validation split.
Transfer learning: `init_weights` loads a local torchvision state_dict; `freeze_blocks` keeps
the first K blocks fixed (no optimizer, BatchNorm statistics frozen).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch import nn

from ffvision.core import LocalBlock, RMSNorm
from ffvision.core.losses import goodness_cross_entropy, goodness_margin_loss
from ffvision.core.metrics import Scores
from ffvision.core.readouts import ClassChannelGoodness
from ffvision.errors import ConfigError
from ffvision.methods.base import LocalMethod, build_model
from ffvision.methods.options import METHODS
from ffvision.methods.registry import register_method
from ffvision.methods.voting import RangeVoting
from ffvision.models.tv import TV_ARCHS

log = logging.getLogger(__name__)


@register_method
class SFF(RangeVoting, LocalMethod):
    """Scalable FF on torchvision networks: class-channel goodness per block."""

    spec = METHODS["sff"]

    def __init__(self, *, num_classes: int, in_channels: int = 3, image_size: int = 32, seed: int = 0,
                 **options: Any) -> None:
        """Options: SFFOptions (methods/options.py); None keeps a default."""
        super().__init__(num_classes=num_classes, in_channels=in_channels, image_size=image_size, seed=seed)
        o = self.options_of(options)
        if o.aux_kernel % 2 == 0:  # positive is declared
            raise ConfigError(f"aux_kernel must be odd, got {o.aux_kernel}")
        if o.model not in TV_ARCHS:
            raise ConfigError(f"sff wraps torchvision networks ({', '.join(TV_ARCHS)}), not {o.model!r}")
        net = build_model(o.model, in_channels=in_channels, num_classes=0, image_size=image_size, stem=o.stem,
                          width_mult=o.width_mult, dropout=o.dropout)
        if o.init_weights:
            skipped = net.load_torchvision_weights(o.init_weights)
            if skipped:
                log.info("%s: kept the adapted layers' own init for %s", o.init_weights, ", ".join(skipped))
        granularity, freeze_blocks, model = o.granularity, o.freeze_blocks, o.model
        bodies = net.local_blocks(granularity)
        if not 0 <= freeze_blocks < len(bodies):
            raise ConfigError(f"freeze_blocks must be in [0, {len(bodies) - 1}] for {model} at {granularity} "
                              f"granularity ({len(bodies)} blocks), got {freeze_blocks}")
        self.granularity, self.lr, self.weight_decay = granularity, o.lr, o.weight_decay
        loss = (goodness_cross_entropy if o.sff_loss == "ce"
                else functools.partial(goodness_margin_loss, margin=o.margin))
        channels = _out_channels(bodies, in_channels, image_size)
        for body, c in zip(bodies, channels):
            self.blocks.append(LocalBlock(body, ClassChannelGoodness(c, num_classes, o.aux_kernel), post=RMSNorm(),
                                          loss=loss))
        self.frozen = set(range(freeze_blocks))
        for i in self.frozen:
            self.blocks[i].requires_grad_(False)
        self.init_range(len(self.blocks))  # the "range" strategy's blocks, chosen on validation
        self.build_optimizers()

    def optimizer_groups(self) -> dict[str, tuple[list[nn.Parameter], float, float]]:
        """One AdamW per trainable block (frozen blocks get none)."""
        return {f"block{i + 1}": (list(b.parameters()), self.lr, self.weight_decay)
                for i, b in enumerate(self.blocks) if i not in self.frozen}

    def scores(self, x: torch.Tensor, strategy: str | None = None) -> Scores:
        """Per-block goodness vectors and the average / last / selected-range strategies (range alone: the blocks
        up to the range's last)."""
        a, b = self.range_bounds()
        if strategy == "range":
            per = torch.stack([o.scores.float() for o in self.run_blocks(self.prepare(x), self.blocks[:b + 1],
                                                                          hand_off_last=False)])
            return Scores({"range": self.range_sum(per) / (b - a + 1)}, list(per))
        per = torch.stack([o.scores.float() for o in self.iter_outputs(x)])  # (L, B, N)
        return Scores({"average": per.mean(0), "last": per[-1], "range": self.range_sum(per) / (b - a + 1)},
                      list(per))

    def strategy_info(self) -> dict[str, dict[str, int]]:
        """Trainable parameters and blocks each strategy runs."""
        n = len(self.blocks)
        total = self.trainable_parameters(self.blocks)
        return {"average": {"trainable_parameters": total, "layers": n},
                "last": {"trainable_parameters": total, "layers": n},
                "range": {"trainable_parameters": self.trainable_parameters(self.blocks[:int(self.range_sel[1]) + 1]),
                          "layers": int(self.range_sel[1]) + 1}}


@torch.no_grad()
def _out_channels(bodies: list[nn.Module], in_channels: int, image_size: int) -> list[int]:
    """Output channels of each body, from one forward pass of a dummy batch in eval mode."""
    x: torch.Tensor | tuple = torch.zeros(2, in_channels, image_size, image_size)
    modes = [b.training for b in bodies]
    out = []
    for b in bodies:
        b.eval()
        x = b(x)
        out.append((x[0] if isinstance(x, tuple) else x).shape[1])
    for b, m in zip(bodies, modes):
        b.train(m)
    return out
