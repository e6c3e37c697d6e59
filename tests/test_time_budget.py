"""--time-budget: a run ends after an amount of training time, its schedule runs over that time, and a resumed run
spends what is left. A fake clock that advances one second a step makes it exact."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ffvision.cli import main
from ffvision.config import TrainConfig, apply_overrides, duration_seconds
from ffvision.errors import ConfigError, TrainingInterrupted
from ffvision.train.callbacks import Callback
from ffvision.train.run import train
from ffvision.train.schedule import WarmupCosineOverTime


class FakeClock(Callback):
    """The trainer's training clock, one second further after every step (validation takes no time on it)."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.now, self.stop_at, self.lrs = 0.0, stop_at, []

    def on_fit_start(self, trainer) -> None:
        trainer.clock = lambda: self.now

    def on_train_batch_end(self, trainer) -> None:
        self.now += 1.0
        self.lrs.append(next(iter(trainer.schedulers.values())).get_last_lr()[0])
        if trainer.global_step == self.stop_at:
            trainer.request_stop()


def budget_cfg(fast_cfg: dict, **kw) -> TrainConfig:
    """The tests' fast run (200 training images, 7 steps an epoch) with a 10-second budget and no epochs."""
    cfg = {k: v for k, v in fast_cfg.items() if k != "epochs"}
    return apply_overrides(TrainConfig(), {**cfg, "time_budget": "10s", "amp": "off", "warmup_epochs": 0, **kw})


def test_durations():
    assert [duration_seconds(t) for t in ("90s", "10m", "1.5h", " 2M ")] == [90, 600, 5400, 120]
    for bad in ("0s", "-1m", "10", "m", "1.5d", "infh", "nanm", ""):
        with pytest.raises(ConfigError, match="time_budget must be a duration above zero"):
            duration_seconds(bad)


def test_the_budget_ends_the_run_on_time_and_brings_the_schedule_to_its_end(fast_cfg):
    clock = FakeClock()
    summary = train(budget_cfg(fast_cfg), callbacks=[clock], show_progress=False)
    # the step that reads 10 s is the last: 7 steps of epoch 1, then 4 of epoch 2 (the last epoch is cut short)
    assert len(clock.lrs) == 11 and summary["epochs"] == 2
    assert summary["images_seen"] == 200 + 4 * 32 and summary["epochs_reached"] == pytest.approx(328 / 200)
    assert summary["train_seconds"] == 11.0 and summary["time_budget_seconds"] == 10.0
    assert summary["val_seconds"] > 0 and summary["test_seconds"] > 0  # measured, not counted in the budget
    lr = TrainConfig(method="asge").lr
    assert clock.lrs[-1] == pytest.approx(lr * 0.01)  # the cosine's end: lr * min_lr_ratio
    assert clock.lrs[0] == pytest.approx(lr) and all(a > b for a, b in zip(clock.lrs, clock.lrs[1:]))  # by time
    history = [json.loads(x) for x in (Path(fast_cfg["out"]) / "metrics.jsonl").read_text().splitlines()]
    assert [h["images_seen"] for h in history] == [200, 328] and history[-1]["train_seconds_total"] == 11.0
    assert summary["best_epoch"] in (1, 2)  # the best validated epoch is the one tested


def test_a_resumed_budget_spends_what_is_left(fast_cfg):
    with pytest.raises(TrainingInterrupted):
        train(budget_cfg(fast_cfg), callbacks=[FakeClock(stop_at=5)], show_progress=False)
    clock = FakeClock()
    summary = train(TrainConfig(), resume=fast_cfg["out"], callbacks=[clock], show_progress=False)
    assert len(clock.lrs) == 11 - 5 and summary["images_seen"] == 328
    assert summary["resumed"][0]["step"] == 5 and clock.lrs[-1] == pytest.approx(TrainConfig(method="asge").lr * 0.01)


def test_a_budget_with_micro_batches(fast_cfg):
    summary = train(budget_cfg(fast_cfg, micro_batches=2), callbacks=[FakeClock()], show_progress=False)
    assert summary["images_seen"] == 328


def test_the_warm_up_counts_steps_and_the_cosine_time():
    spent = [0.0]
    f = WarmupCosineOverTime(lambda: spent[0], warmup=4, min_ratio=0.1)
    assert [f(t) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]
    spent[0] = 0.5
    assert f(10) == pytest.approx(0.1 + 0.9 * 0.5)
    spent[0] = 1.7  # past the budget: the end of the cosine
    assert f(10) == pytest.approx(0.1) and math.isfinite(f(0))


@pytest.mark.parametrize("flags, message", [
    (["--time-budget", "0"], "time_budget must be a duration above zero with its unit"),
    (["--time-budget", "10"], "time_budget must be a duration above zero with its unit"),
    (["--time-budget", "1m", "--epochs", "3"], "--epochs 3 and --time-budget 1m do not go together"),
])
def test_bad_budgets_are_one_line(flags, message, capsys, fake_fmnist):
    assert main(["train", "--dry-run", "--data-dir", str(fake_fmnist), "--val-size", "40", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_a_budget_replaces_a_recipes_epochs(capsys, fake_fmnist):
    assert main(["train", "--config", "asge-fmnist", "--time-budget", "1m", "--dry-run", "--data-dir",
                 str(fake_fmnist), "--val-size", "40", "--image-size", "16", "--width-mult", "0.125"]) == 0
    out = capsys.readouterr().out
    assert "time_budget: 1m" in out and "epochs: null" in out
