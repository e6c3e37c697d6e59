"""Learning-rate schedule: optional linear warm-up, then cosine decay to lr * min_ratio."""

from __future__ import annotations

import math
import warnings
from typing import Any, Callable

import torch


def cosine(progress: float, min_ratio: float) -> float:
    """The cosine from 1 (progress 0) down to min_ratio (progress 1)."""
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class WarmupCosine:
    """Multiplier for LambdaLR over `total` units (steps or epochs), `warmup` of them linear."""

    def __init__(self, total: int, warmup: int = 0, min_ratio: float = 0.01) -> None:
        self.total, self.warmup, self.min_ratio = max(1, total), warmup, min_ratio

    def __call__(self, t: int) -> float:
        """lr factor at unit t (0-based)."""
        if t < self.warmup:
            return (t + 1) / self.warmup
        return cosine(min(1.0, (t - self.warmup) / max(1, self.total - self.warmup)), self.min_ratio)


class WarmupCosineOverTime:
    """Multiplier for LambdaLR with a time budget: the warm-up over `warmup` steps, the cosine over the fraction of
    the budget spent, which `progress()` reads (0 at the start, 1 at the budget)."""

    def __init__(self, progress: Callable[[], float], warmup: int = 0, min_ratio: float = 0.01) -> None:
        self.progress, self.warmup, self.min_ratio = progress, warmup, min_ratio

    def __call__(self, t: int) -> float:
        """lr factor at step t (0-based), at the fraction of the budget spent now."""
        warm = min(1.0, (t + 1) / self.warmup) if self.warmup else 1.0
        return warm * cosine(min(1.0, max(0.0, self.progress())), self.min_ratio)


def make_schedulers(optimizers: dict[str, torch.optim.Optimizer], cfg: Any, steps_per_epoch: int,
                    existing: dict[str, torch.optim.lr_scheduler.LambdaLR] | None = None,
                    progress: Callable[[], float] | None = None) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    """One warm-up + cosine schedule per optimizer, over steps or epochs, or with `progress` (a time budget) over
    the time spent, stepped every step (a resumed run keeps its step count and adopts the possibly longer
    schedule)."""
    if progress is not None:
        warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        schedule: Callable[[int], float] = WarmupCosineOverTime(progress, warmup, cfg.min_lr_ratio)
    else:
        per = steps_per_epoch if cfg.scheduler_interval == "step" else 1
        schedule = WarmupCosine(cfg.epochs * per, int(round(cfg.warmup_epochs * per)), cfg.min_lr_ratio)
    out = dict(existing or {})
    for name, opt in optimizers.items():
        if name in out:
            out[name].lr_lambdas = [schedule] * len(out[name].lr_lambdas)
        else:
            out[name] = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
    return out


def restore_schedulers(schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR],
                       states: dict[str, dict[str, Any]]) -> None:
    """Load saved scheduler states (without their lambdas: the current schedule applies) and this step's lr.

    Through torch's public API only: `load_state_dict` with a None per lambda keeps the current ones (epochs may
    have been extended), and one `step()` from the step before re-applies this step's lr to the optimizer, which
    building the scheduler had set to step 0's.
    """
    for k, sd in states.items():
        sched = schedulers[k]
        sched.load_state_dict({**sd, "lr_lambdas": [None] * len(sched.lr_lambdas)})
        sched.last_epoch -= 1
        with warnings.catch_warnings():  # "step() before optimizer.step()": a restore, not a training step
            warnings.simplefilter("ignore", UserWarning)
            sched.step()


def scheduler_states(schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR]) -> dict[str, dict[str, Any]]:
    """What a checkpoint keeps of each scheduler (not its lambdas: they are rebuilt from the config)."""
    return {k: {kk: vv for kk, vv in s.state_dict().items() if kk != "lr_lambdas"} for k, s in schedulers.items()}
