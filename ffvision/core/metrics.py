"""Typed evaluation results: a method's class scores and the counts summed over a split.

`Scores` holds the class scores (B, N) of one batch by prediction strategy, by layer and by
candidate layer range (the ranges a method chooses between on the validation split: FF's
voting layers, SFF's block range). `Counts` holds what evaluation sums over images: correct
predictions of each of them, early exit's correct counts and layers used, top-5. Summed on
the device, reduced across processes in one flat tensor, then divided by the image count,
the same structure holds accuracies (floats). Layer numbers and ranges are 1-based and
inclusive, as the CLI's --vote-from/--vote-to; nothing is encoded in string keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Generic, TypeVar

import torch

V = TypeVar("V")
Range = tuple[int, int]  # (first, last) layer, 1-based, inclusive


@dataclass
class Scores:
    """Class scores (B, N) of one batch: by strategy, by layer, by candidate layer range."""

    strategies: dict[str, torch.Tensor]
    layers: list[torch.Tensor] = field(default_factory=list)
    ranges: dict[Range, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, strategy: str) -> torch.Tensor:
        """The scores of one strategy."""
        return self.strategies[strategy]


@dataclass
class Counts(Generic[V]):
    """Sums over images (tensors on the device) or, divided by the image count, accuracies (floats)."""

    strategies: dict[str, V]
    layers: list[V] = field(default_factory=list)
    ranges: dict[Range, V] = field(default_factory=dict)
    early_exit: dict[float, tuple[V, V]] = field(default_factory=dict)  # threshold -> (correct, layers used)
    top5: V | None = None

    def leaves(self) -> list[V]:
        """Every value, in a fixed order (for one flat all-reduce)."""
        out = [*self.strategies.values(), *self.layers, *self.ranges.values()]
        for correct, used in self.early_exit.values():
            out += [correct, used]
        return out + ([self.top5] if self.top5 is not None else [])

    def with_leaves(self, values: list[Any]) -> Counts[Any]:
        """The same structure holding `values` (in the order of `leaves`)."""
        it = iter(values)
        out = Counts({k: next(it) for k in self.strategies}, [next(it) for _ in self.layers],
                     {k: next(it) for k in self.ranges},
                     {t: (next(it), next(it)) for t in self.early_exit})
        if self.top5 is not None:
            out.top5 = next(it)
        return out

    def map(self, fn: Callable[[V], Any]) -> Counts[Any]:
        """Apply fn to every value."""
        return self.with_leaves([fn(v) for v in self.leaves()])

    def __add__(self, other: Counts[V]) -> Counts[V]:
        """Element-wise sum of two batches' counts (same structure)."""
        return self.with_leaves([a + b for a, b in zip(self.leaves(), other.leaves(), strict=True)])

    def with_range_chosen(self, strategy: str, chosen: Range) -> Counts[V]:
        """After a selection on validation: `strategy` takes the chosen range's value, the candidates go."""
        return dataclasses.replace(self, strategies={**self.strategies, strategy: self.ranges[chosen]}, ranges={})


def correct(scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of rows whose argmax is the label (on the device)."""
    return (scores.argmax(1) == y).sum()


def best_range(accuracy: dict[Range, float]) -> Range:
    """The range with the best accuracy; ties: the widest, then the earliest."""
    return max(accuracy, key=lambda r: (accuracy[r], r[1] - r[0], -r[0]))
