"""Placing a method for a run: its device, memory format, precision, compilation, DDP and pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ffvision.errors import ConfigError
from ffvision.models.convstack import set_conv_impl
from ffvision.train.devices import cpu_has_native_bf16, resolve_device
from ffvision.train.pipeline import PipelineRunner, parse_devices


@dataclass
class Placement:
    """Where and how a method runs: its (first) device, memory format and pipeline runner."""

    device: torch.device
    channels_last: bool
    pipeline: Any = None  # a PipelineRunner with --pipeline-devices


def resolve_precision(method: Any, device: torch.device, amp: str, channels_last: bool | None) -> tuple[bool, bool]:
    """(bf16 autocast, channels_last) for `--amp` and `--channels-last` (None: the default) on `device`.

    auto: bf16 on CUDA, and on a CPU with native bf16 for the methods measured faster with it at the
    same accuracy (`cpu_bf16`); channels_last by default on CUDA, and on such a CPU with bf16 where the
    method measured faster with it (`cpu_channels_last`).
    """
    on_cuda, on_cpu = device.type == "cuda", device.type == "cpu"
    bf16 = amp == "bf16" or (amp == "auto" and (on_cuda or (on_cpu and method.cpu_bf16 and cpu_has_native_bf16())))
    if channels_last is None:
        channels_last = on_cuda or (on_cpu and bf16 and method.cpu_channels_last)
    return bf16, bool(channels_last)


def set_precision(method: Any, device: torch.device, amp: str, channels_last: bool | None,
                  compile: bool = False) -> tuple[bool, bool]:
    """Apply `resolve_precision` (memory format, bf16) and `compile` to a method on `device`; build its optimizers.

    Returns (bf16, channels_last): the caller lays its inputs out to match.
    """
    bf16, channels_last = resolve_precision(method, device, amp, channels_last)
    if channels_last:
        method.to(memory_format=torch.channels_last)
    if bf16:
        method.amp_dtype = torch.bfloat16
    method.build_optimizers()  # after .to(): optimizer state must live on the device
    if compile:
        for block in method.blocks:
            block.compile()  # in place: parameter names (and checkpoints) stay the same
    return bf16, channels_last


def place_method(method: Any, cfg: Any, world: Any) -> Placement:
    """Move a method to its device; set channels_last, bf16, compile, DDP and pipelining from the config."""
    if cfg.micro_batches is not None:
        method.micro_batches = cfg.micro_batches
    devices = None
    if cfg.pipeline_devices:
        if world.enabled:
            raise ConfigError("--pipeline-devices cannot be combined with torchrun data parallelism")
        devices = parse_devices(cfg.pipeline_devices)
    device = resolve_device(str(devices[0]) if devices else cfg.device)
    if world.enabled and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    on_cuda = device.type == "cuda"
    method.to(device)
    set_conv_impl(method, cfg.conv)
    _, channels_last = set_precision(method, device, cfg.amp, cfg.channels_last, cfg.compile)
    if world.enabled:
        method.distribute([device.index] if on_cuda else None)
    pipeline = None
    if devices:
        pipeline = PipelineRunner(method, devices, cfg.pipeline_micro_batches)
    return Placement(device, bool(channels_last), pipeline)
