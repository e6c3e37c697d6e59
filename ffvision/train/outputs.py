"""What a run writes as it goes: metrics.jsonl, TensorBoard scalars, curves.png; and the Ctrl-C handler."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from ffvision.errors import ConfigError
from ffvision.io import storage_error, write_atomic

log = logging.getLogger(__name__)


class RunLog:
    """RUN_DIR/metrics.jsonl (one record per epoch), curves.png, and tensorboard/ when asked for."""

    def __init__(self, run_dir: Path, tensorboard: bool = False) -> None:
        self.run_dir = run_dir
        self._tb: Any = None if tensorboard else False

    def rewrite(self, history: list[dict[str, Any]]) -> None:
        """metrics.jsonl = this history, written atomically (a resumed run drops the epochs after its checkpoint)."""
        write_atomic(self.run_dir / "metrics.jsonl", "".join(json.dumps(rec) + "\n" for rec in history).encode())

    def append(self, history: list[dict[str, Any]]) -> None:
        """The epoch just ended (the last of `history`) to metrics.jsonl and, with --tensorboard, TensorBoard."""
        self.rewrite(history)  # whole, so a full disk never leaves half a line
        record = history[-1]
        if self._tb is False:
            return
        if self._tb is None:  # the package's presence was checked before the run started (check_tensorboard)
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tensorboard"))
        e = record["epoch"]
        self._tb.add_scalar("train/loss", record["train_loss"], e)
        self._tb.add_scalar("train/accuracy", record["train_accuracy"], e)
        for k, v in record["val_accuracy_by_strategy"].items():
            self._tb.add_scalar(f"val/{k}", v, e)
        for i, v in enumerate(record["val_layer_accuracy"]):
            self._tb.add_scalar(f"val_layer/{i + 1}", v, e)
        self._tb.flush()

    def plot(self, history: list[dict[str, Any]]) -> None:
        """curves.png (matplotlib is optional at run time; a failure never stops training)."""
        try:
            from ffvision.viz.curves import plot_curves

            plot_curves(history, self.run_dir / "curves.png")
        except ImportError:
            pass


def check_tensorboard(wanted: bool) -> None:
    """ConfigError when --tensorboard is asked for and the tensorboard package is not installed."""
    import importlib.util

    if wanted and importlib.util.find_spec("tensorboard") is None:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install tensorboard "
                          "(or pip install 'ffvision[tensorboard]')")


class _LogFile(logging.FileHandler):
    """A FileHandler that, when its disk fills up or goes read-only, says so once and stops (the run goes on:
    its checkpoints say whether the disk can still take them)."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record unless writing has failed before."""
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """A storage fault: one warning on the other handlers; anything else as logging reports it."""
        e = sys.exc_info()[1]
        if not isinstance(e, OSError):
            super().handleError(record)
            return
        self.failed = True
        log.warning("%s; train.log stops here, the run goes on", storage_error(Path(self.baseFilename),
                                                                              len(self.format(record)), e))


class RunLogFile:
    """RUN_DIR/train.log: every record of the `ffvision` logger during a run, with times (appended on resume)."""

    def __init__(self, run_dir: Path, append: bool = False) -> None:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            self.handler = _LogFile(run_dir / "train.log", mode="a" if append else "w")
        except OSError as e:
            raise storage_error(run_dir / "train.log", 0, e) from None
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger = logging.getLogger("ffvision")
        self.logger.addHandler(self.handler)

    def close(self) -> None:
        """Detach and close the file."""
        self.logger.removeHandler(self.handler)
        try:
            self.handler.close()
        except OSError:  # the last buffered line on a full disk: already said
            pass


def epoch_line(record: dict[str, Any], epochs: int | str) -> str:
    """The one line printed at the end of an epoch."""
    by = "  ".join(f"{k} {v:.4f}" for k, v in record["val_accuracy_by_strategy"].items())
    return (f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f}  train acc "
            f"{record['train_accuracy']:.4f}  val acc [{by}]  {record['train_images_per_second']:.0f} img/s")


# What clusters send before they stop a job (Slurm, Kubernetes, torchrun: SIGTERM; Slurm's --signal: SIGUSR1)
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGUSR1") if hasattr(signal, name))


class StopSignals:
    """The first SIGINT (Ctrl-C), SIGTERM or SIGUSR1: finish the step, save last.pt, exit with 128 + the signal's
    number. A second one: stop at once (KeyboardInterrupt), without saving."""

    def __init__(self, trainer: Any) -> None:
        self.trainer = trainer
        self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    def _handle(self, signum: int, frame: object) -> None:
        if self.trainer._stop:
            raise KeyboardInterrupt
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        log.warning("%s: saving last.pt after this step (again: abort without saving)", name)
        self.trainer.request_stop(128 + signum)

    def restore(self) -> None:
        """Put the previous handlers back."""
        for s, previous in self.previous.items():
            signal.signal(s, previous)
