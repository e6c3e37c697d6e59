"""Files in and out, the ground floor: reading torch files a user hands over (checkpoints, pretrained
weights) and writing a run's files atomically.

Models (pretrained weights) and checkpoints both read torch files; this leaf module is what
they share, so neither has to import the other. Every file a run writes (checkpoints, metrics.jsonl,
curves.png, summary.json) goes through `write_atomic`: a reader (or a restarted job) sees the old file
or the new one, never half of one, and a full or read-only disk is one line naming the file, the
size it needed and the space that was free.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ffvision.errors import CheckpointError, StorageError

# What an OSError's errno means to a user whose run could not write a file
_REASONS = {errno.ENOSPC: "no space left on the device", errno.EROFS: "the filesystem is read-only",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EDQUOT: "the disk quota is exceeded", errno.EFBIG: "the file is too large for the filesystem"}


def read_torch_file(path: Path, what: str = "checkpoint") -> Any:
    """torch.load(weights_only=True) on CPU; CheckpointError for any file it cannot parse.

    Damaged or foreign bytes make torch's unpickler raise almost anything (UnpicklingError,
    IndexError, KeyError, UnicodeDecodeError, RuntimeError, ...), so every Exception is one message.
    """
    import torch  # here, not at the top: `ffvision list` and --help write files through this module without it

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any parse failure of user-supplied bytes is "corrupted"
        msg = str(e).strip()
        if "weights_only" in msg or "Weights only load failed" in msg:
            # torch's advice (to load with weights_only=False) is wrong for a file one cannot trust
            detail = f"{type(e).__name__}: not a weights-only PyTorch file"
        else:
            detail = f"{type(e).__name__}: {msg.splitlines()[0][:200]}" if msg else type(e).__name__
        raise CheckpointError(f"cannot read {what} {path}: corrupted or not a PyTorch file ({detail})") from None


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def free_space(folder: Path) -> int | None:
    """Bytes free to this user in `folder`'s filesystem (None where it cannot be read)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def storage_error(path: Path, size: int, e: OSError) -> StorageError:
    """The one-line error for a file that could not be written: the path, the reason, the size it needed and the
    space that was free."""
    reason = _REASONS.get(e.errno or 0, e.strerror or type(e).__name__)
    free = free_space(Path(path).parent)
    parts = ([f"it needs {human_bytes(size)}"] if size else []) + ([f"{human_bytes(free)} free there"]
                                                                   if free is not None else [])
    return StorageError(f"cannot write {path}: {reason}" + (f" ({'; '.join(parts)})" if parts else ""))


def write_atomic(path: str | Path, data: bytes | memoryview, keep_previous: str | None = None) -> None:
    """Write `data` to `path` atomically: a temporary file in the same folder, fsync, then a rename over `path`.

    keep_previous: a file name in the same folder that keeps the file being replaced (as a hard link where the
    filesystem has them). StorageError (one line) when the disk is full, read-only or not writable; `path` and
    every other file are then as they were.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    failed: OSError | None = None
    try:
        _write_synced(tmp, data)
        if keep_previous is not None and path.is_file():
            _keep(path, path.with_name(keep_previous))
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
        _sync_folder(path.parent)
    except OSError as e:
        failed = e
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # a read-only filesystem never let it be made
            pass
    if failed is not None:  # said after the partial file is gone, so the free space is what the disk has
        raise storage_error(path, len(data), failed) from None


def _write_synced(path: Path, data: bytes | memoryview) -> None:
    """Write `data` to a new file and fsync it (a full disk may only say so at the fsync)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _keep(path: Path, previous: Path) -> None:
    """`previous` = the file now at `path` (a hard link, so `path` never goes missing; a rename where the
    filesystem has no links)."""
    link = previous.with_name(f".{previous.name}.tmp{os.getpid()}")
    try:
        link.unlink(missing_ok=True)
        os.link(path, link)
        os.replace(link, previous)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES):
            raise
        os.replace(path, previous)  # no hard links here: `path` is missing until the new file is renamed in


def _sync_folder(folder: Path) -> None:
    """fsync a folder so that a rename in it survives a power cut (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Any, indent: int = 2) -> None:
    """`data` as indented JSON to `path`, atomically (write_atomic: a full or read-only disk is one line)."""
    write_atomic(path, (json.dumps(data, indent=indent) + "\n").encode())
