"""Data-parallel training with torchrun (2 processes, gloo, CPU), through `ffvision train` as a user runs it."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch
from processes import Job, env, rank_pid, run, same, train_argv, wait_for, weights


def dist_cfg(data: Path, out: Path, method: str = "asge") -> dict:
    """Fake data, a narrow network, no dropout, float32 (the tests compare arithmetic: dropout draws other masks
    on two processes, and bf16 rounds a batch of 32 and two of 16 differently)."""
    return {"method": method, "dataset": "fashion-mnist", "data_dir": data, "width_mult": 0.125, "image_size": 16,
            "val_size": 40, "batch_size": 32, "epochs": 2, "eval_batch_size": 64, "log_interval": 2,
            "augment": "none", "dropout": 0.0, "device": "cpu", "amp": "off", "out": out, "checkpoint_every": 0}


def probe_env(out: Path, **extra: str) -> dict[str, str]:
    """The dist_probe plugin: each rank's final weights to `out`."""
    return env(FFVISION_PLUGINS="dist_probe", PROBE_OUT=str(out), **extra)


@pytest.mark.parametrize("method", ["asge", "bp", "deeperforward"])
def test_two_processes_match_one_on_the_same_global_batch(fake_fmnist: Path, tmp_path: Path, method: str):
    # (DeeperForward at its lr 0.04: AdamW turns the rounding of near-zero gradients into lr-sized steps, and
    # the layers after the first drift apart by up to 0.1 in two epochs; at 2e-4 they stay close)
    lr = {"lr": 2e-4} if method == "deeperforward" else {}
    code, _, err = run(train_argv({**dist_cfg(fake_fmnist, tmp_path / "r2", method), **lr}, nproc=2),
                       probe_env(tmp_path / "w2"))
    assert code == 0, err[-3000:]
    code, _, err = run(train_argv({**dist_cfg(fake_fmnist, tmp_path / "r1", method), **lr}), probe_env(tmp_path / "w1"))
    assert code == 0, err[-3000:]
    r0, r1 = weights(tmp_path / "w2/rank0.pt"), weights(tmp_path / "w2/rank1.pt")
    single = weights(tmp_path / "w1/rank0.pt")
    assert same(r0, r1), "ranks diverged"
    diff = torch.cat([(r0[k].float() - single[k].float()).abs().flatten() for k in r0])
    # all but a few weights agree to 1e-5; AdamW moves a weight whose gradient is near zero by up to lr a step on
    # rounding alone (DeeperForward: 0.05% of its weights, by up to 1.2e-4 in 14 steps of 2e-4)
    assert (diff > 1e-5).float().mean() < 1e-3, "2-process training differs from 1-process"
    worst = diff.max().item()
    assert worst < (1e-3 if method == "deeperforward" else 1e-4), f"2-process training differs by {worst}"
    # rank 0 alone wrote the run directory, with the same contents as a single-process run
    assert (tmp_path / "r2" / "summary.json").exists() and (tmp_path / "r2" / "best.pt").exists()
    assert "Traceback" not in err and "terminate called" not in err  # every rank left its process group


def test_resume_under_torchrun(fake_fmnist: Path, tmp_path: Path):
    code, _, err = run(train_argv(dist_cfg(fake_fmnist, tmp_path / "rf"), nproc=2), probe_env(tmp_path / "full"))
    assert code == 0, err[-3000:]
    code, _, err = run(train_argv(dist_cfg(fake_fmnist, tmp_path / "rp"), nproc=2),
                       probe_env(tmp_path / "part", PROBE_STOP_AT="5"))
    assert code != 0 and "interrupted at epoch" in err  # stopped: torchrun reports the workers' status 130
    assert (tmp_path / "rp" / "last.pt").exists() and not (tmp_path / "rp" / "summary.json").exists()
    argv = train_argv({"resume": tmp_path / "rp", "device": "cpu"}, nproc=2)
    code, _, err = run(argv, probe_env(tmp_path / "resumed"))
    assert code == 0, err[-3000:]
    a, b, c = (weights(tmp_path / p) for p in ("full/rank0.pt", "resumed/rank0.pt", "resumed/rank1.pt"))
    assert same(a, b) and same(b, c)


def test_a_worker_killed_mid_run_is_restarted_by_torchrun_and_ends_as_if_never_killed(fake_fmnist: Path,
                                                                                      tmp_path: Path):
    """torchrun --max-restarts 3 ... --resume auto --checkpoint-every 1: rank 1 gets kill -9 at a random step,
    torchrun restarts both workers, they continue from last.pt and end with an uninterrupted run's weights."""
    cfg = {**dist_cfg(fake_fmnist, tmp_path / "ref"), "epochs": 3}
    code, _, err = run(train_argv(cfg, nproc=2), env())
    assert code == 0, err[-3000:]
    run_dir = tmp_path / "run"
    cfg = {**cfg, "out": run_dir, "resume": "auto", "checkpoint_every": 1}
    with Job(train_argv(cfg, nproc=2, max_restarts=3), env()) as job:
        wait_for(run_dir / "last.pt", job)
        time.sleep(random.Random(0).uniform(0.0, 1.5))
        victim = rank_pid(job.proc.pid, 1)
        assert victim is not None, job.proc.poll()
        os.kill(victim, signal.SIGKILL)
        code, _, err = job.wait(600)
    assert code == 0, err[-3000:]
    assert "exitcode: -9" in err  # torchrun saw the worker killed (and restarted both)
    assert same(weights(run_dir / "last.pt"), weights(tmp_path / "ref" / "last.pt"))
    assert torch.load(run_dir / "last.pt", weights_only=True)["epoch"] == 3


def test_a_time_budget_under_torchrun_follows_rank_0s_clock(fake_fmnist: Path, tmp_path: Path):
    """Every rank stops at the same step and follows the same schedule: their weights stay identical."""
    cfg = {k: v for k, v in dist_cfg(fake_fmnist, tmp_path / "rb").items() if k != "epochs"}
    code, _, err = run(train_argv({**cfg, "time_budget": "3s"}, nproc=2), probe_env(tmp_path / "wb"))
    assert code == 0, err[-3000:]
    assert same(weights(tmp_path / "wb/rank0.pt"), weights(tmp_path / "wb/rank1.pt"))
    summary = json.loads((tmp_path / "rb" / "summary.json").read_text())
    assert summary["time_budget_seconds"] == 3 and summary["train_seconds"] >= 3 and summary["images_seen"] > 0
