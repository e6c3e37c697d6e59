"""Run `ffvision train` as a user or a cluster does: a process (or torchrun's), signals, kill -9, cleanup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).parents[1]
TESTS = Path(__file__).parent


def env(**extra: str) -> dict[str, str]:
    """One thread per process (the same arithmetic in every run), the package and the test plugins importable."""
    path = os.pathsep.join([str(ROOT), str(TESTS), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path, **extra}


def train_argv(cfg: dict, nproc: int = 1, max_restarts: int = 0) -> list[str]:
    """`python -m ffvision train --key value ...`, under torchrun for nproc > 1."""
    flags = [x for k, v in cfg.items() for x in (f"--{k.replace('_', '-')}", str(v))]
    if nproc == 1:
        return [sys.executable, "-m", "ffvision", "train", *flags]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
            "--max-restarts", str(max_restarts), "-m", "ffvision", "train", *flags]


class Job:
    """A process started for a test, its output in files (a pipe nobody reads can fill up, and a process it
    started can hold one open after it ends); killed with everything it started when the test ends."""

    def __init__(self, argv: list[str], environ: dict[str, str]) -> None:
        self.out, self.err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen(argv, env=environ, stdout=self.out, stderr=self.err, text=True,
                                     start_new_session=True)

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        """(exit status, stdout, stderr), killing the job if it outlives `timeout`."""
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"timed out after {timeout} s: {self.output()[1][-3000:]}") from None
        return (code, *self.output())

    def output(self) -> tuple[str, str]:
        """stdout and stderr so far."""
        texts = []
        for f in (self.out, self.err):
            f.flush()
            f.seek(0)
            texts.append(f.read())
        return texts[0], texts[1]

    def kill(self) -> None:
        """SIGKILL the job and every process it started (torchrun starts its workers with setsid)."""
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def __enter__(self) -> Job:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        self.proc.wait()
        self.out.close()
        self.err.close()


def run(argv: list[str], environ: dict[str, str], timeout: float = 300) -> tuple[int, str, str]:
    """Run to the end: (exit status, stdout, stderr)."""
    with Job(argv, environ) as job:
        return job.wait(timeout)


def wait_for(path: Path, job: Job, timeout: float = 120) -> None:
    """Until `path` exists (or the job ends, or the time is up)."""
    deadline = time.time() + timeout
    while not path.exists() and time.time() < deadline and job.proc.poll() is None:
        time.sleep(0.05)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...), from /proc."""
    parents: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parents[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    out, frontier = [], [pid]
    while frontier:
        kids = [p for p, parent in parents.items() if parent in frontier]
        out += kids
        frontier = kids
    return out


def rank_pid(pid: int, rank: int) -> int | None:
    """The process below `pid` that torchrun started as `rank` (its RANK variable), if any."""
    for p in descendants(pid):
        try:
            environ = Path(f"/proc/{p}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in environ:
            return p
    return None


def weights(path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's model weights (last.pt, best.pt) or a saved state_dict."""
    obj = torch.load(path, weights_only=True)
    return obj["model"] if "model" in obj else obj


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Bit-identical state dicts."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
