"""Divergence: a non-finite loss stops the run at once with the last good state saved; a loss that
explodes while training accuracy stays at chance is a warning that summary.json records."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Callable

import torch

from ffvision.errors import TrainingDiverged
from ffvision.train.checkpoint import save_checkpoint


class DivergenceGuard:
    """Keeps the last finite training state and judges each loss against the first step's."""

    def __init__(self, run_dir: Path | None, write: bool, is_main: bool) -> None:
        self.run_dir, self.write, self.is_main = run_dir, write, is_main
        self.good: dict[str, Any] | None = None  # the last state known to be finite
        self.first_loss: float | None = None  # mean loss of the first step: the scale a diverging loss is judged by
        self.warnings: list[str] = []

    def snapshot(self, params: list[torch.nn.Parameter], state: Callable[[], dict[str, Any]]) -> None:
        """Keep a copy of state() if the weights are finite (one host sync): what last.pt gets on divergence."""
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            return  # an update broke the weights before the loss showed it: keep the older state
        self.good = copy.deepcopy(state())

    def first(self, loss: float) -> None:
        """Remember the first finite step loss."""
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = loss

    def check(self, value: float, where: str, best_epoch: int) -> None:
        """TrainingDiverged if the loss is NaN/inf; last.pt then holds the last good state."""
        if math.isfinite(value):
            return
        msg = f"loss became {value} at {where}; training stopped"
        if self.run_dir is not None and self.good is not None and self.write:
            if self.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_checkpoint(self.run_dir / "last.pt", self.good)
            msg += (f"; {self.run_dir / 'last.pt'} holds the last good state (epoch {self.good['epoch'] + 1} "
                    f"step {self.good['step_in_epoch']})")
        best = self.run_dir / "best.pt" if self.run_dir else None
        if best is not None and best.exists():
            msg += f"; the best checkpoint {best} (epoch {best_epoch}) is intact"
        raise TrainingDiverged(msg + ". Try a lower --lr.")

    def end_of_epoch(self, epoch: int, loss: float, accuracy: float, num_classes: int) -> str | None:
        """A warning when the epoch's loss is over 100x the first step's while accuracy stays at chance."""
        if not (self.first_loss and loss > 100 * abs(self.first_loss) and accuracy < 1.5 / num_classes):
            return None
        warning = (f"epoch {epoch}: the loss exploded ({loss:.3g}, over 100x its first value "
                   f"{self.first_loss:.3g}) while training accuracy stays at chance ({accuracy:.3f}): the run "
                   "diverged; try a lower --lr")
        self.warnings.append(warning)
        return warning
