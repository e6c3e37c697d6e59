"""Local losses over a class goodness vector g (B, N)."""

from __future__ import annotations

import functools
from typing import Callable

import torch
import torch.nn.functional as F

from ffvision.errors import ConfigError


def goodness_margin_loss(g: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """softplus(logsumexp_{j != y} g_j - g_y + margin), averaged over the batch (Scalable FF)."""
    g = g.float()
    true = g.gather(1, y[:, None]).squeeze(1)  # (B,)
    others = g.scatter(1, y[:, None], float("-inf"))  # the true class excluded
    return F.softplus(torch.logsumexp(others, dim=1) - true + margin).mean()


def goodness_cross_entropy(g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy with the goodness vector as logits."""
    return F.cross_entropy(g.float(), y)


def smoothed_cross_entropy(label_smoothing: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy with label smoothing in [0, 1) (plain F.cross_entropy at 0); ConfigError otherwise."""
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if label_smoothing == 0.0:
        return F.cross_entropy
    return functools.partial(F.cross_entropy, label_smoothing=label_smoothing)
