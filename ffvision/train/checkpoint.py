"""Checkpoints: atomic writes, safe (weights_only) reads, and rebuilding a method from one.

A checkpoint holds the method's state_dict (including fixed projections), every optimizer and
scheduler, RNG states, counters, the metric history and the resolved config, so a run can be
resumed exactly and a model can be rebuilt without knowing how it was trained.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ffvision import __version__
from ffvision.errors import CheckpointError, ConfigError
from ffvision.io import read_torch_file

FORMAT = "ffvision-checkpoint-v1"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically: a temporary file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            torch.save({"format": FORMAT, "version": __version__, **payload}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file, never half
    finally:
        if tmp.exists():
            tmp.unlink()


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint with weights_only=True; CheckpointError if missing, damaged or foreign."""
    p = Path(path)
    if p.is_dir():
        p = p / "best.pt" if (p / "best.pt").is_file() else p / "last.pt"
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} not found")
    ckpt = read_torch_file(p, "checkpoint")
    if isinstance(ckpt, dict) and str(ckpt.get("format", "")).startswith("ffvision-checkpoint-") \
            and ckpt["format"] != FORMAT:
        raise CheckpointError(f"{p} was written by ffvision {ckpt.get('version', '(version not recorded)')} in "
                              f"format {ckpt['format']}, which ffvision {__version__} cannot read ({FORMAT})")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not an ffvision checkpoint (no {FORMAT!r} marker)")
    return ckpt


def load_method_state(method: torch.nn.Module, state: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """load_state_dict(strict) with a one-line explanation when the architecture differs."""
    own = method.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} tensor(s) differ in shape, e.g. {shapes[0]}")
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[0]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[0]}")
        raise CheckpointError(f"{source} does not fit this {type(method).__name__} "
                              f"(another architecture or width?): {'; '.join(parts)}")
    method.load_state_dict(state)


def method_from_checkpoint(ckpt: dict[str, Any]) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the trained method (weights loaded, eval mode) and return it with its meta."""
    from ffvision.config import TrainConfig, apply_overrides
    from ffvision.methods import create_method, method_kwargs

    try:
        cfg = apply_overrides(TrainConfig(), ckpt["config"], source="checkpoint config")
        meta = ckpt["meta"]
        method = create_method(cfg.method, **method_kwargs(cfg, meta["num_classes"], meta["in_channels"],
                                                            meta["image_size"]))
    except (KeyError, ConfigError) as e:
        raise CheckpointError(f"checkpoint config cannot be used: {e}") from None
    load_method_state(method, ckpt["model"])
    method.selected_strategy = (ckpt.get("best") or {}).get("strategy")  # the run's choice on validation
    method.eval()
    return method, {**meta, "config": cfg}
