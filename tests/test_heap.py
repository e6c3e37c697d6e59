"""The CLI's C-heap setting (train/heap.py): applied on glibc, left alone when the user chose otherwise."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CODE = "from ffvision.train.heap import keep_freed_memory; print(keep_freed_memory())"


def _applied(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    clean.pop("FFVISION_KEEP_FREED_MEMORY", None)
    out = subprocess.run([sys.executable, "-c", CODE], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_keep_freed_memory_applies_on_glibc_unless_turned_off_or_set_by_the_user():
    assert _applied() == "True"
    assert _applied(FFVISION_KEEP_FREED_MEMORY="0") == "False"
    assert _applied(MALLOC_TRIM_THRESHOLD_="1000000") == "False"  # the user's own setting wins


def test_the_cli_applies_it_to_the_commands_that_train_or_evaluate_only(monkeypatch, capsys, tmp_path):
    from ffvision import cli
    from ffvision.train import heap

    called = []
    monkeypatch.setattr(heap, "keep_freed_memory", lambda: called.append(1) or True)
    assert cli.main(["list"]) == 0
    assert cli.main(["labels", "--out", str(tmp_path / "l.png")]) == 0
    assert called == []  # nothing to gain where nothing trains
    assert cli.main(["eval", str(tmp_path / "missing.pt")]) == 2  # applied before the command runs
    assert called == [1]


RELEASE = """
import torch
from ffvision.train.devices import resident_bytes
from ffvision.train.heap import keep_freed_memory, release_freed_memory
print(release_freed_memory())  # nothing kept yet: nothing to give back
print(keep_freed_memory())
blocks = [torch.ones(1_000_000) for _ in range(64)]  # 256 MB in 4 MB blocks, below the mmap threshold
del blocks
held = resident_bytes()
print(release_freed_memory(), (held - resident_bytes()) / 2**20)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_release_gives_the_kept_memory_back_once_an_epoch_asks():
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    clean.pop("FFVISION_KEEP_FREED_MEMORY", None)
    out = subprocess.run([sys.executable, "-c", RELEASE], env=clean, capture_output=True, text=True, check=True,
                         timeout=120).stdout.split()
    assert out[:3] == ["False", "True", "True"]
    assert float(out[3]) > 100  # MiB handed back of the 256 freed
