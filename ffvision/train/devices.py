"""Devices: resolving --device, and what the CPU computes natively."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

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


__all__ = ["batch_to_device", "cpu_has_native_bf16", "cpu_name", "device_name", "resolve_device"]


def cpu_name() -> str:
    """The CPU's model name, family/model and its bf16/AMX support, from /proc/cpuinfo (else the platform)."""
    import platform

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(line.split(":", 1) for line in info.splitlines()[:30] if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    extra = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{fields.get('model name', platform.machine())} (family {fields.get('cpu family', '?')} model "
            f"{fields.get('model', '?')}{', ' + ', '.join(extra) if extra else ''})")


def device_name(device: object = "cpu") -> str:
    """A device named as a measurement's record needs it: the GPU's name, or the CPU and the torch threads."""
    if str(device).startswith("cuda") and torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(torch.device(str(device)))}, torch {torch.__version__}"
    return f"{cpu_name()}, {torch.get_num_threads()} torch threads"


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
