"""Building blocks shared by every method: local blocks, readouts, normalisation."""

from ffvision.core.block import BlockOutput, LocalBlock
from ffvision.core.labels import (
    OneHotPixels,
    SpatialLabels,
    hard_negative_labels,
    make_label_encoding,
    negative_labels,
)
from ffvision.core.norm import RMSNorm, rms_normalize
from ffvision.core.readouts import (
    ClassGroupMean,
    GoodnessReadout,
    LinearReadout,
    SpatialGoodnessReadout,
    adaptive_grid,
    init_linear,
)
from ffvision.kernels.dropout import FastDropout, fast_dropout

__all__ = [
    "BlockOutput",
    "ClassGroupMean",
    "FastDropout",
    "fast_dropout",
    "GoodnessReadout",
    "OneHotPixels",
    "SpatialLabels",
    "make_label_encoding",
    "negative_labels",
    "hard_negative_labels",
    "LinearReadout",
    "LocalBlock",
    "RMSNorm",
    "SpatialGoodnessReadout",
    "adaptive_grid",
    "init_linear",
    "rms_normalize",
]
