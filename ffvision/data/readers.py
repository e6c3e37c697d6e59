"""Readers for the on-disk formats of MNIST-style IDX files and CIFAR python pickles.

They exist because the offline copies ffvision must read (Debian's gzipped FashionMNIST,
a user's local CIFAR folder) do not pass torchvision's own checks (uncompressed files,
md5 sums); downloading still goes through torchvision. Every defect is a DataError that
names the file.
"""

from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

from ffvision.errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> torch.Tensor:
    """Read an IDX file (optionally gzipped) into a tensor; DataError if it is corrupted."""
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as e:  # zlib.error: a damaged deflate stream
        raise DataError(f"corrupted IDX file {path}: cannot read or decompress it ({e})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or not 1 <= raw[3] <= 4:
        raise DataError(f"corrupted IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"corrupted IDX file {path}: truncated header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"corrupted IDX file {path}: header says shape {shape} ({expected} bytes) "
                        f"but it holds {len(raw) - header} bytes")
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(arr.astype(arr.dtype.newbyteorder("="), copy=True))


def read_cifar_batches(files: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read CIFAR python batch files into uint8 images (N, 3, 32, 32) and int64 labels."""
    images, labels = [], []
    for f in files:
        entry = _load_pickle(f)
        if "data" not in entry or label_key not in entry:
            raise DataError(f"corrupted CIFAR file {f}: expected keys 'data' and {label_key!r}")
        data = np.asarray(entry["data"], dtype=np.uint8)
        lab = np.asarray(entry[label_key], dtype=np.int64)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != lab.shape[0]:
            raise DataError(f"corrupted CIFAR file {f}: data of shape {data.shape} with {lab.shape[0]} labels")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def read_cifar_meta(path: Path, key: str) -> list[str]:
    """Class names from a CIFAR meta file."""
    entry = _load_pickle(path)
    if key not in entry:
        raise DataError(f"corrupted CIFAR meta file {path}: no {key!r}")
    return [str(c) for c in entry[key]]


def _load_pickle(path: Path) -> dict:
    """Unpickle one CIFAR file (the format is pickle; load only files you trust)."""
    try:
        with open(path, "rb") as fh:
            entry = pickle.load(fh, encoding="latin1")
    except Exception as e:  # any unpickling failure means a damaged file
        raise DataError(f"corrupted CIFAR file {path}: {type(e).__name__}: {e}") from None
    if not isinstance(entry, dict):
        raise DataError(f"corrupted CIFAR file {path}: not a CIFAR batch")
    return entry
