"""What clusters do to runs: SIGTERM / SIGUSR1, kill -9 at random steps, a job started again with --resume auto.
Every interrupted run, resumed, ends with the weights of the uninterrupted one (float32, CPU: bit-identical)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
from pathlib import Path

import pytest
import torch
from processes import Job, env, run, same, train_argv, wait_for, weights

from ffvision.config import checkpoint_interval
from ffvision.errors import ConfigError


def run_cfg(fast_cfg: dict, out: Path, **kw) -> dict:
    """The tests' fast run, in float32 (arithmetic compared bit for bit), with enough steps to be interrupted."""
    return {**fast_cfg, "epochs": 6, "amp": "off", "out": out, "log_interval": 1, **kw}


@pytest.fixture
def reference(fast_cfg: dict, tmp_path: Path) -> dict[str, torch.Tensor]:
    """The final weights of the run uninterrupted."""
    code, _, err = run(train_argv(run_cfg(fast_cfg, tmp_path / "ref")), env())
    assert code == 0, err
    return weights(tmp_path / "ref" / "last.pt")


@pytest.mark.parametrize("sig, status", [(signal.SIGTERM, 143), (signal.SIGUSR1, 138)])
def test_a_signal_saves_the_step_and_resume_ends_as_if_never_stopped(fast_cfg, tmp_path, reference, sig, status):
    out = tmp_path / "run"
    with Job(train_argv(run_cfg(fast_cfg, out, checkpoint_every=0)), env()) as job:
        wait_for(out / "metrics.jsonl", job)  # written as the first step starts
        job.proc.send_signal(sig)
        code, _, err = job.wait()
    assert code == status, err
    assert "saved" in err and "--resume" in err and "Traceback" not in err
    ckpt = torch.load(out / "last.pt", weights_only=True)  # loadable without trusting pickled code
    assert ckpt["epoch"] < 6 and ckpt["version"]
    code, _, err = run(train_argv({"resume": out}), env())
    assert code == 0, err
    assert same(weights(out / "last.pt"), reference)


def test_kill_9_at_random_steps_then_resume_auto_ends_as_if_never_killed(fast_cfg, tmp_path, reference):
    """--checkpoint-every 1: at most the step in flight is lost, and it is recomputed the same."""
    out = tmp_path / "run"
    argv = train_argv(run_cfg(fast_cfg, out, checkpoint_every=1, resume="auto"))
    rng = random.Random(0)
    steps = []
    for _ in range(3):
        with Job(argv, env()) as job:
            wait_for(out / "metrics.jsonl", job)
            try:
                job.proc.wait(timeout=rng.uniform(0.2, 1.5))
            except subprocess.TimeoutExpired:  # still running: the exit of the `with` kills it (-9) mid-run
                pass
        if (out / "last.pt").exists():
            steps.append(torch.load(out / "last.pt", weights_only=True)["global_step"])
    code, _, err = run(argv, env())
    assert code == 0, err
    assert same(weights(out / "last.pt"), reference), steps
    assert (out / "summary.json").exists()
    epochs = [json.loads(x)["epoch"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert epochs == list(range(1, 7))  # one record per epoch, none repeated by the restarts


def test_checkpoint_every_steps_writes_mid_epoch_state(fast_cfg, tmp_path):
    from ffvision.config import TrainConfig, apply_overrides
    from ffvision.train.run import train

    seen = []

    def look(trainer):
        if (tmp_path / "run" / "last.pt").exists():
            seen.append(torch.load(tmp_path / "run" / "last.pt", weights_only=True)["global_step"])

    cfg = apply_overrides(TrainConfig(), {**fast_cfg, "epochs": 1, "checkpoint_every": "3",
                                          "out": str(tmp_path / "run")})
    train(cfg, callbacks=[look], show_progress=False)
    assert {3, 6} <= set(seen)  # 7 steps an epoch: written after steps 3 and 6, then at the epoch's end


def test_checkpoint_every_reads_steps_minutes_or_off():
    assert checkpoint_interval("500") == (500, 0.0)
    assert checkpoint_interval("10m") == (0, 600.0)
    assert checkpoint_interval("2.5min") == (0, 150.0)
    assert checkpoint_interval("0") == (0, 0.0)
    for bad in ("ten", "-3", "0m", "5h"):
        with pytest.raises(ConfigError, match="checkpoint_every must be"):
            checkpoint_interval(bad)


def test_resume_auto_errors_are_one_line(fast_cfg, tmp_path, capsys):
    from ffvision.cli import main

    flags = [x for k, v in {**fast_cfg, "epochs": 1}.items() if k != "out" for x in (f"--{k.replace('_', '-')}",
                                                                                     str(v))]
    assert main(["train", "--resume", "auto", *flags]) == 2
    assert "--resume auto needs --out" in capsys.readouterr().err
    out = tmp_path / "auto"
    assert main(["train", "--resume", "auto", "--out", str(out), *flags]) == 0  # nothing there: a new run
    assert main(["train", "--resume", "auto", "--out", str(out), *flags, "--lr", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot change lr" in err[0]
    assert main(["train", "--resume", "auto", "--out", str(out), *flags[:-2], "--epochs", "2"]) == 0  # longer


def test_a_checkpoint_of_another_format_names_its_version(tmp_path):
    from ffvision.errors import CheckpointError
    from ffvision.train.checkpoint import load_checkpoint

    torch.save({"format": "ffvision-checkpoint-v9", "version": "9.0.0", "model": {}}, tmp_path / "new.pt")
    with pytest.raises(CheckpointError, match="written by ffvision 9.0.0 in format ffvision-checkpoint-v9"):
        load_checkpoint(tmp_path / "new.pt")
