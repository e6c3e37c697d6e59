"""Checkpoints: atomic writes, safe (weights_only) reads, and rebuilding a method from one.

A checkpoint holds the method's state_dict (including fixed projections), every optimizer and
scheduler, RNG states, counters, the metric history and the resolved config, so a run can be
resumed exactly and a model can be rebuilt without knowing how it was trained.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ffvision import __version__
from ffvision.errors import CheckpointError, ConfigError
from ffvision.io import read_torch_file, write_atomic

FORMAT = "ffvision-checkpoint-v1"
LAST, PREVIOUS = "last.pt", "previous.pt"  # the newest checkpoint of a run, and the one before it


def save_checkpoint(path: Path, payload: dict[str, Any], keep_previous: str | None = None) -> None:
    """Serialise in memory, then write atomically (io.write_atomic: StorageError on a full or read-only disk,
    leaving the file it would replace intact); keep_previous names the file that keeps the replaced one."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": __version__, **payload}, buf)
    write_atomic(path, buf.getbuffer(), keep_previous)


def load_resumable(run_dir: Path) -> tuple[Path, dict[str, Any], str | None]:
    """The newest checkpoint of a run that loads: (its path, it, None) from last.pt, else (previous.pt's path, it,
    why last.pt could not be read); CheckpointError when neither loads."""
    errors = []
    for name in (LAST, PREVIOUS):
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        try:
            return path, load_checkpoint(path), errors[0] if errors else None
        except CheckpointError as e:
            errors.append(str(e))
    if errors:
        raise CheckpointError(f"no good checkpoint left in {run_dir}: {'; '.join(errors)}")
    raise CheckpointError(f"checkpoint {Path(run_dir) / LAST} not found")


def set_aside_damaged(run_dir: Path) -> Path:
    """Rename a run's unreadable last.pt to last.pt.damaged, so that no later save keeps it as previous.pt."""
    damaged = Path(run_dir) / LAST
    aside = damaged.with_name(LAST + ".damaged")
    if damaged.is_file():
        damaged.replace(aside)
    return aside


def has_checkpoint(run_dir: Path) -> bool:
    """Whether a run directory holds a checkpoint to resume (last.pt, or previous.pt where last.pt is gone)."""
    return any((Path(run_dir) / name).is_file() for name in (LAST, PREVIOUS))


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
