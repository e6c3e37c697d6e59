"""Run by tests under torchrun (or alone): train on fake data, save this rank's final weights.

    python -m torch.distributed.run --nproc-per-node 2 tests/dist_worker.py DATA OUT RUN [--stop-at N] [--resume]
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from ffvision.config import TrainConfig, apply_overrides
from ffvision.errors import TrainingInterrupted
from ffvision.train.distributed import current
from ffvision.train.run import train


def main() -> None:
    data, out, run = sys.argv[1:4]
    stop_at = int(sys.argv[sys.argv.index("--stop-at") + 1]) if "--stop-at" in sys.argv else None
    cfg = apply_overrides(TrainConfig(), {
        "method": sys.argv[sys.argv.index("--method") + 1] if "--method" in sys.argv else "asge",
        "dataset": "fashion-mnist", "data_dir": data, "width_mult": 0.125, "image_size": 16, "val_size": 40,
        "batch_size": 32, "epochs": 2, "eval_batch_size": 64, "log_interval": 2, "dropout": 0.0, "augment": "none",
        "out": run, "device": "cpu",
        # float32: the test compares arithmetic (bf16 rounds a batch of 32 and two of 16 differently)
        "amp": "off"})
    captured = {}

    def grab(trainer):
        captured["method"] = trainer.method
        if stop_at is not None and trainer.global_step == stop_at:
            trainer.request_stop()

    try:
        if "--resume" in sys.argv:
            train(TrainConfig(), resume=run, callbacks=[grab], show_progress=False)
        else:
            train(cfg, callbacks=[grab], show_progress=False)
    except TrainingInterrupted:
        pass
    rank = current().rank
    Path(out).mkdir(parents=True, exist_ok=True)
    torch.save(captured["method"].state_dict(), Path(out) / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
