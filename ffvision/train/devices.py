"""Devices: resolving --device, and what the CPU computes natively."""

from __future__ import annotations

import ctypes
import os

import torch


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda if available else cpu; a clear error for an unavailable device."""
    from ffvision.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"device type {dev.type!r} is not supported; use cpu or cuda")
    return dev


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (avx512_bf16 or AMX); elsewhere bf16 is emulated and slow."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, c, lambda: False)()) for c in checks)


def batch_to_device(x: torch.Tensor, y: torch.Tensor, device: torch.device,
                    channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 batch -> float [0, 1] on the device (channels_last when the method runs in it)."""
    x = x.to(device, non_blocking=True)
    x = x.float().div_(255) if x.dtype == torch.uint8 else x.float()
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, y.to(device, non_blocking=True)


__all__ = ["batch_to_device", "cpu_has_native_bf16", "resolve_device"]


def resident_bytes() -> int | None:
    """This process's resident memory now, from /proc/self/statm (None where there is no /proc)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class _MallInfo2(ctypes.Structure):
    """glibc's struct mallinfo2 (malloc.h), every field a size_t."""

    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap_in_use_bytes() -> int | None:
    """Bytes the C heap has handed out and not had back (glibc's mallinfo2: in-use chunks of every arena plus
    mmapped blocks); None off glibc. Beside the resident memory it tells a leak (this grows) from the heap
    keeping freed memory for reuse (the resident memory grows, this does not)."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    info = fn()
    return int(info.uordblks + info.hblkhd)
