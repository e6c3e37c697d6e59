"""Pipelined blocks: consecutive blocks on different devices, trained concurrently (FF only).

Because no gradient crosses a block boundary, block l can train on micro-batch m + 1 while
block l + 1 still trains on micro-batch m - something end-to-end backprop cannot do. The
blocks are split into contiguous stages, one per device; each stage runs in its own thread,
takes a micro-batch's detached activation from a bounded queue (so at most `queue_size`
micro-batches wait between two stages and memory stays flat), updates its blocks, and hands
the result to the next stage. The last stage also runs the method's `finish_update` (ASGE's
heads). Every block sees the micro-batches in the same order as the sequential schedule
(`train_step` on each micro-batch in turn), so the updates are the same; only the order of
floating-point work across devices differs.
"""

from __future__ import annotations

import queue
import threading
from typing import Any

import torch

from ffvision.errors import ConfigError
from ffvision.methods.base import LocalMethod

_STOP = object()


def parse_devices(spec: str) -> list[torch.device]:
    """'cuda:0,cuda:1' -> devices; a clear error for unknown or unavailable ones."""
    from ffvision.train.devices import resolve_device

    names = [s.strip() for s in spec.split(",") if s.strip()]
    if len(names) < 2:
        raise ConfigError(f"pipeline_devices needs at least two devices, got {spec!r}")
    return [resolve_device(n) for n in names]


def split_stages(n_blocks: int, n_stages: int) -> list[list[int]]:
    """Contiguous block indices per stage, as even as possible (earlier stages get the extra)."""
    if n_stages > n_blocks:
        raise ConfigError(f"cannot spread {n_blocks} blocks over {n_stages} devices")
    base, extra = divmod(n_blocks, n_stages)
    out, start = [], 0
    for s in range(n_stages):
        size = base + (1 if s < extra else 0)
        out.append(list(range(start, start + size)))
        start += size
    return out


class PipelineRunner:
    """Places a method's blocks on devices and runs its train step as a pipeline."""

    def __init__(self, method: LocalMethod, devices: list[torch.device], micro_batches: int = 4,
                 queue_size: int = 2) -> None:
        if not method.supports_pipeline:
            raise ConfigError(f"{method.name} cannot be pipelined (it trains with several passes per step)")
        if len(method.blocks) < 2:
            raise ConfigError(f"{method.name} has a single block: nothing to pipeline (backprop cannot be)")
        if micro_batches < 1 or queue_size < 1:
            raise ConfigError("pipeline micro-batches and queue size must be positive")
        self.method, self.devices = method, devices
        self.micro_batches, self.queue_size = micro_batches, queue_size
        self.stages = split_stages(len(method.blocks), len(devices))
        for stage, dev in zip(self.stages, devices):
            for i in stage:
                method.blocks[i].to(dev)
                method.blocks[i].device = dev
        for name, unit in method.trainable_units().items():
            if not name.startswith("block"):  # heads / probe live with the last stage
                unit.to(devices[-1])
        method.build_optimizers()  # optimizer state must live where the parameters are

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The method's train step over len(x) images, as `micro_batches` pipelined micro-batches."""
        m = self.method
        m.check_inputs(x, y)
        m.set_train_mode()
        # Every micro-batch's first input before any block moves (FF: the probe's step and the negatives,
        # drawn from the network's belief before this step), so no pass reads weights another thread updates.
        chunks = [(*m.begin_step(xb, yb), yb) for xb, yb in zip(x.chunk(self.micro_batches),
                                                                y.chunk(self.micro_batches))]
        extras = [extra for _, _, extra, _ in chunks]
        queues = [queue.Queue(maxsize=self.queue_size) for _ in range(len(self.stages) + 1)]
        n_blocks = len(m.blocks)
        losses: list[list[torch.Tensor]] = [[] for _ in range(n_blocks)]
        correct: list[list[torch.Tensor]] = [[] for _ in range(n_blocks)]
        finals: list[dict[str, torch.Tensor]] = []
        errors: list[BaseException] = []

        def work(s: int) -> None:
            dev, last = self.devices[s], s == len(self.stages) - 1
            try:
                while (item := queues[s].get()) is not _STOP:
                    h, target, yb, kept = item
                    target, yb = target.to(dev, non_blocking=True), yb.to(dev, non_blocking=True)
                    for i in self.stages[s]:
                        o, loss, right = m.block_update(i, h, target)
                        losses[i].append(loss * yb.shape[0])  # per image of the micro-batch
                        correct[i].append(right)
                        kept.append(m.keep(o, i))
                        h = o.out
                        del o
                    if last:
                        finals.append(m.finish_update(kept, yb))
                    queues[s + 1].put((h, target, yb, kept) if not last else None)
            except BaseException as e:  # surface the error in the caller, and unblock the others
                errors.append(e)
                queues[s + 1].put(_STOP)
                while queues[s].get() is not _STOP:
                    pass
                return
            queues[s + 1].put(_STOP)

        threads = [threading.Thread(target=work, args=(s,), daemon=True) for s in range(len(self.stages))]
        for t in threads:
            t.start()
        for h, target, _, yb in chunks:
            if errors:
                break
            queues[0].put((h, target, yb, []))
        queues[0].put(_STOP)
        while queues[-1].get() is not _STOP:
            pass
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        home = self.devices[0]
        stats: dict[str, Any] = {
            "layer_loss_sum": torch.stack([torch.stack(v).to(home).sum() for v in losses]),
            "layer_correct": torch.stack([torch.stack(v).to(home).sum() for v in correct]),
        }
        for k in finals[0] if finals else {}:
            stats[k] = torch.stack([f[k].to(home) for f in finals]).sum(0)
        for k in extras[0] if extras else {}:
            stats[k] = torch.stack([e[k].to(home) for e in extras]).sum(0)
        return m.combine_stats(stats)
