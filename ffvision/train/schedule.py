"""Learning-rate schedule: optional linear warm-up, then cosine decay to lr * min_ratio."""

from __future__ import annotations

import math


class WarmupCosine:
    """Multiplier for LambdaLR over `total` units (steps or epochs), `warmup` of them linear."""

    def __init__(self, total: int, warmup: int = 0, min_ratio: float = 0.01) -> None:
        self.total, self.warmup, self.min_ratio = max(1, total), warmup, min_ratio

    def __call__(self, t: int) -> float:
        """lr factor at unit t (0-based)."""
        if t < self.warmup:
            return (t + 1) / self.warmup
        progress = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
