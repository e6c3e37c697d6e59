"""A plugin for the tests that run `ffvision train` as a user does (FFVISION_PLUGINS=dist_probe): each rank
saves its final weights to $PROBE_OUT/rank{R}.pt; with $PROBE_STOP_AT=N the run is stopped after step N."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ffvision.train.callbacks import Callback, register_callback


@register_callback
class RankWeights(Callback):
    """Each rank's weights at the end of the run (or when it is stopped)."""

    def on_train_batch_end(self, trainer) -> None:
        stop_at = os.environ.get("PROBE_STOP_AT")
        if stop_at and trainer.global_step == int(stop_at):
            trainer.request_stop()

    def on_validation_end(self, trainer, record, improved) -> None:
        if trainer.epoch == trainer.cfg.epochs or trainer.stop_fit:  # the last epoch (or the time budget's)
            self.on_interrupt(trainer)

    def on_interrupt(self, trainer) -> None:
        out = Path(os.environ["PROBE_OUT"])
        out.mkdir(parents=True, exist_ok=True)
        torch.save(trainer.method.state_dict(), out / f"rank{trainer.dist.rank}.pt")
