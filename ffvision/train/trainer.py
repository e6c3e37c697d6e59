"""The Trainer: feeds batches, steps schedulers, validates; logs, checkpoints and guards through hooks.

It knows nothing about goodness: a method's `train_step` returns on-device sums and its
`eval_counts` returns on-device counts; the Trainer adds them up and syncs with the host
only at the log interval and at the end of an epoch.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ffvision.config import TrainConfig, duration_seconds
from ffvision.core.metrics import Counts
from ffvision.errors import ConfigError, StorageError, TrainingInterrupted
from ffvision.methods import used_config
from ffvision.methods.base import LocalMethod
from ffvision.train import distributed as dist
from ffvision.train.callbacks import Callback, run_callbacks
from ffvision.train.checkpoint import LAST, PREVIOUS, load_method_state, save_checkpoint
from ffvision.train.devices import batch_to_device, heap_in_use_bytes, resident_bytes
from ffvision.train.divergence import DivergenceGuard
from ffvision.train.evaluation import evaluate, select_strategy, val_subset
from ffvision.train.heap import release_freed_memory
from ffvision.train.outputs import StopSignals
from ffvision.train.placement import place_method
from ffvision.train.rngstate import rng_state, set_rng_state
from ffvision.train.samplers import EpochSampler, make_loader
from ffvision.train.schedule import make_schedulers, restore_schedulers, scheduler_states


class Trainer:
    """Runs a LocalMethod over datasets: epochs, schedules, validation, checkpoints, logs."""

    def __init__(
        self,
        method: LocalMethod,
        cfg: TrainConfig,
        run_dir: str | Path | None,
        meta: dict[str, Any] | None = None,
        callbacks: list[Callback | Callable[[Trainer], None]] | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist.current()
        if cfg.batch_size is None or (cfg.epochs is None and cfg.time_budget is None):
            raise ConfigError("a Trainer needs cfg.batch_size and cfg.epochs (or cfg.time_budget): train() chooses "
                              "those not given from the data (run.sized_for_data)")
        if cfg.batch_size % self.dist.world_size:
            raise ConfigError(f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                              f"{self.dist.world_size} processes")
        self.batch_size = cfg.batch_size // self.dist.world_size  # per process
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.meta = meta or {}
        placed = place_method(method, cfg, self.dist)
        self.device, self.channels_last, self.pipeline = placed.device, placed.channels_last, placed.pipeline
        self._to_device = functools.partial(batch_to_device, device=self.device, channels_last=self.channels_last)
        self.method = method
        self.num_workers = cfg.num_workers if cfg.num_workers is not None else (8 if self.device.type == "cuda" else 0)
        # None lets tqdm decide (off when stderr is not a terminal); always off on ranks other than 0
        self.progress_off = True if not self.dist.is_main else None if show_progress is None else not show_progress
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # completed steps of the current epoch
        self.global_step = 0
        self.best: dict[str, Any] = {"val_accuracy": -1.0, "epoch": 0}
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, torch.Tensor] = {}
        self.epoch_seen = 0
        self.train_seconds = 0.0
        self.val_seconds = 0.0  # validation, not counted in a time budget
        self.images_seen = 0
        self.budget = duration_seconds(cfg.time_budget) if cfg.time_budget else None  # seconds of training
        self.budget_spent = 0.0  # the fraction of the budget spent (rank 0's clock): the schedule's progress
        self.clock: Callable[[], float] = time.perf_counter  # the training clock (tests give a fake one)
        self.train_size = 0
        self._stop = False
        self.stop_exit_code = 130
        self._pending_sched: dict[str, Any] | None = None
        self.saved: tuple[int, int] | None = None  # (epoch, step in it) of the newest last.pt this run can resume
        self.resumes: list[dict[str, Any]] = []  # one record per time this run was resumed (summary.json)
        self.froze: dict[str, int] = {}  # progressive freezing: block name -> the epoch it froze after
        self._pending_rng: Any = None
        # the loop's state between hooks
        self.steps_per_epoch = 0
        self.step_stats: dict[str, torch.Tensor] = {}
        self.step_images = self.epoch_images = 0
        self.end_epoch = self.stop_fit = False  # end this epoch after the step / the run after this epoch
        self.limit_val_batches: int | None = None
        self.bar: Any = None
        # On one CPU process the loss is on the host already: the guard checks it after every step (free).
        # Elsewhere a check is a host sync, so it happens at the log interval.
        every_step = self.device.type == "cpu" and not self.dist.enabled
        self.guard = DivergenceGuard(self.run_dir, not cfg.dry_run, self.dist.is_main, every_step)
        self.callbacks = run_callbacks(self, callbacks)

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        return {
            "config": used_config(self.cfg), "meta": self.meta, "model": self.method.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.method.optimizers.items()},
            "schedulers": scheduler_states(self.schedulers),
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "best": self.best, "history": self.history,
            "epoch_sums": {k: v.detach().cpu() for k, v in self.epoch_sums.items()},
            "epoch_seen": self.epoch_seen, "train_seconds": self.train_seconds, "images_seen": self.images_seen,
            "val_seconds": self.val_seconds,
            "first_loss": self.guard.first_loss, "warnings": list(self.guard.warnings), "resumes": self.resumes,
            "froze": self.froze,
            "rng": dist.gather_objects(rng_state()),  # one state per rank (a collective)
        }

    def load_state(self, ckpt: dict[str, Any]) -> None:
        """Continue from a checkpoint written by `state()` (weights, optimizers, RNG, counters)."""
        load_method_state(self.method, ckpt["model"], "resume checkpoint")
        for k, sd in ckpt["optimizers"].items():
            self.method.optimizers[k].load_state_dict(sd)
        self._pending_sched = ckpt["schedulers"]
        self.epoch, self.step_in_epoch = ckpt["epoch"], ckpt["step_in_epoch"]
        self.global_step, self.best, self.history = ckpt["global_step"], ckpt["best"], ckpt["history"]
        self.epoch_sums = {k: v.to(self.device) for k, v in ckpt["epoch_sums"].items()}
        self.epoch_seen = ckpt["epoch_seen"]
        self.train_seconds, self.images_seen = ckpt["train_seconds"], ckpt["images_seen"]
        self.val_seconds = ckpt.get("val_seconds", 0.0)
        self.budget_spent = self.train_seconds / self.budget if self.budget else 0.0
        self.guard.first_loss, self.guard.warnings = ckpt.get("first_loss"), list(ckpt.get("warnings", []))
        self.resumes = list(ckpt.get("resumes", []))
        self.froze = dict(ckpt.get("froze", {}))
        for name in self.froze:  # blocks that progressive freezing had frozen
            self.method.freeze(int(name.removeprefix("block")) - 1)
        self.saved = (self.epoch, self.step_in_epoch)
        states = ckpt["rng"]
        self._pending_rng = states[self.dist.rank] if len(states) == self.dist.world_size else states[0]

    def save(self, name: str) -> None:
        """Write RUN_DIR/name atomically from rank 0 (every rank calls it; nothing in a dry run); last.pt keeps the
        one before it as previous.pt. A disk that cannot take it stops every rank with a StorageError (the hook that
        called this adds what is intact)."""
        if self.run_dir is None or self.cfg.dry_run:
            return
        state = self.state()
        failed: StorageError | None = None
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                save_checkpoint(self.run_dir / name, state, PREVIOUS if name == LAST else None)
            except StorageError as e:
                failed = e
        if dist.any_rank(failed is not None, self.device):  # also the barrier: every rank waits for the file
            raise failed or StorageError(f"rank 0 could not write {self.run_dir / name}")
        if name == LAST:
            self.saved = (self.epoch, self.step_in_epoch)

    def intact(self) -> str:
        """What a run stopped by a storage fault still has, and how to continue it."""
        if self.saved is None:
            return f"no {LAST} of this run was written yet: nothing to resume"
        epoch, step = self.saved
        where = f"epoch {epoch + 1} step {step}" if step else f"the end of epoch {epoch}"
        return (f"{self.run_dir / LAST} (at {where}) and every earlier file are intact; free space, then continue "
                f"with: ffvision train --resume {self.run_dir}")

    def request_stop(self, exit_code: int = 130) -> None:
        """Stop after the current step, save last.pt and raise TrainingInterrupted (with this exit status)."""
        self._stop = True
        self.stop_exit_code = exit_code

    def _loader(self, dataset: Dataset, batch_size: int, sampler: Sampler | None, seed: int) -> DataLoader:
        """A DataLoader of this run (workers, pinning, this rank's shard; worker seeds from `seed`)."""
        return make_loader(dataset, batch_size, sampler, seed, self.num_workers, self.device, self.dist)

    # ------------------------------------------------------------------ loops
    @property
    def warnings(self) -> list[str]:
        """Divergence warnings of this run (summary.json records them)."""
        return self.guard.warnings

    def fit(self, train_set: Dataset, val_set: Dataset) -> dict[str, Any]:
        """Train for cfg.epochs (from where a resumed run left off); returns the best record."""
        self.train_size = len(train_set)
        self.steps_per_epoch = math.ceil(math.ceil(len(train_set) / self.dist.world_size) / self.batch_size)
        self._start_schedules()
        handler = StopSignals(self) if threading.current_thread() is threading.main_thread() else None
        self._call("on_fit_start")
        try:
            while self._more_epochs() and not self.stop_fit:
                self._train_epoch(train_set)
                self._end_epoch(val_set)
        finally:
            if handler is not None:
                handler.restore()
        return self.best

    def _more_epochs(self) -> bool:
        """Whether another epoch starts: epochs left, or time left in the budget."""
        return self.epoch < self.cfg.epochs if self.budget is None else self.train_seconds < self.budget

    def planned_epochs(self) -> int:
        """The epochs of this run: cfg.epochs, or under a time budget those the budget allows at the speed so far
        (at least the current one)."""
        if self.budget is None:
            return self.cfg.epochs
        if not self.images_seen or not self.train_seconds:
            return self.epoch + 1
        per_epoch = self.train_seconds / self.images_seen * self.train_size
        return max(self.epoch + 1, round(self.budget / per_epoch))

    @property
    def epochs_label(self) -> str:
        """The run's length as progress lines show it: '10', or '~12' under a time budget."""
        return str(self.cfg.epochs) if self.budget is None else f"~{self.planned_epochs()}"

    def _spend(self, epoch_start: float) -> None:
        """Under a time budget: the fraction spent after this step (rank 0's clock decides for every rank); the
        epoch and the run end once it is all spent."""
        elapsed = self.train_seconds + self.clock() - epoch_start
        if self.dist.enabled:  # every rank follows the same schedule and stops at the same step
            elapsed = dist.max_over_ranks(elapsed if self.dist.is_main else 0.0, self.device)
        self.budget_spent = elapsed / self.budget
        if self.budget_spent >= 1.0:
            self.end_epoch = self.stop_fit = True

    def _train_epoch(self, train_set: Dataset) -> None:
        """One (possibly resumed) epoch of training steps; the hooks run after each step and at the log interval."""
        cfg = self.cfg
        sampler = EpochSampler(len(train_set), cfg.seed, self.epoch, self.step_in_epoch * self.batch_size,
                               self.dist.rank, self.dist.world_size)
        loader = self._loader(train_set, self.batch_size, sampler,
                              (cfg.seed * 7919 + self.epoch) * 131 + self.dist.rank)
        self.bar = tqdm(loader, total=self.steps_per_epoch, initial=self.step_in_epoch, leave=False,
                        dynamic_ncols=True, desc=f"epoch {self.epoch + 1}/{self.epochs_label}",
                        disable=self.progress_off)
        self.epoch_images, self.end_epoch, t0 = 0, False, self.clock()
        self.method.start_epoch(self.epoch, self.planned_epochs())
        self._call("on_train_epoch_start")
        try:
            for x, y in self.bar:
                x, y = self._to_device(x, y)
                self.step_stats = self.pipeline.train_step(x, y) if self.pipeline else self.method.train_step(x, y)
                if self.budget is not None:
                    self._spend(t0)
                self._count_step(y.shape[0])
                self._call("on_train_batch_end")
                if self.global_step % cfg.log_interval == 0:
                    self._call("on_log_interval", *self._running_means())  # the only host sync inside the epoch
                if self.end_epoch or self._stop_requested():
                    break
        except RuntimeError:
            if not self._stop:  # a DataLoader worker killed by Ctrl-C surfaces as RuntimeError
                raise
        finally:
            self.bar.close()
            self.train_seconds += self.clock() - t0
            self.images_seen += self.epoch_images * self.dist.world_size  # all ranks together
        if self._stop:
            self._call("on_interrupt")
            where = self.run_dir / "last.pt" if self.run_dir else "nothing (no run directory)"
            raise TrainingInterrupted(f"interrupted at epoch {self.epoch + 1} step {self.step_in_epoch}; "
                                      f"saved {where}; continue with: ffvision train --resume {self.run_dir}",
                                      self.stop_exit_code)

    def _end_epoch(self, val_set: Dataset) -> None:
        """The epoch's means, the schedules, validation and the epoch's record; then the hooks (files, checkpoints,
        the epoch's line)."""
        sums, n = dist.reduce_sums(self.epoch_sums, self.epoch_seen, self.device)  # one sync per epoch
        n = max(1.0, n)
        self._call("on_train_epoch_end", float(sums["loss_sum"]) / n, float(sums["correct"]) / n)
        if self.cfg.scheduler_interval == "epoch" and self.budget is None:
            for s in self.schedulers.values():
                s.step()
        t0 = time.perf_counter()
        val = self.method.select_on_validation(self.evaluate(self.val_subset(val_set), "val", self.limit_val_batches))
        self.val_seconds += time.perf_counter() - t0
        release_freed_memory()  # the epoch's freed heap back to the kernel, where the CLI keeps it (train/heap.py)
        strategy = select_strategy(val.strategies, self.cfg.strategy, self.method.default_strategy)
        record = {
            "epoch": self.epoch + 1,
            "train_loss": float(sums["loss_sum"]) / n,
            "train_accuracy": float(sums["correct"]) / n,
            "train_layer_loss": (sums["layer_loss_sum"] / n).tolist(),
            "train_layer_accuracy": (sums["layer_correct"] / n).tolist(),
            "val_accuracy": val.strategies[strategy],  # of the strategy chosen on validation (or given)
            "val_strategy": strategy,
            "val_accuracy_by_strategy": val.strategies,
            "val_layer_accuracy": val.layers,
            "lr": {k: s.get_last_lr()[0] for k, s in self.schedulers.items()},
            "train_seconds_total": self.train_seconds,
            "val_seconds_total": self.val_seconds,
            "images_seen": self.images_seen,
            "train_images_per_second": self.images_seen / max(self.train_seconds, 1e-9),
            # this process's memory: resident, and what its C heap has handed out (a leak grows both)
            "resident_mib": round(rss / 2**20, 1) if (rss := resident_bytes()) is not None else None,
            "heap_in_use_mib": round(heap / 2**20, 1) if (heap := heap_in_use_bytes()) is not None else None,
        }
        self.history.append(record)
        self.epoch += 1
        self.step_in_epoch, self.epoch_sums, self.epoch_seen = 0, {}, 0
        improved = record["val_accuracy"] > self.best["val_accuracy"]
        if improved:
            self.best = {"val_accuracy": record["val_accuracy"], "epoch": record["epoch"], "strategy": strategy}
        self._call("on_validation_end", record, improved)

    # ------------------------------------------------------------------ the loop's parts
    def _call(self, hook: str, *args: Any) -> None:
        """Call one hook of every callback, in order (a run file a callback cannot write says what is intact)."""
        for cb in self.callbacks:
            try:
                getattr(cb, hook)(self, *args)
            except StorageError as e:
                raise StorageError(f"{e}; {self.intact()}") from None

    def _start_schedules(self) -> None:
        """Schedulers for this run's length (a resumed run's restored), then a resumed run's RNG state."""
        self.schedulers = make_schedulers(self.method.optimizers, self.cfg, self.steps_per_epoch, self.schedulers,
                                          (lambda: self.budget_spent) if self.budget is not None else None)
        if self._pending_sched:
            restore_schedulers(self.schedulers, self._pending_sched)
            self._pending_sched = None
        if self._pending_rng is not None:
            set_rng_state(self._pending_rng)  # last, so nothing above consumes random numbers
            self._pending_rng = None

    def _count_step(self, images: int) -> None:
        """Add a step's on-device sums to the epoch's; advance the counters and a per-step schedule."""
        for k, v in self.step_stats.items():
            self.epoch_sums[k] = self.epoch_sums[k] + v if k in self.epoch_sums else v
        self.step_images = images
        self.epoch_images += images
        self.epoch_seen += images
        self.step_in_epoch += 1
        self.global_step += 1
        if self.cfg.scheduler_interval == "step" or self.budget is not None:
            for s in self.schedulers.values():
                s.step()

    def _running_means(self) -> tuple[float, float]:
        """The epoch's loss and accuracy so far, over every process (a host sync)."""
        t = dist.all_reduce_sum(torch.stack([self.epoch_sums["loss_sum"].float().detach(),
                                             self.epoch_sums["correct"].float(),
                                             torch.tensor(float(self.epoch_seen), device=self.device)]))
        loss, correct, seen = t.tolist()
        return loss / seen, correct / seen

    def _stop_requested(self) -> bool:
        """Whether to stop after this step (a signal, `request_stop`); under torchrun every rank stops together,
        with the exit status of the rank that was signalled."""
        if self.dist.enabled:
            code = int(dist.max_over_ranks(self.stop_exit_code if self._stop else 0, self.device))
            self._stop = code > 0
            self.stop_exit_code = code or self.stop_exit_code
        return self._stop

    def val_subset(self, val_set: Dataset) -> Dataset:
        """The validation images evaluated each epoch (evaluation.val_subset)."""
        return val_subset(val_set, self.cfg.val_images, self.method.default_val_images)

    def evaluate(self, dataset: Dataset, desc: str = "eval", max_batches: int | None = None) -> Counts[float]:
        """Average every counter of `method.eval_counts` over a dataset (one host sync)."""
        loader = self._loader(dataset, self.cfg.eval_batch_size, None, 0)
        return evaluate(self.method, loader, self._to_device, desc, max_batches, self.progress_off,
                        select=desc == "val")
