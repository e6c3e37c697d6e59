"""Divergence: a non-finite loss stops the run at once with the last good state saved; a loss that
explodes while training accuracy stays at chance is a warning that summary.json records."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch

from ffvision.errors import TrainingDiverged
from ffvision.train import distributed as dist
from ffvision.train.callbacks import Callback, Trainer
from ffvision.train.checkpoint import LAST, PREVIOUS, save_checkpoint
from ffvision.train.schedule import scheduler_states

log = logging.getLogger(__name__)


def copy_into(value: Any, kept: Any) -> Any:
    """A copy of a state tree whose tensors are written into `kept`'s tensors of the same shape and type
    (no new allocation after the first snapshot); other leaves are copied by reference (they are replaced,
    never changed in place, by the trainer)."""
    if torch.is_tensor(value):
        if torch.is_tensor(kept) and kept.shape == value.shape and kept.dtype == value.dtype \
                and kept.device == value.device:
            return kept.copy_(value)
        return value.detach().clone()
    if isinstance(value, dict):
        old = kept if isinstance(kept, dict) else {}
        return {k: copy_into(v, old.get(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        old = kept if isinstance(kept, (list, tuple)) and len(kept) == len(value) else [None] * len(value)
        return type(value)(copy_into(v, o) for v, o in zip(value, old))
    return value


class DivergenceGuard(Callback):
    """Keeps the last finite training state and judges each loss against the first step's.

    The loss is checked after every step where that costs nothing (one CPU process: the loss is on the host),
    else at the log interval. The last good state is the model's and optimizers' tensors copied into buffers
    kept between log intervals, with the counters; the rest of a checkpoint (config, schedules, history,
    RNG) is taken only when the run diverges.
    """

    def __init__(self, run_dir: Path | None, write: bool, is_main: bool, every_step: bool = False) -> None:
        self.run_dir, self.write, self.is_main, self.every_step = run_dir, write, is_main, every_step
        self.good: dict[str, Any] | None = None  # model, optimizers and counters of the last finite state
        self.first_loss: float | None = None  # mean loss of the first step: the scale a diverging loss is judged by
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, trainer: Trainer) -> None:
        """The state a run starts from is its first good state."""
        self.snapshot(trainer)

    def on_train_batch_end(self, trainer: Trainer) -> None:
        """Check the step's loss where it is free (one CPU process), and always the first step's."""
        if self.every_step or self.first_loss is None:
            loss = float(trainer.step_stats["loss_sum"]) / max(1, trainer.step_images)
            self.first(loss)
            self.check(loss, f"epoch {trainer.epoch + 1} step {trainer.step_in_epoch}", trainer)

    def on_log_interval(self, trainer: Trainer, loss: float, accuracy: float) -> None:
        """Check the running loss; keep the state if the weights are finite."""
        self.check(loss, f"epoch {trainer.epoch + 1} (by step {trainer.step_in_epoch})", trainer)
        self.snapshot(trainer)

    def on_train_epoch_end(self, trainer: Trainer, loss: float, accuracy: float) -> None:
        """Check the epoch's loss; warn (and record) when it exploded while accuracy stays at chance."""
        self.check(loss, f"the end of epoch {trainer.epoch + 1}", trainer)
        warning = self.end_of_epoch(trainer.epoch + 1, loss, accuracy, trainer.method.num_classes)
        if warning and self.is_main:
            log.warning(warning)

    def on_interrupt(self, trainer: Trainer) -> None:
        """A stopped run saves last.pt only from a finite state."""
        loss = dist.all_reduce_sum(trainer.epoch_sums.get("loss_sum", torch.zeros((), device=trainer.device))
                                   .float().detach().clone())
        self.check(float(loss), f"epoch {trainer.epoch + 1}", trainer)

    # ------------------------------------------------------------------ the guard
    def snapshot(self, trainer: Trainer) -> None:
        """Keep the training state if the weights are finite (one host sync): its tensors (weights, optimizer
        moments, the epoch's sums) are copied into the buffers of the previous snapshot, the rest is small."""
        params = list(trainer.method.parameters())
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):
            return  # an update broke the weights before the loss showed it: keep the older state
        old = self.good or {}
        self.good = {
            "model": copy_into(trainer.method.state_dict(), old.get("model")),
            "optimizers": copy_into({k: o.state_dict() for k, o in trainer.method.optimizers.items()},
                                    old.get("optimizers")),
            "epoch_sums": copy_into(trainer.epoch_sums, old.get("epoch_sums")),
            "schedulers": scheduler_states(trainer.schedulers),
            "history": list(trainer.history),  # records are appended, never changed
            **{k: getattr(trainer, k) for k in ("epoch", "step_in_epoch", "global_step", "best", "epoch_seen",
                                                "train_seconds", "images_seen")},
        }

    def first(self, loss: float) -> None:
        """Remember the first finite step loss."""
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = loss

    def check(self, value: float, where: str, trainer: Trainer) -> None:
        """TrainingDiverged if the loss is NaN/inf; last.pt then holds the last good state."""
        if math.isfinite(value):
            return
        msg = f"loss became {value} at {where}; training stopped"
        if self.run_dir is not None and self.good is not None and self.write:
            good = {**self.good, "epoch_sums": {k: v.detach().cpu() for k, v in self.good["epoch_sums"].items()}}
            state = {**trainer.state(), **good}  # the run's checkpoint as it was at the last finite state
            if self.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_checkpoint(self.run_dir / LAST, state, PREVIOUS)
            msg += (f"; {self.run_dir / 'last.pt'} holds the last good state (epoch {self.good['epoch'] + 1} "
                    f"step {self.good['step_in_epoch']})")
        best = self.run_dir / "best.pt" if self.run_dir else None
        if best is not None and best.exists():
            msg += f"; the best checkpoint {best} (epoch {trainer.best['epoch']}) is intact"
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
