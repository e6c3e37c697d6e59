"""CPU fast paths, each beside the plain-torch reference it must match, behind one switch.

- `conv_goodness` (conv_goodness.py): ASGE's training step, conv -> ReLU -> spatial goodness ->
  projection as one autograd node that writes its gradient over h (`--fused-readout`); reference: the
  autograd chain of the same modules.
- `spectral_conv2d` (spectral.py): FF-CNN's large-kernel "same" convolutions as dense DFT stages
  (`--conv`); reference: `F.conv2d`.
- `fast_dropout` (dropout.py): one random 16-bit lane per element; reference: `F.dropout`.
- `sum_of_squares`, `divide_rows`, `patch_goodness` (reductions.py): bf16 maps reduced and divided a
  few samples at a time, goodness by per-patch norms; references: the whole-tensor forms.
- `grid_mean` (reductions.py): adaptive average pooling as one matmul; reference: `F.adaptive_avg_pool2d`.

Each fast path gives its reference's values to rounding and the same gradients (tests/test_kernels.py
checks every pair). The switch: `set_enabled(False)` (the run option `--kernels off`) makes every call
below take its reference, whatever --conv and --fused-readout say, to rule a kernel out when a result
looks wrong, or to measure what the kernels give. torch-only: nothing here imports the rest of ffvision.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

_enabled = True


def enabled() -> bool:
    """Whether the fast paths run (else every kernel runs its plain-torch reference)."""
    return _enabled


def set_enabled(on: bool) -> None:
    """Turn every fast path on or off for this process."""
    global _enabled
    _enabled = bool(on)


@contextlib.contextmanager
def references() -> Iterator[None]:
    """Run the block with every kernel at its plain-torch reference."""
    before = enabled()
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(before)
