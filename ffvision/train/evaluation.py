"""Evaluation: on-device counts of every strategy over a loader, and the strategy a run reports."""

from __future__ import annotations

import logging
import time
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from ffvision.core.metrics import Counts
from ffvision.errors import DataError
from ffvision.methods.base import LocalMethod
from ffvision.train import distributed as dist

log = logging.getLogger(__name__)


def select_strategy(val_by_strategy: dict[str, float], wanted: str, default: str) -> str:
    """The strategy a run reports: `wanted`, or with "auto" the best on validation (ties: the method's default)."""
    if wanted != "auto":
        return wanted
    return max(val_by_strategy, key=lambda k: (val_by_strategy[k], k == default))


def val_subset(val_set: Dataset, limit: int | None, method_default: int | None) -> Dataset:
    """The validation images evaluated each epoch: the first `limit` (or the method's default; the split is
    shuffled)."""
    limit = limit if limit is not None else method_default
    return val_set if limit is None or limit >= len(val_set) else Subset(val_set, range(limit))


@torch.no_grad()
def evaluate(method: LocalMethod, loader: DataLoader, to_device: Callable, desc: str = "eval",
             max_batches: int | None = None, disable_progress: bool | None = None,
             select: bool = False) -> Counts[float]:
    """Sum `method.eval_counts` over a loader on the device; one host sync; divide by n (select: validation)."""
    sums: Counts[torch.Tensor] | None = None
    n = 0
    bar = tqdm(loader, desc=desc, leave=False, disable=disable_progress)
    # A line every 30 s says the evaluation is alive (log files; a terminal's handler skips it beside a bar).
    lines = dist.current().is_main
    total = len(loader.dataset) if max_batches is None else min(len(loader.dataset), max_batches * loader.batch_size)
    start = last = time.perf_counter()
    for i, (x, y) in enumerate(bar):
        if max_batches is not None and i >= max_batches:
            break
        x, y = to_device(x, y)
        counts = method.eval_counts(x, y, select)
        sums = counts if sums is None else sums + counts
        n += y.shape[0]
        if lines and time.perf_counter() - last > 30:
            last = time.perf_counter()
            log.info("%s: %d/%d images, %.0f img/s", desc, n, total, n / (last - start),
                     extra={"beside_bar": not bar.disable})
    if sums is None:
        raise DataError(f"{desc}: no images to evaluate")
    leaves = sums.leaves()
    total = torch.stack([v.float() for v in leaves] + [torch.tensor(float(n), device=leaves[0].device)])
    values = dist.all_reduce_sum(total).cpu().tolist()  # every rank evaluated its own shard
    n_all = max(values.pop(), 1.0)
    return sums.with_leaves([v / n_all for v in values])
