"""Faults of the disk and the terminal: a full or read-only disk, a damaged newest checkpoint, a resumed run that
says so, a closed pipe. Each ends in one line, and nothing written before is lost."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from processes import env, run, train_argv

import ffvision.io
from ffvision.cli import main
from ffvision.errors import StorageError
from ffvision.io import write_atomic


def flags(cfg: dict) -> list[str]:
    """A config as command-line flags."""
    return [x for k, v in cfg.items() for x in (f"--{k.replace('_', '-')}", str(v))]


def fail_writes(monkeypatch: pytest.MonkeyPatch, code: int, after: int) -> list[str]:
    """Let `after` file writes through, then fail every write with OSError(code); returns the names written."""
    real = ffvision.io._write_synced
    written: list[str] = []

    def write(path: Path, data: bytes) -> None:
        if len(written) >= after:
            raise OSError(code, os.strerror(code))
        written.append(path.name.lstrip(".").rsplit(".tmp", 1)[0])  # the file the temporary one becomes
        real(path, data)

    monkeypatch.setattr(ffvision.io, "_write_synced", write)
    return written


def test_write_atomic_leaves_the_old_file_and_no_partial_one(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    target.write_text("old")
    fail_writes(monkeypatch, errno.ENOSPC, after=0)
    with pytest.raises(StorageError, match=r"cannot write .*summary.json: no space left on the device \(it needs "
                                           r"3 B; .* free there\)"):
        write_atomic(target, b"new")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]


def test_write_atomic_keeps_the_file_it_replaces(tmp_path):
    write_atomic(tmp_path / "last.pt", b"one", keep_previous="previous.pt")
    write_atomic(tmp_path / "last.pt", b"two", keep_previous="previous.pt")
    write_atomic(tmp_path / "last.pt", b"three", keep_previous="previous.pt")
    assert (tmp_path / "last.pt").read_bytes() == b"three" and (tmp_path / "previous.pt").read_bytes() == b"two"
    assert sorted(os.listdir(tmp_path)) == ["last.pt", "previous.pt"]


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "no space left on the device"),
                                          (errno.EROFS, "the filesystem is read-only")])
def test_a_disk_that_stops_taking_files_ends_the_run_in_one_line_and_it_resumes(fast_cfg, tmp_path, monkeypatch,
                                                                               capsys, code, reason):
    """Epoch 1's files are written (train.log aside: metrics.jsonl, curves.png, best.pt, last.pt), then the disk
    fails: exit 74, one line naming the file, the size and the free space; last.pt still resumes to the end."""
    out = tmp_path / "run"
    cfg = {**fast_cfg, "epochs": 3, "amp": "off"}
    written = fail_writes(monkeypatch, code, after=5)  # metrics.jsonl at the start, then epoch 1's four files
    assert main(["train", *flags(cfg)]) == 74
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert f"cannot write {out}" in err[0] and reason in err[0] and "it needs" in err[0] and "free there" in err[0]
    assert f"{out / 'last.pt'} (at the end of epoch 1) and every earlier file are intact" in err[0]
    assert f"ffvision train --resume {out}" in err[0]
    assert written[:2] == ["metrics.jsonl", "metrics.jsonl"] and {"best.pt", "last.pt"} <= set(written)
    assert not [f for f in os.listdir(out) if f.startswith(".")]  # no partial file left behind
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    monkeypatch.undo()  # space again
    assert main(["train", "--resume", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 3 and summary["resumed"][0]["epoch"] == 2
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_read_only_run_directory_is_one_line_before_training(fast_cfg, tmp_path, monkeypatch, capsys):
    def refuse(*a, **k):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("ffvision.train.outputs._LogFile.__init__", refuse)
    assert main(["train", *flags(fast_cfg)]) == 74
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.log: the filesystem is read-only" in err[0], err


def _mount_tmpfs(where: Path, size_kib: int) -> bool:
    """Mount a tmpfs of `size_kib` at `where` (root on Linux only); False where this machine does not allow it."""
    if sys.platform != "linux" or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", f"ffv{uuid.uuid4().hex[:6]}", str(where)],
                       capture_output=True, timeout=30)
    return r.returncode == 0


def test_a_real_full_then_read_only_filesystem(fast_cfg, tmp_path):
    """On a tmpfs with room for epoch 1's files and not for epoch 2's, as a user's disk fills up; then the same
    disk remounted read-only."""
    probe = tmp_path / "probe"
    code, _, err = run(train_argv({**fast_cfg, "epochs": 1, "amp": "off", "out": probe}), env())
    assert code == 0, err
    size = (probe / "last.pt").stat().st_size
    other = sum(f.stat().st_size for f in probe.iterdir() if f.suffix != ".pt")
    small = tmp_path / "small"
    # epoch 1: best.pt + last.pt (+ one being written); epoch 2 needs a third checkpoint beside previous.pt
    if not _mount_tmpfs(small, (int(2.6 * size) + 2 * other + 64 * 1024) // 1024):
        pytest.skip("cannot mount a tmpfs here (needs root on Linux); the injected-error tests cover the rest")
    try:
        out = small / "run"
        code, _, err = run(train_argv({**fast_cfg, "epochs": 3, "amp": "off", "out": out}), env())
        assert code == 74, err
        lines = [x for x in err.strip().splitlines() if x.startswith("ffvision:")]
        assert len(lines) == 1 and "no space left on the device" in lines[0] and "Traceback" not in err
        epoch = torch.load(out / "last.pt", weights_only=True)["epoch"]
        assert epoch >= 1
        moved = tmp_path / "moved"  # space again: the run moved to a larger disk
        shutil.copytree(out, moved)
        assert subprocess.run(["mount", "-o", "remount,ro", str(small)], timeout=30).returncode == 0
        code, _, err = run(train_argv({"resume": out}), env())  # the same disk, now read-only
        lines = [x for x in err.strip().splitlines() if x.startswith("ffvision:")]
        assert code == 74 and len(lines) == 1 and "the filesystem is read-only" in lines[0], err
        assert torch.load(out / "last.pt", weights_only=True)["epoch"] == epoch  # untouched
    finally:
        subprocess.run(["umount", str(small)], timeout=30)
    code, _, err = run(train_argv({"resume": moved}), env())
    assert code == 0, err
    assert json.loads((moved / "summary.json").read_text())["resumed"][0]["epoch"] == epoch + 1


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(fast_cfg, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = {**fast_cfg, "epochs": 2, "amp": "off"}
    assert main(["train", *flags(cfg)]) == 0
    assert torch.load(out / "previous.pt", weights_only=True)["epoch"] == 1  # kept beside last.pt (epoch 2)
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a torn write
    capsys.readouterr()
    assert main(["train", "--resume", "auto", *flags({**cfg, "epochs": 3})]) == 0
    stdout = capsys.readouterr().out
    assert f"cannot read checkpoint {last}" in stdout and f"resuming from the checkpoint before it, {out}/previous.pt" \
        in stdout and "last.pt.damaged" in stdout
    assert (out / "last.pt.damaged").exists()
    resumed = json.loads((out / "summary.json").read_text())["resumed"]
    assert resumed[0]["checkpoint"].endswith("previous.pt") and resumed[0]["epoch"] == 2 and resumed[0]["damaged"]
    assert torch.load(last, weights_only=True)["epoch"] == 3
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])  # each epoch's memory (the soak's)
    if sys.platform == "linux":
        assert record["resident_mib"] > record["heap_in_use_mib"] > 0


def test_no_good_checkpoint_left_is_one_line(fast_cfg, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *flags({**fast_cfg, "epochs": 2})]) == 0
    for name in ("last.pt", "previous.pt"):
        (out / name).write_bytes(b"not a checkpoint")
    capsys.readouterr()
    assert main(["train", "--resume", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"no good checkpoint left in {out}" in err[0] and "previous.pt" in err[0]


def test_a_resumed_run_says_what_it_resumes(fast_cfg, tmp_path, capsys):
    from ffvision.config import TrainConfig, apply_overrides
    from ffvision.errors import TrainingInterrupted
    from ffvision.train.run import train

    out = tmp_path / "run"

    def stop(trainer):
        if trainer.global_step == 3:
            trainer.request_stop()

    with pytest.raises(TrainingInterrupted):
        train(apply_overrides(TrainConfig(), {**fast_cfg, "amp": "off"}), callbacks=[stop])
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    steps = -(-(240 - 40) // 32)  # 200 training images in batches of 32
    assert lines[0] == f"resuming {out} from last.pt at epoch 1 step 3 of {steps} (96 images seen, 0 s of training)" \
        or lines[0].startswith(f"resuming {out} from last.pt at epoch 1 step 3 of {steps} (96 images seen, "), lines
    assert lines[1] == "settings changed on resume: epochs 2 -> 3"
    log = (out / "train.log").read_text()
    assert "resuming" in log and "settings changed on resume: epochs 2 -> 3" in log
    (record,) = json.loads((out / "summary.json").read_text())["resumed"]
    assert (record["epoch"], record["step"], record["steps_per_epoch"], record["images_seen"]) == (1, 3, steps, 96)
    assert record["changed"] == {"epochs": [2, 3]} and record["damaged"] is None


@pytest.mark.parametrize("args", [["list"], ["list", "--options"],
                                  ["train", "--dry-run", "--dataset", "fashion-mnist", "--width-mult", "0.125",
                                   "--image-size", "16", "--val-size", "40", "-q"],
                                  ["train", "--dry-run", "--dataset", "fashion-mnist", "--width-mult", "0.125",
                                   "--image-size", "16", "--val-size", "40"]])
def test_output_to_a_closed_pipe_ends_quietly(args, fake_fmnist):
    """As `ffvision list | head -1` once the reader has gone: exit 0, no traceback."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written: every write fails
    try:
        p = subprocess.run([sys.executable, "-m", "ffvision", *args, *(["--data-dir", str(fake_fmnist)]
                                                                       if args[0] == "train" else [])],
                           stdout=write, stderr=subprocess.PIPE, text=True, env=env(), timeout=120)
    finally:
        os.close(write)
    assert p.returncode == 0 and "Traceback" not in p.stderr and "Error" not in p.stderr, p.stderr


def test_drawing_the_curves_leaves_nothing_for_the_cycle_collector(tmp_path):
    """Drawn every epoch, a figure left as cyclic garbage piled up between full collections (a long run's
    resident memory rose with it): plot_curves frees its figure itself."""
    import gc

    from ffvision.viz.curves import plot_curves

    history = [{"epoch": e, "train_loss": 1.0 / e, "train_accuracy": 0.1 * e, "val_accuracy_by_strategy":
                {"last": 0.1 * e}, "val_layer_accuracy": [0.1 * e] * 4} for e in range(1, 8)]
    gc.collect()
    plot_curves(history, tmp_path / "curves.png")
    assert gc.isenabled() and gc.collect() < 100  # a figure left behind is ~10,000 objects
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


def test_a_forced_new_run_never_falls_back_to_the_run_it_replaced(fast_cfg, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "previous.pt", "last.pt.damaged"):
        (out / name).write_bytes(b"the replaced run's")
    assert main(["train", *flags({**fast_cfg, "epochs": 1}), "--force"]) == 0
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert not (out / "previous.pt").exists() and not (out / "last.pt.damaged").exists()
