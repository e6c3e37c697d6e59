"""JSON-line records of the benchmark scripts: printed, and appended to a file when one is named."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def machine(device: torch.device) -> str:
    """Where a record was measured: the GPU's name, or the CPU and its torch threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, CPU"


def emit(record: dict, out: str | Path | None) -> None:
    """Print one record as a JSON line and append it to `out` (its folder made) when given."""
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as fh:
            fh.write(line + "\n")
