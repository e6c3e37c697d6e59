"""Entry points behind the CLI: a whole training run, and evaluating a checkpoint."""

from __future__ import annotations

import dataclasses
import logging
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ffvision import kernels
from ffvision.config import TrainConfig, apply_overrides, checked, validate
from ffvision.core.metrics import Counts
from ffvision.data import build_splits, native_image_size
from ffvision.data.datasets import DataSplits
from ffvision.errors import ConfigError, DataError, ImageTooSmall
from ffvision.io import write_json
from ffvision.methods import (
    LocalMethod,
    create_method,
    method_class,
    method_kwargs,
    used_config,
)
from ffvision.train.budget import default_batch_size, default_epochs
from ffvision.train.callbacks import Callback
from ffvision.train.checkpoint import (
    LAST,
    PREVIOUS,
    has_checkpoint,
    load_checkpoint,
    load_method_state,
    load_resumable,
    set_aside_damaged,
)
from ffvision.train.devices import batch_to_device, cpu_has_native_bf16
from ffvision.train.distributed import (
    DistInfo,
    barrier,
    broadcast_object,
    dist_initialized,
    init_distributed,
    leave_distributed,
)
from ffvision.train.outputs import RunLogFile, check_tensorboard
from ffvision.train.trainer import Trainer

log = logging.getLogger(__name__)

# Flags that may change when a run is resumed; anything else would make it a different run.
RESUMABLE = {"epochs", "time_budget", "device", "num_workers", "log_interval", "eval_batch_size", "dry_run", "download",
             "data_dir", "force", "tensorboard", "kernels", "checkpoint_every"}


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) in one place."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


FROM_DATA = ("batch_size", "epochs")  # chosen from the training set when not given (sized_for_data)

RUN_FILES = (LAST, PREVIOUS, "best.pt", "summary.json", "metrics.jsonl", "curves.png")


def check_run_dir(run_dir: Path, force: bool = False) -> None:
    """ConfigError unless run_dir can hold a new run: not a file; no run's files in it unless `force`."""
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file, not a folder; choose another --out")
    if has_checkpoint(run_dir) and not force:
        raise ConfigError(f"{run_dir} already holds a run; continue it with --resume {run_dir}, choose another "
                          "--out, or pass --force to start over in it")
    found = [f for f in RUN_FILES if (run_dir / f).exists()]
    if found and not force:
        raise ConfigError(f"{run_dir} holds files of another run ({', '.join(found)}); choose another --out, or "
                          "pass --force to replace them")


def clear_checkpoints(run_dir: Path) -> None:
    """Remove the checkpoints of the run a --force'd new one replaces, so that no later fallback can resume it."""
    for name in (LAST, PREVIOUS, LAST + ".damaged"):
        (run_dir / name).unlink(missing_ok=True)


def default_run_dir(cfg: TrainConfig) -> Path:
    """runs/<method>-<model>-<dataset>-<YYYYmmdd-HHMMSS>."""
    return Path("runs") / f"{cfg.method}-{cfg.model}-{cfg.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"


@dataclasses.dataclass
class Resumed:
    """What a resumed run continues from: the checkpoint (previous.pt when last.pt was damaged) and the settings
    the resume changed."""

    checkpoint: Path
    ckpt: dict[str, Any]
    changed: dict[str, tuple[Any, Any]]  # option -> (as saved, now)
    damaged: str | None = None  # why last.pt could not be read, when the run fell back to previous.pt

    def record(self) -> dict[str, Any]:
        """summary.json's (and the checkpoint's) record of this resume."""
        c = self.ckpt
        return {"run_dir": str(self.checkpoint.parent), "checkpoint": str(self.checkpoint), "epoch": c["epoch"] + 1,
                "step": c["step_in_epoch"], "steps_per_epoch": c.get("steps_per_epoch"),
                "images_seen": c["images_seen"], "train_seconds": round(c["train_seconds"], 1),
                "changed": {k: list(v) for k, v in self.changed.items()}, "damaged": self.damaged,
                "date": time.strftime("%Y-%m-%d %H:%M:%S")}

    def lines(self) -> list[str]:
        """The resumed run's first lines: what it continues, from where, and what changed."""
        r = self.record()
        of = f" of {r['steps_per_epoch']}" if r["steps_per_epoch"] else ""
        where = f"epoch {r['epoch']} step {r['step']}{of}" if r["step"] else f"the start of epoch {r['epoch']}"
        changed = ", ".join(f"{k} {a} -> {b}" for k, (a, b) in self.changed.items()) or "none"
        return [f"resuming {r['run_dir']} from {self.checkpoint.name} at {where} ({r['images_seen']:,} images seen, "
                f"{_duration(r['train_seconds'])} of training)", f"settings changed on resume: {changed}"]


def _duration(seconds: float) -> str:
    """Seconds as '1 h 02 min', '3 min 05 s' or '12 s'."""
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def resume_config(run_dir: Path, overrides: dict[str, Any]) -> tuple[TrainConfig, Resumed]:
    """Config and checkpoint of a run to resume (last.pt, else previous.pt); only RESUMABLE keys may change."""
    path, ckpt, damaged = load_resumable(run_dir)
    cfg = apply_overrides(TrainConfig(), ckpt["config"], source=f"{path} config")
    saved = used_config(cfg)
    changed = sorted(k for k, v in overrides.items() if k not in RESUMABLE and saved.get(k) != v)
    if changed:
        raise ConfigError(f"cannot change {', '.join(changed)} when resuming {run_dir}; "
                          f"only {', '.join(sorted(RESUMABLE))} may change")
    cfg = apply_overrides(cfg, {k: v for k, v in overrides.items() if k in RESUMABLE})
    now = used_config(cfg)
    differ = {k: (saved.get(k), now.get(k)) for k in sorted(RESUMABLE) if k in overrides and saved.get(k) != now.get(k)
              and k not in ("force", "dry_run")}
    return dataclasses.replace(cfg, out=str(run_dir)), Resumed(path, ckpt, differ, damaged)


def auto_resume(cfg: TrainConfig, overrides: dict[str, Any] | None
                ) -> tuple[TrainConfig, str | None, dict[str, Any] | None]:
    """--resume auto: (cfg, the run to resume, its overrides) when cfg.out holds a last.pt, whose settings must
    be cfg's but for those a resumed run may change; else cfg as a new run that may replace the files an attempt
    that never saved a checkpoint left there."""
    if not cfg.out:
        raise ConfigError("--resume auto needs --out: the run directory to continue, or to start the run in")
    if broadcast_object(has_checkpoint(Path(cfg.out))):  # rank 0 looks; every rank does the same
        wanted = {k: v for k, v in used_config(checked(cfg)).items()
                  if k != "out" and not (k in FROM_DATA and v is None)}  # chosen from the data: as saved
        return cfg, cfg.out, {**wanted, **(overrides or {})}
    return dataclasses.replace(cfg, force=True), None, None


def train(cfg: TrainConfig, resume: str | Path | None = None, overrides: dict[str, Any] | None = None,
          callbacks: list[Callback | Callable[[Trainer], None]] | None = None,
          show_progress: bool | None = None) -> dict[str, Any]:
    """Train, select on validation, test once with the best model; returns summary.json's dict.

    resume: a run directory to continue from its last.pt (`overrides`: the options that may change), or
    "auto": continue cfg.out's run if it has a last.pt, else start cfg as a new run there (a restarted job).
    Under torchrun the process group is joined here and left on the way out, however the run ends.
    Progress and the final report go to `logging.getLogger("ffvision")` (and RUN_DIR/train.log).
    """
    was_in_group = dist_initialized()
    info = init_distributed(cfg.device)
    joined = dist_initialized() and not was_in_group
    try:
        return _checked_train(cfg, resume, overrides, callbacks, show_progress, info)
    finally:
        if joined:
            leave_distributed()


def _checked_train(cfg: TrainConfig, resume: str | Path | None, overrides: dict[str, Any] | None,
                   callbacks: list[Callback | Callable[[Trainer], None]] | None, show_progress: bool | None,
                   info: DistInfo) -> dict[str, Any]:
    """`train` in the process group: the config checked, the run directory opened, then `_train`."""
    if resume == "auto":
        cfg, resume, overrides = auto_resume(cfg, overrides)
    resumed = None
    if resume is not None:
        cfg, resumed = resume_config(Path(resume), overrides or {})
    cfg = checked(cfg)
    check_model_options(cfg)
    if resumed is None and not cfg.dry_run and cfg.out:
        check_run_dir(Path(cfg.out), cfg.force)  # before any work
        if cfg.force and info.is_main:
            clear_checkpoints(Path(cfg.out))
    check_tensorboard(cfg.tensorboard and not cfg.dry_run)
    run_dir = None if cfg.dry_run else Path(cfg.out) if cfg.out else broadcast_object(default_run_dir(cfg))
    cfg = dataclasses.replace(cfg, out=str(run_dir) if run_dir else None)
    log_file = RunLogFile(run_dir, append=resumed is not None) if run_dir is not None and info.is_main else None
    if resumed is not None and info.is_main:  # the resumed run's first lines, on the terminal and in train.log
        if resumed.damaged:
            aside = set_aside_damaged(resumed.checkpoint.parent)
            log.warning("%s; resuming from the checkpoint before it, %s (the damaged file is kept as %s)",
                        resumed.damaged, resumed.checkpoint, aside.name)
        for line in resumed.lines():
            log.info(line)
    was = kernels.enabled()
    kernels.set_enabled(cfg.kernels == "on")
    try:
        return _train(cfg, resumed, run_dir, info, callbacks, show_progress)
    finally:
        kernels.set_enabled(was)
        if log_file is not None:
            log_file.close()


def _train(cfg: TrainConfig, resumed: Resumed | None, run_dir: Path | None, info: DistInfo,
           callbacks: list[Callback | Callable[[Trainer], None]] | None, show_progress: bool | None) -> dict[str, Any]:
    """The body of `train` once the config is checked: data, method, trainer, fit and the test."""
    seed_everything(cfg.seed)  # identical initial weights on every rank
    image_size = cfg.image_size
    if image_size is None and method_class(cfg.method).native_image_size:
        image_size = native_image_size(cfg.dataset)
    if info.is_main:
        log.info("loading %s%s", cfg.dataset, f" from {cfg.data_dir}" if cfg.data_dir else "")

    def load(size: int | None) -> DataSplits:
        return build_splits(cfg.dataset, cfg.data_dir, download=cfg.download, image_size=size,
                            val_size=cfg.val_size, split_seed=cfg.split_seed, train_subset=cfg.train_subset,
                            augment=cfg.augment)

    method, data = build_method(cfg, load(image_size), load)
    cfg = sized_for_data(cfg, len(data.train), info.world_size, data.notes)
    if info.is_main:
        log.info(data.describe())
        warn_few_steps(cfg, len(data.train))
    check_strategy(method, cfg.strategy)
    if info.enabled:  # different dropout masks and negatives on each rank, from here on
        torch.manual_seed(cfg.seed + 1_000_003 * info.rank)
    trainer = Trainer(method, cfg, run_dir, data.meta(), callbacks=callbacks, show_progress=show_progress)
    if info.is_main:
        amp = method.amp_dtype
        log.info("device: %s, %d threads, %s (--amp %s), %s", trainer.device, torch.get_num_threads(),
                 "bf16 autocast" if amp else "float32", cfg.amp, "channels_last" if trainer.channels_last else "NCHW")
        if amp and trainer.device.type == "cpu" and not cpu_has_native_bf16():
            log.warning("this CPU has no native bf16 (avx512_bf16 or AMX), so bf16 autocast is emulated here and "
                        "far slower than float32; --amp auto (or off) trains in float32")
    if resumed is not None:
        trainer.load_state(resumed.ckpt)
        trainer.resumes.append(resumed.record())
    trainer.fit(data.train, data.val)
    if cfg.dry_run:
        test = trainer.evaluate(data.test, "test", max_batches=1)
        if info.is_main:
            import yaml

            used = {k: v for k, v in used_config(cfg).items() if k not in ("dry_run", "out", "force")}
            log.info("# the resolved config (a recipe for --config):\n%s",
                     yaml.safe_dump(used, sort_keys=False, default_flow_style=False).rstrip())
            accs = {k: round(v, 4) for k, v in test.strategies.items()}
            log.info("dry run OK: one train step, one validation and one test batch (test batch accuracy %s)", accs)
        return {"dry_run": True, "val": trainer.history[-1]["val_accuracy_by_strategy"], "test": test}
    barrier()
    best = load_checkpoint(run_dir / "best.pt")  # select on validation, test once
    load_method_state(method, best["model"], f"{run_dir}/best.pt")
    if info.is_main:
        log.info("testing the best epoch (%d) on %s test images", trainer.best["epoch"], f"{len(data.test):,}")
    strategy = trainer.best.get("strategy", method.default_strategy)
    method.selected_strategy = strategy  # top-5 (counted in this pass) and predict follow the reported one
    t0 = time.perf_counter()
    test = trainer.evaluate(data.test, "test")
    test_seconds = time.perf_counter() - t0
    summary = {
        "method": cfg.method, "model": cfg.model, "dataset": data.name, "epochs": cfg.epochs or trainer.epoch,
        "num_train": len(data.train), "num_val": len(data.val), "num_test": len(data.test),
        "val_images_per_epoch": len(trainer.val_subset(data.val)),
        **report(method, test, strategy),
        "strategy_selected_on": "validation" if cfg.strategy == "auto" else "given",
        "val_accuracy_best": trainer.best["val_accuracy"], "best_epoch": trainer.best["epoch"],
        "data": data.info(),
        "diverged": bool(trainer.warnings), "warnings": list(trainer.warnings),
        "train_seconds": trainer.train_seconds, "val_seconds": trainer.val_seconds, "test_seconds": test_seconds,
        "time_budget_seconds": trainer.budget, "images_seen": trainer.images_seen,
        "epochs_reached": round(trainer.images_seen / max(1, len(data.train)), 3),
        "train_images_per_second": trainer.images_seen / max(trainer.train_seconds, 1e-9),
        "device": str(trainer.device), "processes": info.world_size, "torch_threads": torch.get_num_threads(),
        "amp_dtype": str(trainer.method.amp_dtype).removeprefix("torch.") if trainer.method.amp_dtype else "float32",
        "channels_last": trainer.channels_last,
        "resumed": trainer.resumes, "froze": trainer.froze,
        "config": used_config(cfg),
    }
    if info.is_main:
        write_json(run_dir / "summary.json", summary)
        log.info("\n".join(format_report(summary)))
        log.info("run directory: %s", run_dir)
    return summary


def build_method(cfg: TrainConfig, data: DataSplits, load: Callable[[int], DataSplits]
                 ) -> tuple[LocalMethod, DataSplits]:
    """The run's method for its data. Images smaller than the model (or its label patterns) can take are resized
    to the smallest size it takes when the size was not given (tiny images in a folder), or to the method's
    `tiny_image_size` where it validated better there; a size given that is too small is a one-line error
    naming the size that works."""
    original = data.image_size
    for _ in range(4):  # each model part raises its own minimum: a few rounds at most
        seed_everything(cfg.seed)  # the same initial weights as a run given this size
        try:
            method = create_method(cfg.method, **method_kwargs(cfg, data.num_classes, data.in_channels,
                                                                data.image_size))
        except ImageTooSmall as e:
            if cfg.image_size is not None:
                raise ConfigError(f"{e}: pass --image-size {e.minimum} or more") from None
            data = load(e.minimum)
            data.notes.append(f"resized from the images' {original} px to {e.minimum}, the smallest {cfg.model} "
                              "takes here (--image-size to choose)")
            continue
        better = method.tiny_image_size
        if data.image_size == original or better is None or better <= data.image_size:
            return method, data
        data = load(better)  # tiny images: this method validated better at a larger size than the minimum
        data.notes.append(f"resized from the images' {original} px to {better}, where {cfg.method} validated "
                          "better than at the smallest size (--image-size to choose)")
    raise ConfigError(f"no image size found that {cfg.model} takes for {cfg.method}; pass --image-size")


def sized_for_data(cfg: TrainConfig, train_images: int, processes: int = 1, notes: list[str] | None = None
                   ) -> TrainConfig:
    """cfg with the batch size and epochs not given chosen from the training set's size (train/budget.py); each
    choice is said in `notes` (the run's data line and summary.json)."""
    resolved: dict[str, int] = {}
    if cfg.batch_size is None:
        resolved["batch_size"] = default_batch_size(train_images, processes)
    if cfg.epochs is None and cfg.time_budget is None:
        resolved["epochs"] = default_epochs(train_images)
    if not resolved:
        return cfg
    new = validate(dataclasses.replace(cfg, **resolved))
    chosen = " and ".join(f"{k.replace('_', ' ')} {v}" for k, v in resolved.items())
    flags = " / ".join(f"--{k.replace('_', '-')}" for k in resolved)
    steps = (f"{math.ceil(train_images / new.batch_size) * new.epochs:,} optimizer steps; " if new.epochs else
             f"{math.ceil(train_images / new.batch_size):,} steps an epoch; ")
    if notes is not None:
        notes.append(f"{chosen} from the {train_images:,} training images ({steps}{flags} to choose)")
    return new


FEW_STEPS = 500  # optimizer steps below which a run warns that it is short


def warn_few_steps(cfg: TrainConfig, train_images: int) -> None:
    """A warning, with the numbers and the flags, for a run of fewer than FEW_STEPS optimizer steps in all."""
    per_epoch = math.ceil(train_images / cfg.batch_size)
    if not cfg.dry_run and cfg.epochs is not None and per_epoch * cfg.epochs < FEW_STEPS:
        log.warning("a short run: %d optimizer steps in all (%d epochs x %d steps of batch %d over %s training "
                    "images); accuracy usually still rises past %d: raise --epochs or lower --batch-size",
                    per_epoch * cfg.epochs, cfg.epochs, per_epoch, cfg.batch_size, f"{train_images:,}", FEW_STEPS)


def check_model_options(cfg: TrainConfig) -> None:
    """ConfigError for a model option the chosen model does not take (--filters is the FF-CNNs')."""
    from ffvision.models.registry import model_takes

    if cfg.options.get("filters") is not None and not model_takes(cfg.model, "filters"):
        from ffvision.models import list_models

        takers = [m for m in list_models() if model_takes(m, "filters")]
        raise ConfigError(f"--filters does not apply to model {cfg.model!r}; it sets the width of {', '.join(takers)} "
                          "(use --width-mult for the others)")


def check_strategy(method: LocalMethod, strategy: str) -> None:
    """ConfigError unless `strategy` is auto or one of the method's prediction strategies."""
    if strategy != "auto" and strategy not in method.strategies:
        raise ConfigError(f"unknown strategy {strategy!r} for {method.name}; choose auto or one of: "
                          f"{', '.join(method.strategies)}")


def report(method: LocalMethod, counts: Counts[float], strategy: str | None = None) -> dict[str, Any]:
    """Turn averaged eval counters into test accuracies by strategy, layer and early exit."""
    strategy = strategy or method.chosen_strategy()
    out: dict[str, Any] = {
        "default_strategy": method.default_strategy,
        "strategy": strategy,
        "test_accuracy": counts.strategies[strategy],
        "test_accuracy_by_strategy": dict(counts.strategies),
        "test_layer_accuracy": list(counts.layers),
        "trainable_parameters": method.trainable_parameters(),
        "strategies": method.strategy_info(),
    }
    if counts.top5 is not None:
        out["test_top5_accuracy"] = counts.top5
    if counts.early_exit:
        out["early_exit"] = [{"threshold": t, "accuracy": acc, "mean_layers": used}
                             for t, (acc, used) in sorted(counts.early_exit.items())]
    return out


def format_report(summary: dict[str, Any]) -> list[str]:
    """Human-readable table of test accuracy per strategy (and early exit), one string per line."""
    info = summary["strategies"]
    lines = [f"test accuracy ({summary.get('method', '')} {summary.get('model', '')} on "
             f"{summary.get('dataset', '')}, {summary.get('num_test', '?')} images):",
             f"  {'strategy':<14} {'accuracy':>9} {'params':>11} {'layers':>7}"]
    speed = summary.get("inference") or {}
    if speed:
        lines[-1] += (f" {'ms@1':>8} {'img/s@64':>9} {'MiB@1':>7} {'MiB@64':>7}   (inference on "
                      f"{next(iter(speed.values()))['device']}, float32)")
    for name, acc in summary["test_accuracy_by_strategy"].items():
        chosen = summary.get("strategy", summary["default_strategy"])
        how = {"validation": "chosen on validation", "given": "given", "export": "the one the file holds"}.get(
            summary.get("strategy_selected_on", ""), "the method's default")
        mark = f" <- reported ({how})" if name == chosen else ""
        layers, passes = info[name]["layers"], info[name].get("forward_passes", 1)
        cost = f" ({passes} passes an image, one per class)" if passes > 1 else ""
        lines.append(f"  {name:<14} {acc:>9.4f} {info[name]['trainable_parameters']:>11,} "
                     f"{'-' if layers is None else layers:>7}{_speed(speed.get(name))}{mark}{cost}")
    for e in summary.get("early_exit", []):
        name = "exit@" + format(e["threshold"], "g")
        lines.append(f"  {name:<14} {e['accuracy']:>9.4f} {info['early-exit']['trainable_parameters']:>11,} "
                     f"{e['mean_layers']:>7.2f}{_speed(speed.get(name))}")
    if "test_top5_accuracy" in summary:
        lines.append(f"  top-5 ({summary.get('strategy', summary['default_strategy'])}): "
                     f"{summary['test_top5_accuracy']:.4f}")
    return lines


def _speed(stats: dict[str, Any] | None) -> str:
    """A strategy's inference columns: latency at batch 1, img/s at 64, peak MiB at 1 and 64 ('' if not measured)."""
    if not stats:
        return ""
    mib = [stats.get(f"peak_bytes_batch{b}") for b in (1, 64)]
    return (f" {stats['latency_ms']:>8.2f} {stats['images_per_second']:>9.0f} "
            + " ".join(f"{'-' if m is None else format(m / 2**20, '.1f'):>7}" for m in mib))


def checkpoint_data(path: str | Path, dataset: str | None = None, data_dir: str | None = None,
                    device: str = "auto", download: bool = False, num_workers: int | None = None,
                    ) -> tuple[LocalMethod, TrainConfig, Any]:
    """A checkpoint's method and config, and the dataset splits it is evaluated on (checked to fit)."""
    from ffvision.train.checkpoint import method_from_checkpoint

    method, meta = method_from_checkpoint(load_checkpoint(path))
    cfg: TrainConfig = meta["config"]
    over: dict[str, Any] = {"device": device, "dry_run": False, "download": download, "num_workers": num_workers}
    if dataset is not None and dataset != cfg.dataset:  # another dataset: its own default split
        over.update(dataset=dataset, val_size=None, augment=None)
    if data_dir is not None:
        over["data_dir"] = data_dir
    cfg = apply_overrides(cfg, over)
    data = build_splits(cfg.dataset, cfg.data_dir, download=cfg.download, image_size=meta["image_size"],
                        val_size=cfg.val_size, split_seed=cfg.split_seed, augment=cfg.augment)
    if (data.num_classes, data.in_channels) != (meta["num_classes"], meta["in_channels"]):
        raise ConfigError(f"the checkpoint expects {meta['num_classes']} classes and {meta['in_channels']} "
                          f"channel(s); {data.name} has {data.num_classes} and {data.in_channels}")
    return method, cfg, data


def evaluate_checkpoint(path: str | Path, dataset: str | None = None, data_dir: str | None = None,
                        split: str = "test", device: str = "auto", download: bool = False,
                        num_workers: int | None = None, inference: bool = True) -> dict[str, Any]:
    """Accuracy of a checkpoint (or of a model file `ffvision export` wrote) on a dataset split, by strategy, layer
    and early exit; with `inference`, each strategy's latency, throughput and peak memory (deploy.py)."""
    from ffvision import deploy

    if deploy.is_exported(path):
        return evaluate_exported(path, dataset, data_dir, split, download, num_workers, inference)
    method, cfg, data = checkpoint_data(path, dataset, data_dir, device, download, num_workers)
    trainer = Trainer(method, cfg, None)
    counts = trainer.evaluate(getattr(data, split), split)
    n = len(getattr(data, split))
    res = {"method": cfg.method, "model": cfg.model, "dataset": data.name, "split": split, "num_test": n,
           **report(method, counts)}
    if inference:
        res["inference"] = deploy.method_inference_stats(method, deploy.first_images(getattr(data, split),
                                                                                     trainer.device))
    return res


def evaluate_exported(path: str | Path, dataset: str | None = None, data_dir: str | None = None,
                      split: str = "test", download: bool = False, num_workers: int | None = None,
                      inference: bool = True) -> dict[str, Any]:
    """Accuracy of an exported model file on a dataset split (its own dataset and split by default), as
    evaluate_checkpoint reports a checkpoint's; its latency and throughput where it runs (the CPU)."""
    from torch.utils.data import DataLoader

    from ffvision import deploy

    model = deploy.ExportedModel(path)
    meta = model.meta
    same = dataset is None or dataset == meta["dataset"]
    data = build_splits(meta["dataset"] if same else dataset, data_dir, download=download,
                        image_size=meta["image_size"], val_size=meta["val_size"] if same else None,
                        split_seed=meta["split_seed"], augment=None)
    if (data.num_classes, data.in_channels) != (meta["num_classes"], meta["in_channels"]):
        raise ConfigError(f"{path} expects {meta['num_classes']} classes and {meta['in_channels']} channel(s); "
                          f"{data.name} has {data.num_classes} and {data.in_channels}")
    right = n = 0
    for x, y in DataLoader(getattr(data, split), batch_size=256, num_workers=num_workers or 0):
        x, y = batch_to_device(x, y, torch.device("cpu"))
        right += int((model.scores(x).argmax(1) == y).sum())
        n += y.shape[0]
    if n == 0:
        raise DataError(f"{split}: no images to evaluate")
    key = meta["strategy"] if meta["threshold"] is None else f"exit@{meta['threshold']:g}"
    res: dict[str, Any] = {
        "method": meta["method"], "model": meta["model"], "dataset": data.name, "split": split, "num_test": n,
        "exported": str(path), "format": meta["format"], "quantize": meta["quantize"], "default_strategy": key,
        "strategy": key, "strategy_selected_on": "export", "test_accuracy": right / n,
        "test_accuracy_by_strategy": {key: right / n},
        "test_layer_accuracy": [], "trainable_parameters": model.parameters(),
        "strategies": {key: {"trainable_parameters": model.parameters(), "layers": None}}}
    if inference:
        images = deploy.first_images(getattr(data, split), torch.device("cpu"))
        res["inference"] = {key: {**deploy.inference_stats(model.scores, images, memory=False),
                                  "parameters": model.parameters(), "file_bytes": Path(path).stat().st_size}}
    return res


def diagnose_checkpoint(path: str | Path, out: str | Path, split: str = "val", images: int = 1000,
                        dataset: str | None = None, data_dir: str | None = None, device: str = "auto",
                        download: bool = False) -> dict[str, Any]:
    """Per-layer diagnostics of a checkpoint (ffvision/diagnose.py); writes diagnose.json and diagnose.png."""
    from ffvision.diagnose import layer_diagnostics, plot_diagnostics, public

    if images < 1:
        raise ConfigError(f"--images must be positive, got {images}")
    method, cfg, data = checkpoint_data(path, dataset, data_dir, device, download)
    trainer = Trainer(method, cfg, None)
    loader = trainer._loader(getattr(data, split), cfg.eval_batch_size, None, 0)
    diag = layer_diagnostics(trainer.method, loader, trainer._to_device, images)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = {"checkpoint": str(path), "method": cfg.method, "model": cfg.model, "dataset": data.name, "split": split,
           **public(diag)}
    write_json(out / "diagnose.json", res)
    plot_diagnostics(diag, out / "diagnose.png")
    return res
