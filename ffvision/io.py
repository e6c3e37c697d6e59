"""Reading torch files a user hands over (checkpoints, pretrained weights): the ground floor.

Models (pretrained weights) and checkpoints both read torch files; this leaf module is what
they share, so neither has to import the other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ffvision.errors import CheckpointError


def read_torch_file(path: Path, what: str = "checkpoint") -> Any:
    """torch.load(weights_only=True) on CPU; CheckpointError for any file it cannot parse.

    Damaged or foreign bytes make torch's unpickler raise almost anything (UnpicklingError,
    IndexError, KeyError, UnicodeDecodeError, RuntimeError, ...), so every Exception is one message.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any parse failure of user-supplied bytes is "corrupted"
        msg = str(e).strip()
        if "weights_only" in msg or "Weights only load failed" in msg:
            # torch's advice (to load with weights_only=False) is wrong for a file one cannot trust
            detail = f"{type(e).__name__}: not a weights-only PyTorch file"
        else:
            detail = f"{type(e).__name__}: {msg.splitlines()[0][:200]}" if msg else type(e).__name__
        raise CheckpointError(f"cannot read {what} {path}: corrupted or not a PyTorch file ({detail})") from None
