"""Data parallelism with torchrun: process-group setup and the few collectives the trainer needs.

`torchrun --nproc-per-node N -m ffvision train ...` sets RANK / WORLD_SIZE / LOCAL_RANK; the
trainer then wraps every locally trained unit (each block, ASGE's heads, the FF probe) in its
own DistributedDataParallel, so each block's gradients are all-reduced by PyTorch's engine
right after that block's backward, before its optimizer steps. NCCL on GPUs, gloo on CPU.
Outside torchrun every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True under torchrun with more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 logs and writes files."""
        return self.rank == 0


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group torchrun describes (once); DistInfo() when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device != "cpu"
        if use_cuda:
            torch.cuda.set_device(info.local_rank)
        backend = "nccl" if use_cuda else "gloo"
        store = attempt_store(info.world_size)
        if store is None:
            dist.init_process_group(backend)
        else:
            dist.init_process_group(backend, store=store, rank=info.rank, world_size=info.world_size)
    return info


def attempt_store(world_size: int) -> dist.Store | None:
    """Under torchrun, the agent's store seen through a prefix of this attempt (TORCHELASTIC_RESTART_COUNT).

    torchrun restarting its workers (--max-restarts) keeps its store, and the ranks of a restarted attempt
    read there the addresses the previous attempt's ranks published: with torch 2.14 and gloo the new ranks
    connected to dead ones ("Connection refused") and failed restart after restart. Each attempt's keys apart,
    the restarted ranks find each other. None outside torchrun's agent store (env:// as usual).
    """
    if os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" or "TORCHELASTIC_RESTART_COUNT" not in os.environ:
        return None
    agent = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size, is_master=False,
                          timeout=timedelta(minutes=10))
    return dist.PrefixStore(f"ffvision/attempt_{os.environ['TORCHELASTIC_RESTART_COUNT']}", agent)


def dist_initialized() -> bool:
    """Whether this process is in a process group."""
    return dist.is_available() and dist.is_initialized()


def leave_distributed() -> None:
    """Leave the process group (every rank, at the end of a run however it ends: a gloo group left alive
    made a rank abort at exit)."""
    if dist_initialized():
        dist.destroy_process_group()


def current() -> DistInfo:
    """DistInfo of the initialised process group (DistInfo() if none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (in place); identity without a process group."""
    if current().enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def reduce_sums(sums: dict[str, torch.Tensor], count: int, device: torch.device
                ) -> tuple[dict[str, torch.Tensor], float]:
    """Each tensor of `sums` and `count` summed over all ranks, in one flat all-reduce and one host sync."""
    keys = sorted(sums)
    flat = torch.cat([sums[k].detach().float().reshape(-1) for k in keys]
                     + [torch.tensor([float(count)], device=device)])
    flat = all_reduce_sum(flat).cpu()
    out, pos = {}, 0
    for k in keys:
        size = sums[k].numel()
        out[k] = flat[pos:pos + size].reshape(sums[k].shape)
        pos += size
    return out, float(flat[-1])


def max_over_ranks(value: float, device: torch.device) -> float:
    """The largest `value` of any rank (a collective: every rank must call it)."""
    if not current().enabled:
        return value
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def any_rank(flag: bool, device: torch.device) -> bool:
    """True if `flag` is true on any rank (a collective: every rank must call it)."""
    return max_over_ranks(1.0 if flag else 0.0, device) > 0


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value of `obj` on every rank."""
    if not current().enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order, on every rank."""
    if not current().enabled:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank."""
    if current().enabled:
        dist.barrier()
