"""Data-parallel training with torchrun (2 processes, gloo, CPU)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).parent / "dist_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(nproc: int, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    if nproc == 1:
        cmd = [sys.executable, str(WORKER), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--master-addr",
               "127.0.0.1", "--master-port", str(free_port()), str(WORKER), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]


def load(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


@pytest.mark.parametrize("method", ["asge", "bp"])
def test_two_processes_match_one_on_the_same_global_batch(fake_fmnist: Path, tmp_path: Path, method: str):
    run(2, str(fake_fmnist), str(tmp_path / "w2"), str(tmp_path / "r2"), "--method", method)
    run(1, str(fake_fmnist), str(tmp_path / "w1"), str(tmp_path / "r1"), "--method", method)
    r0, r1, single = load(tmp_path / "w2/rank0.pt"), load(tmp_path / "w2/rank1.pt"), load(tmp_path / "w1/rank0.pt")
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "ranks diverged"
    worst = max((r0[k].float() - single[k].float()).abs().max().item() for k in r0)
    assert worst < 1e-4, f"2-process training differs from 1-process by {worst}"
    # rank 0 alone wrote the run directory, with the same contents as a single-process run
    assert (tmp_path / "r2" / "summary.json").exists() and (tmp_path / "r2" / "best.pt").exists()


def test_resume_under_torchrun(fake_fmnist: Path, tmp_path: Path):
    run(2, str(fake_fmnist), str(tmp_path / "full"), str(tmp_path / "rf"))
    run(2, str(fake_fmnist), str(tmp_path / "part"), str(tmp_path / "rp"), "--stop-at", "5")
    assert (tmp_path / "rp" / "last.pt").exists() and not (tmp_path / "rp" / "summary.json").exists()
    run(2, str(fake_fmnist), str(tmp_path / "resumed"), str(tmp_path / "rp"), "--resume")
    a, b = load(tmp_path / "full/rank0.pt"), load(tmp_path / "resumed/rank0.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    c = load(tmp_path / "resumed/rank1.pt")
    assert all(torch.equal(b[k], c[k]) for k in b)
