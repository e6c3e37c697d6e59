"""Local losses over a class goodness vector g (B, N)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def goodness_margin_loss(g: torch.Tensor, y: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """softplus(logsumexp_{j != y} g_j - g_y + margin), averaged over the batch (Scalable FF)."""
    g = g.float()
    true = g.gather(1, y[:, None]).squeeze(1)  # (B,)
    others = g.scatter(1, y[:, None], float("-inf"))  # the true class excluded
    return F.softplus(torch.logsumexp(others, dim=1) - true + margin).mean()


def goodness_cross_entropy(g: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy with the goodness vector as logits."""
    return F.cross_entropy(g.float(), y)
