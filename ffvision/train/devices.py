"""Devices: resolving --device, and what the CPU computes natively."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass
class Placement:
    """Where and how a method runs: its (first) device, memory format and pipeline runner."""

    device: torch.device
    channels_last: bool
    pipeline: Any = None  # a PipelineRunner with --pipeline-devices


def place_method(method: Any, cfg: Any, world: Any) -> Placement:
    """Move a method to its device; set channels_last, bf16, compile, DDP and pipelining from the config."""
    from ffvision.errors import ConfigError

    devices = None
    if cfg.pipeline_devices:
        from ffvision.train.pipeline import parse_devices

        if world.enabled:
            raise ConfigError("--pipeline-devices cannot be combined with torchrun data parallelism")
        devices = parse_devices(cfg.pipeline_devices)
    device = resolve_device(str(devices[0]) if devices else cfg.device)
    if world.enabled and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    on_cuda = device.type == "cuda"
    method.to(device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else on_cuda
    if channels_last:
        method.to(memory_format=torch.channels_last)
    if cfg.amp == "bf16" or (cfg.amp == "auto" and (on_cuda or (device.type == "cpu" and method.cpu_bf16
                                                              and cpu_has_native_bf16()))):
        method.amp_dtype = torch.bfloat16
    method.build_optimizers()  # after .to(): optimizer state must live on the device
    if cfg.compile:
        for block in method.blocks:
            block.compile()  # in place: parameter names (and checkpoints) stay the same
    if world.enabled:
        method.distribute([device.index] if on_cuda else None)
    pipeline = None
    if devices:
        from ffvision.train.pipeline import PipelineRunner

        pipeline = PipelineRunner(method, devices, cfg.pipeline_micro_batches)
    return Placement(device, bool(channels_last), pipeline)


__all__ = ["Placement", "batch_to_device", "cpu_has_native_bf16", "place_method", "resolve_device"]
