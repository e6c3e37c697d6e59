"""The Trainer: feeds batches, steps schedulers, validates, checkpoints, logs.

It knows nothing about goodness: a method's `train_step` returns on-device sums and its
`eval_counts` returns on-device counts; the Trainer adds them up and syncs with the host
only at the log interval and at the end of an epoch.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from tqdm import tqdm

from ffvision.config import TrainConfig
from ffvision.core.metrics import Counts
from ffvision.errors import TrainingDiverged, TrainingInterrupted
from ffvision.methods import used_config
from ffvision.methods.base import LocalMethod
from ffvision.train import distributed as dist
from ffvision.train.checkpoint import load_method_state, save_checkpoint
from ffvision.train.devices import cpu_has_native_bf16, resolve_device
from ffvision.train.evaluation import evaluate, select_strategy
from ffvision.train.outputs import RunLog, SigintHandler
from ffvision.train.rngstate import rng_state, set_rng_state
from ffvision.train.samplers import EpochSampler, ShardSampler
from ffvision.train.schedule import WarmupCosine


class Trainer:
    """Runs a LocalMethod over datasets: epochs, schedules, validation, checkpoints, logs."""

    def __init__(
        self,
        method: LocalMethod,
        cfg: TrainConfig,
        run_dir: str | Path | None,
        meta: dict[str, Any] | None = None,
        callbacks: list[Callable[[Trainer], None]] | None = None,
        show_progress: bool | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist.current()
        self.pipeline = None
        if cfg.pipeline_devices:
            from ffvision.errors import ConfigError
            from ffvision.train.pipeline import parse_devices

            if self.dist.enabled:
                raise ConfigError("--pipeline-devices cannot be combined with torchrun data parallelism")
            pipeline_devices = parse_devices(cfg.pipeline_devices)
            cfg_device = str(pipeline_devices[0])
        else:
            cfg_device = cfg.device
        self.device = resolve_device(cfg_device)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        if cfg.batch_size % self.dist.world_size:
            from ffvision.errors import ConfigError

            raise ConfigError(f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                              f"{self.dist.world_size} processes")
        self.batch_size = cfg.batch_size // self.dist.world_size  # per process
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.log = RunLog(self.run_dir) if self.run_dir is not None else None
        self.meta = meta or {}
        self.callbacks = callbacks or []  # called after every step with the trainer
        self.show_progress = show_progress
        on_cuda = self.device.type == "cuda"
        method.to(self.device)
        if cfg.channels_last if cfg.channels_last is not None else on_cuda:
            method.to(memory_format=torch.channels_last)
            self.channels_last = True
        else:
            self.channels_last = False
        if cfg.amp == "bf16" or (cfg.amp == "auto" and (on_cuda or (self.device.type == "cpu" and method.cpu_bf16
                                                                      and cpu_has_native_bf16()))):
            method.amp_dtype = torch.bfloat16
        method.build_optimizers()  # after .to(): optimizer state must live on the device
        if cfg.compile:
            for block in method.blocks:
                block.compile()  # in place: parameter names (and checkpoints) stay the same
        if self.dist.enabled:
            method.distribute([self.device.index] if on_cuda else None)
        if cfg.pipeline_devices:
            from ffvision.train.pipeline import PipelineRunner

            self.pipeline = PipelineRunner(method, pipeline_devices, cfg.pipeline_micro_batches)
        self.method = method
        self.num_workers = cfg.num_workers if cfg.num_workers is not None else (0 if not on_cuda else 8)
        self.schedulers: dict[str, torch.optim.lr_scheduler.LambdaLR] = {}
        self.epoch = 0  # completed epochs
        self.step_in_epoch = 0  # completed steps of the current epoch
        self.global_step = 0
        self.best: dict[str, Any] = {"val_accuracy": -1.0, "epoch": 0}
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, torch.Tensor] = {}
        self.epoch_seen = 0
        self.train_seconds = 0.0
        self.images_seen = 0
        self._stop = False
        self._good: dict[str, Any] | None = None  # the last state known to be finite (see _check_finite)
        self.first_loss: float | None = None  # mean loss of the first step: the scale a diverging loss is judged by
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ state
    def _make_schedulers(self, steps_per_epoch: int) -> None:
        """One warm-up + cosine schedule per optimizer, over steps or epochs."""
        per = steps_per_epoch if self.cfg.scheduler_interval == "step" else 1
        total = self.cfg.epochs * per
        warmup = int(round(self.cfg.warmup_epochs * per))
        for name, opt in self.method.optimizers.items():
            sched = self.schedulers.get(name)
            if sched is None:
                self.schedulers[name] = torch.optim.lr_scheduler.LambdaLR(
                    opt, WarmupCosine(total, warmup, self.cfg.min_lr_ratio))
            else:  # resumed: keep the step count, adopt the (possibly longer) schedule
                sched.lr_lambdas = [WarmupCosine(total, warmup, self.cfg.min_lr_ratio)]

    def state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly."""
        return {
            "config": used_config(self.cfg), "meta": self.meta, "model": self.method.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.method.optimizers.items()},
            "schedulers": {k: {kk: vv for kk, vv in s.state_dict().items() if kk != "lr_lambdas"}
                           for k, s in self.schedulers.items()},
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "best": self.best, "history": self.history,
            "epoch_sums": {k: v.detach().cpu() for k, v in self.epoch_sums.items()},
            "epoch_seen": self.epoch_seen, "train_seconds": self.train_seconds, "images_seen": self.images_seen,
            "first_loss": self.first_loss, "warnings": list(self.warnings),
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
        self.first_loss, self.warnings = ckpt.get("first_loss"), list(ckpt.get("warnings", []))
        states = ckpt["rng"]
        self._pending_rng = states[self.dist.rank] if len(states) == self.dist.world_size else states[0]

    def save(self, name: str) -> None:
        """Write RUN_DIR/name atomically from rank 0 (every rank calls it; nothing in a dry run)."""
        if self.run_dir is not None and not self.cfg.dry_run:
            state = self.state()
            if self.dist.is_main:
                save_checkpoint(self.run_dir / name, state)
            dist.barrier()

    def request_stop(self) -> None:
        """Stop after the current step, save last.pt and raise TrainingInterrupted."""
        self._stop = True

    # ------------------------------------------------------------------ data
    def _loader(self, dataset: Dataset, batch_size: int, sampler: Sampler | None, seed: int) -> DataLoader:
        """A DataLoader whose worker seeds derive from `seed` (deterministic per epoch and rank)."""
        if sampler is None:
            sampler = ShardSampler(len(dataset), self.dist.rank, self.dist.world_size)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, shuffle=False,
                          num_workers=self.num_workers, pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(seed))

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 batch -> float [0, 1] on the device (channels_last on CUDA)."""
        x = x.to(self.device, non_blocking=True)
        x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=True)

    # ------------------------------------------------------------------ loops
    def _check_finite(self, value: float, where: str) -> None:
        """Stop with TrainingDiverged if the loss is NaN/inf; last.pt then holds the last good state."""
        if math.isfinite(value):
            return
        msg = f"loss became {value} at {where}; training stopped"
        if self.run_dir is not None and self._good is not None and not self.cfg.dry_run:
            if self.dist.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_checkpoint(self.run_dir / "last.pt", self._good)
            msg += (f"; {self.run_dir / 'last.pt'} holds the last good state (epoch {self._good['epoch'] + 1} "
                    f"step {self._good['step_in_epoch']})")
        best = self.run_dir / "best.pt" if self.run_dir else None
        if best is not None and best.exists():
            msg += f"; the best checkpoint {best} (epoch {self.best['epoch']}) is intact"
        raise TrainingDiverged(msg + ". Try a lower --lr.")

    def _snapshot(self) -> None:
        """Keep a copy of the current state if its weights are finite: what last.pt gets if the loss diverges."""
        params = list(self.method.parameters())
        if params and not bool(torch.stack([torch.isfinite(p).all() for p in params]).all()):  # one host sync
            return  # an update broke the weights before the loss showed it: keep the older state
        self._good = copy.deepcopy(self.state())

    def fit(self, train_set: Dataset, val_set: Dataset) -> dict[str, Any]:
        """Train for cfg.epochs (from where a resumed run left off); returns the best record."""
        cfg = self.cfg
        steps_per_epoch = math.ceil(math.ceil(len(train_set) / self.dist.world_size) / self.batch_size)
        self._make_schedulers(steps_per_epoch)
        if getattr(self, "_pending_sched", None):
            for k, sd in self._pending_sched.items():
                sched = self.schedulers[k]
                lambdas = sched.lr_lambdas
                sched.load_state_dict({**sd, "lr_lambdas": [None] * len(lambdas)})
                sched.lr_lambdas = lambdas  # the current schedule (epochs may have been extended)
                # Building LambdaLR reset the optimizer's lr to step 0's; put back this step's.
                for group, base, lam in zip(sched.optimizer.param_groups, sched.base_lrs, lambdas):
                    group["lr"] = base * lam(sched.last_epoch)
                sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]
            self._pending_sched = None
        if getattr(self, "_pending_rng", None) is not None:
            set_rng_state(self._pending_rng)  # last, so nothing above consumes random numbers
            self._pending_rng = None
        if self.run_dir is not None and not cfg.dry_run and self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.log.rewrite(self.history)
        handler = SigintHandler(self) if threading.current_thread() is threading.main_thread() else None
        self._snapshot()
        try:
            while self.epoch < cfg.epochs:
                self._train_epoch(train_set, steps_per_epoch)
                if cfg.dry_run:
                    val = self.evaluate(val_set, "val", max_batches=1)
                    self.history.append({"epoch": 1, "val": val})
                    break
                self._end_epoch(val_set)
        finally:
            if handler is not None:
                handler.restore()
        return self.best

    def _train_epoch(self, train_set: Dataset, steps_per_epoch: int) -> None:
        """One (possibly resumed) epoch of train steps."""
        cfg, method = self.cfg, self.method
        sampler = EpochSampler(len(train_set), cfg.seed, self.epoch, self.step_in_epoch * self.batch_size,
                               self.dist.rank, self.dist.world_size)
        loader = self._loader(train_set, self.batch_size, sampler,
                              (cfg.seed * 7919 + self.epoch) * 131 + self.dist.rank)
        bar = tqdm(loader, total=steps_per_epoch, initial=self.step_in_epoch, leave=False, dynamic_ncols=True,
                   desc=f"epoch {self.epoch + 1}/{cfg.epochs}", disable=self._progress_disabled())
        t0 = last_line = time.perf_counter()
        # Without a terminal tqdm is silent: a line every 30 s says the epoch is alive (log files).
        lines = self._progress_disabled() is None and bar.disable and self.dist.is_main
        seen = 0
        # On one CPU process the loss is on the host already: check it after every step (free). Elsewhere
        # a check is a host sync, so it happens at the log interval.
        every_step = self.device.type == "cpu" and not self.dist.enabled
        try:
            for x, y in bar:
                x, y = self._to_device(x, y)
                stats = self.pipeline.train_step(x, y) if self.pipeline else method.train_step(x, y)
                if every_step or self.first_loss is None:
                    step_loss = float(stats["loss_sum"]) / max(1, y.shape[0])
                    if self.first_loss is None and math.isfinite(step_loss):
                        self.first_loss = step_loss
                    self._check_finite(step_loss, f"epoch {self.epoch + 1} step {self.step_in_epoch + 1}")
                for k, v in stats.items():
                    self.epoch_sums[k] = self.epoch_sums[k] + v if k in self.epoch_sums else v
                seen += y.shape[0]
                self.epoch_seen += y.shape[0]
                self.step_in_epoch += 1
                self.global_step += 1
                if cfg.scheduler_interval == "step":
                    for s in self.schedulers.values():
                        s.step()
                for cb in self.callbacks:
                    cb(self)
                if self.global_step % cfg.log_interval == 0:  # the only host sync inside the epoch
                    t = dist.all_reduce_sum(torch.stack([self.epoch_sums["loss_sum"].float().detach(),
                                                         self.epoch_sums["correct"].float(),
                                                         torch.tensor(float(self.epoch_seen), device=self.device)]))
                    loss, acc, seen_all = t.tolist()
                    self._check_finite(loss, f"epoch {self.epoch + 1} (by step {self.step_in_epoch})")
                    self._snapshot()
                    bar.set_postfix(loss=f"{loss / seen_all:.4f}", acc=f"{acc / seen_all:.3f}")
                    if lines and time.perf_counter() - last_line > 30:
                        last_line = time.perf_counter()
                        print(f"epoch {self.epoch + 1}/{cfg.epochs}: step {self.step_in_epoch}/{steps_per_epoch}, "
                              f"loss {loss / seen_all:.4f}, train acc {acc / seen_all:.3f}, "
                              f"{seen / (last_line - t0):.0f} img/s", flush=True)
                if cfg.dry_run:
                    break
                # Under torchrun a Ctrl-C must stop every rank after the same step.
                if dist.any_rank(self._stop, self.device) if self.dist.enabled else self._stop:
                    self._stop = True
                    break
        except RuntimeError:
            if not self._stop:  # a DataLoader worker killed by Ctrl-C surfaces as RuntimeError
                raise
        finally:
            bar.close()
            dt = time.perf_counter() - t0
            self.train_seconds += dt
            self.images_seen += seen * self.dist.world_size  # all ranks together
        if self._stop and not cfg.dry_run:
            loss = float(dist.all_reduce_sum(self.epoch_sums.get("loss_sum", torch.zeros((), device=self.device))
                                             .float().detach().clone()))
            self._check_finite(loss, f"epoch {self.epoch + 1}")
            if self.run_dir is not None and self.dist.is_main:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            self.save("last.pt")
            where = self.run_dir / "last.pt" if self.run_dir else "nothing (no run directory)"
            raise TrainingInterrupted(f"interrupted at epoch {self.epoch + 1} step {self.step_in_epoch}; "
                                      f"saved {where}; continue with: ffvision train --resume {self.run_dir}")

    def _end_epoch(self, val_set: Dataset) -> None:
        """Epoch bookkeeping: validation, metrics.jsonl, curves, last.pt and best.pt."""
        keys = sorted(self.epoch_sums)
        flat = torch.cat([self.epoch_sums[k].detach().float().reshape(-1) for k in keys]
                         + [torch.tensor([float(self.epoch_seen)], device=self.device)])
        flat = dist.all_reduce_sum(flat).cpu()  # one sync per epoch (and one all-reduce under torchrun)
        sums, pos = {}, 0
        for k in keys:
            size = self.epoch_sums[k].numel()
            sums[k] = flat[pos:pos + size].reshape(self.epoch_sums[k].shape)
            pos += size
        n = max(1.0, float(flat[-1]))
        train_loss = float(sums["loss_sum"]) / n
        self._check_finite(train_loss, f"the end of epoch {self.epoch + 1}")
        train_acc = float(sums["correct"]) / n
        if (self.first_loss and train_loss > 100 * abs(self.first_loss)
                and train_acc < 1.5 / self.method.num_classes):
            warning = (f"epoch {self.epoch + 1}: the loss exploded ({train_loss:.3g}, over 100x its first value "
                       f"{self.first_loss:.3g}) while training accuracy stays at chance ({train_acc:.3f}): the run "
                       "diverged; try a lower --lr")
            self.warnings.append(warning)
            if self.dist.is_main:
                tqdm.write(f"warning: {warning}")
        if self.cfg.scheduler_interval == "epoch":
            for s in self.schedulers.values():
                s.step()
        val = self.method.select_on_validation(self.evaluate(self.val_subset(val_set), "val"))
        by_strategy = val.strategies
        strategy = select_strategy(by_strategy, self.cfg.strategy, self.method.default_strategy)
        record = {
            "epoch": self.epoch + 1,
            "train_loss": train_loss,
            "train_accuracy": train_acc,
            "train_layer_loss": (sums["layer_loss_sum"] / n).tolist(),
            "train_layer_accuracy": (sums["layer_correct"] / n).tolist(),
            "val_accuracy": by_strategy[strategy],  # of the strategy chosen on validation (or given)
            "val_strategy": strategy,
            "val_accuracy_by_strategy": by_strategy,
            "val_layer_accuracy": val.layers,
            "lr": {k: s.get_last_lr()[0] for k, s in self.schedulers.items()},
            "train_seconds_total": self.train_seconds,
            "train_images_per_second": self.images_seen / max(self.train_seconds, 1e-9),
        }
        self.history.append(record)
        self.epoch += 1
        self.step_in_epoch, self.epoch_sums, self.epoch_seen = 0, {}, 0
        improved = record["val_accuracy"] > self.best["val_accuracy"]
        if improved:
            self.best = {"val_accuracy": record["val_accuracy"], "epoch": record["epoch"], "strategy": strategy}
        if self.run_dir is not None:
            if self.dist.is_main:
                self.log.append(record)
            if improved:
                self.save("best.pt")
            self.save("last.pt")
            if self.dist.is_main:
                self.log.plot(self.history)
        by = "  ".join(f"{k} {v:.4f}" for k, v in record["val_accuracy_by_strategy"].items())
        if self.dist.is_main:
            tqdm.write(f"epoch {record['epoch']}/{self.cfg.epochs}  loss {train_loss:.4f}  "
                   f"train acc {record['train_accuracy']:.4f}  val acc [{by}]  "
                   f"{record['train_images_per_second']:.0f} img/s")

    def val_subset(self, val_set: Dataset) -> Dataset:
        """The validation images evaluated each epoch: the first `val_images` (the split is shuffled)."""
        limit = self.cfg.val_images if self.cfg.val_images is not None else self.method.default_val_images
        return val_set if limit is None or limit >= len(val_set) else Subset(val_set, range(limit))

    def evaluate(self, dataset: Dataset, desc: str = "eval", max_batches: int | None = None) -> Counts[float]:
        """Average every counter of `method.eval_counts` over a dataset (one host sync)."""
        loader = self._loader(dataset, self.cfg.eval_batch_size, None, 0)
        return evaluate(self.method, loader, self._to_device, desc, max_batches, self._progress_disabled(),
                        select=desc == "val")

    # ------------------------------------------------------------------ outputs
    def _progress_disabled(self) -> bool | None:
        """None lets tqdm decide (off when stderr is not a terminal); off on ranks other than 0."""
        if not self.dist.is_main:
            return True
        return None if self.show_progress is None else not self.show_progress
