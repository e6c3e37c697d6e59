"""A prediction from the summed scores of a contiguous range of blocks, the range chosen on validation.

Scalable FF's `range` strategy and DeeperForward's `goodness` read it: evaluation counts every range
(`score_counts`, from prefix sums in one pass) and the run keeps the best on the validation split
(`select_on_validation`), stored in the `range_sel` buffer so checkpoints carry it.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ffvision.core.metrics import Counts, Scores, correct


class RangeVoting:
    """Mixin for a LocalMethod: `init_range` in __init__, `range_bounds` / `range_sum` in `scores`."""

    range_strategy: ClassVar[str] = "range"  # the strategy whose range validation chooses
    range_sel: torch.Tensor

    def init_range(self, blocks: int) -> None:
        """Start with every block (0-based first and last, inclusive)."""
        self.register_buffer("range_sel", torch.tensor([0, blocks - 1]))  # type: ignore[attr-defined]

    def range_bounds(self) -> tuple[int, int]:
        """The chosen range, 0-based and inclusive (one host sync)."""
        a, b = (int(v) for v in self.range_sel)
        return a, b

    def range_sum(self, per: torch.Tensor) -> torch.Tensor:
        """Sum of the per-block scores (L, B, N) over the chosen range: (B, N)."""
        a, b = self.range_bounds()
        return per[a:b + 1].sum(0)

    def score_counts(self, scores: Scores, y: torch.Tensor) -> Counts[torch.Tensor]:
        """Also the correct count of every contiguous range of blocks (for selection on validation)."""
        counts = super().score_counts(scores, y)  # type: ignore[misc]
        per = torch.stack(scores.layers)  # (L, B, N)
        prefix = torch.cat([torch.zeros_like(per[:1]), per.cumsum(0)])  # prefix[i] = sum of blocks < i
        n = per.shape[0]
        for a in range(n):
            for b in range(a, n):  # blocks a+1..b+1 (1-based)
                counts.ranges[(a + 1, b + 1)] = correct(prefix[b + 1] - prefix[a], y)
        return counts

    def select_on_validation(self, val: Counts[float]) -> Counts[float]:
        """Keep the range with the best validation accuracy (ties: the first found)."""
        if not val.ranges:
            return val
        a, b = max(val.ranges, key=lambda r: val.ranges[r])
        self.range_sel.copy_(torch.tensor([a - 1, b - 1]))
        return val.with_range_chosen(self.range_strategy, (a, b))
