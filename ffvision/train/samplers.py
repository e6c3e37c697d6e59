"""Samplers: a resumable, rank-sharded epoch order, and a plain shard for evaluation."""

from __future__ import annotations

import math
from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[int]):
    """This rank's share of a permutation fixed by (seed, epoch), from position `start` on.

    Deriving the order from the epoch number (not from a running generator) is what lets a
    resumed run see exactly the batches an uninterrupted one would. With several ranks it
    shards like torch's DistributedSampler (padded to a multiple of the world size, rank r
    takes every world_size-th index), so the ranks' batches of step t together are the
    single-process batch of step t.
    """

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, rank: int = 0, world_size: int = 1) -> None:
        self.n, self.seed, self.epoch, self.start = n, seed, epoch, start
        self.rank, self.world_size = rank, world_size
        self.per_rank = math.ceil(n / world_size)

    def __iter__(self) -> Iterator[int]:
        """Indices of this rank for this epoch from position `start` on."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        perm = torch.randperm(self.n, generator=g)
        pad = self.per_rank * self.world_size - self.n
        if pad:
            perm = torch.cat([perm, perm[:pad]])
        return iter(perm[self.rank::self.world_size][self.start:].tolist())

    def __len__(self) -> int:
        """Number of indices still to come this epoch on this rank."""
        return self.per_rank - self.start


class ShardSampler(Sampler[int]):
    """Evaluation: rank r takes indices r, r + W, ... so every sample is seen exactly once."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1) -> None:
        self.indices = range(rank, n, world_size)

    def __iter__(self) -> Iterator[int]:
        """This rank's indices, in order."""
        return iter(self.indices)

    def __len__(self) -> int:
        """How many samples this rank evaluates."""
        return len(self.indices)


def make_loader(dataset: Dataset, batch_size: int, sampler: Sampler | None, seed: int, num_workers: int,
                device: torch.device, world: Any) -> DataLoader:
    """A DataLoader over `sampler` (default: this rank's shard, in order) whose worker seeds derive from `seed`."""
    if sampler is None:
        sampler = ShardSampler(len(dataset), world.rank, world.world_size)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
                      pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(seed))
