"""Hooks the Trainer calls at named points (PyTorch Lightning's names), and the run's own: progress and
metrics logs, TensorBoard, checkpoints. The divergence guard is one too (train/divergence.py).

A user's hook is a `Callback` subclass, or a plain function of the trainer, called after every step:

    def stop_at_100(trainer):
        if trainer.global_step == 100:
            trainer.request_stop()      # saves last.pt after this step; --resume continues
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from ffvision.config import checkpoint_interval
from ffvision.train import distributed as dist
from ffvision.train.outputs import RunLog, epoch_line

# Hooks receive the Trainer (train/trainer.py), typed `Trainer` here by name only: the trainer imports this module.
Trainer = Any

log = logging.getLogger(__name__)


class Callback:
    """Every hook is optional; the trainer calls them in the order the callbacks were given."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Before the first step (also of a resumed run)."""

    def on_train_epoch_start(self, trainer: Trainer) -> None:
        """Before an epoch's (or a resumed epoch's) first step."""

    def on_train_batch_end(self, trainer: Trainer) -> None:
        """After every training step (`trainer.step_stats`: the step's on-device sums)."""

    def on_log_interval(self, trainer: Trainer, loss: float, accuracy: float) -> None:
        """Every `log_interval` steps, after the one host sync: the epoch's running loss and accuracy."""

    def on_train_epoch_end(self, trainer: Trainer, loss: float, accuracy: float) -> None:
        """After an epoch's last step, before validation: its mean loss and accuracy over every process."""

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        """After validation: the epoch's record (metrics.jsonl's line); `improved`: a new best epoch."""

    def on_interrupt(self, trainer: Trainer) -> None:
        """A stop was requested (Ctrl-C, `request_stop`): before the trainer raises TrainingInterrupted."""


class StepFunction(Callback):
    """A plain function of the trainer, called after every training step."""

    def __init__(self, fn: Callable[[Trainer], None]) -> None:
        self.fn = fn

    def on_train_batch_end(self, trainer: Trainer) -> None:
        """Call the function."""
        self.fn(trainer)


class ProgressLog(Callback):
    """The progress bar's numbers, a log line every 30 s, and each epoch's line (rank 0)."""

    def __init__(self, every_seconds: float = 30.0) -> None:
        self.every_seconds = every_seconds
        self.start = self.last = 0.0

    def on_train_epoch_start(self, trainer: Trainer) -> None:
        """Start the epoch's clock."""
        self.start = self.last = time.perf_counter()

    def on_log_interval(self, trainer: Trainer, loss: float, accuracy: float) -> None:
        """Update the bar; every 30 s a line for log files (a terminal's handler skips it beside a bar)."""
        trainer.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{accuracy:.3f}")
        now = time.perf_counter()
        if now - self.last > self.every_seconds:
            self.last = now
            log.info("epoch %d/%s: step %d/%d, loss %.4f, train acc %.3f, %.0f img/s", trainer.epoch + 1,
                     trainer.epochs_label, trainer.step_in_epoch, trainer.steps_per_epoch, loss, accuracy,
                     trainer.epoch_images / (now - self.start), extra={"beside_bar": not trainer.bar.disable})

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        """The epoch's line."""
        log.info(epoch_line(record, trainer.epochs_label))


class RunFiles(Callback):
    """RUN_DIR/metrics.jsonl (rewritten from the history on resume), curves.png and TensorBoard (rank 0)."""

    def __init__(self, run_dir: Path, tensorboard: bool) -> None:
        self.log = RunLog(run_dir, tensorboard)

    def on_fit_start(self, trainer: Trainer) -> None:
        """metrics.jsonl = the history so far (a resumed run drops the epochs after its checkpoint)."""
        self.log.run_dir.mkdir(parents=True, exist_ok=True)
        self.log.rewrite(trainer.history)

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        """Append the epoch's record; redraw the curves."""
        self.log.append(trainer.history)
        self.log.plot(trainer.history)


class Checkpoints(Callback):
    """best.pt when validation improves; last.pt after every epoch, every `--checkpoint-every` steps or minutes
    within one, and when a run is stopped. Every rank calls `save` (it gathers RNG states; rank 0 writes), so
    every rank decides alike: by the step count, or under torchrun by any rank's clock at the log interval."""

    def __init__(self, every: str = "0") -> None:
        self.steps, self.seconds = checkpoint_interval(every)
        self.saved_at = time.monotonic()

    def on_fit_start(self, trainer: Trainer) -> None:
        """Start the clock."""
        self.saved_at = time.monotonic()

    def on_train_batch_end(self, trainer: Trainer) -> None:
        """last.pt every N steps; every M minutes on one process (a clock read per step is free)."""
        if trainer.step_in_epoch >= trainer.steps_per_epoch:
            return  # the end of the epoch writes it
        due = (self.steps and trainer.global_step % self.steps == 0) or (
            self.seconds and not trainer.dist.enabled and time.monotonic() - self.saved_at >= self.seconds)
        if due:
            self._save_last(trainer)

    def on_log_interval(self, trainer: Trainer, loss: float, accuracy: float) -> None:
        """Every M minutes under torchrun: decided at the log interval, where the ranks sync anyway."""
        if self.seconds and trainer.dist.enabled and trainer.step_in_epoch < trainer.steps_per_epoch:
            if dist.any_rank(time.monotonic() - self.saved_at >= self.seconds, trainer.device):
                self._save_last(trainer)

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        """Write best.pt (if improved) and last.pt."""
        if improved:
            trainer.save("best.pt")
        self._save_last(trainer)

    def _save_last(self, trainer: Trainer) -> None:
        """Write last.pt and restart the clock."""
        trainer.save("last.pt")
        self.saved_at = time.monotonic()

    def on_interrupt(self, trainer: Trainer) -> None:
        """Write last.pt: --resume continues from this step."""
        trainer.save("last.pt")


class DryRun(Callback):
    """--dry-run: one training step and one validation batch, then the run ends (it has no run directory)."""

    def on_fit_start(self, trainer: Trainer) -> None:
        """Validate on one batch."""
        trainer.limit_val_batches = 1

    def on_train_batch_end(self, trainer: Trainer) -> None:
        """End the epoch, and the run, after this step."""
        trainer.end_epoch = trainer.stop_fit = True


class ProgressiveFreezing(Callback):
    """Progressive freezing (--freeze-patience): only local learning can do it. A block never waits for a gradient
    from above, so once its own readout's validation accuracy has not risen for `patience` evaluations it stops
    training and the blocks after it train on its now fixed output. Blocks freeze in order, as a prefix of the
    stack (a block's input no longer moves once every block before it is frozen), and the last block never
    does. A frozen block runs forward only, without gradients or optimizer steps, its BatchNorm statistics
    fixed; it keeps serving the blocks after it and every prediction strategy. `trainer.froze` records when each
    block froze (checkpoints and summary.json carry it)."""

    def __init__(self, patience: int) -> None:
        self.patience = patience

    def on_validation_end(self, trainer: Trainer, record: dict[str, Any], improved: bool) -> None:
        """Freeze the next block of the prefix if its readout's validation accuracy has plateaued."""
        method = trainer.method
        n = len(method.blocks)
        accuracy = [r["val_layer_accuracy"] for r in trainer.history]
        if not accuracy or len(accuracy[-1]) != n:
            return  # a method whose readouts are not one per block
        i = next((i for i in range(n) if i not in method.frozen), n)
        if i >= n - 1 or len(accuracy) <= self.patience:
            return
        series = [a[i] for a in accuracy]
        best_before = max(series[:-self.patience])
        if max(series[-self.patience:]) > best_before:
            return
        method.freeze(i)
        name = f"block{i + 1}"
        trainer.froze[name] = record["epoch"]
        log.info("%s froze after epoch %d: its validation accuracy %.4f has not risen above %.4f for %d "
                 "evaluations", name, record["epoch"], series[-1], best_before, self.patience)


_REGISTERED: list[Callable[[], Callback]] = []


def register_callback(factory: Callable[[], Callback]) -> Callable[[], Callback]:
    """Give every run from now on a Callback made by `factory` (a Callback subclass, or a function of no
    arguments); a decorator. With FFVISION_PLUGINS a module reaches runs of the command line this way."""
    _REGISTERED.append(factory)
    return factory


def run_callbacks(trainer: Trainer, given: list[Callback | Callable[[Trainer], None]] | None) -> list[Callback]:
    """The callbacks of a run: the divergence guard, files and checkpoints (with a run directory), a dry run's
    limits, progress (rank 0), then the registered ones and the given ones."""
    out: list[Callback] = [trainer.guard]
    if trainer.cfg.freeze_patience:
        out.append(ProgressiveFreezing(trainer.cfg.freeze_patience))  # before the checkpoints that record it
    if trainer.run_dir is not None and not trainer.cfg.dry_run:
        if trainer.dist.is_main:
            out.append(RunFiles(trainer.run_dir, trainer.cfg.tensorboard))
        out.append(Checkpoints(trainer.cfg.checkpoint_every))
    if trainer.cfg.dry_run:
        out.append(DryRun())
    if trainer.dist.is_main:
        out.append(ProgressLog())
    out += [factory() for factory in _REGISTERED]
    return out + [c if isinstance(c, Callback) else StepFunction(c) for c in given or []]
