"""ffvision: train convolutional networks without end-to-end backpropagation.

Public API: create_model, list_models, create_method, list_methods, LocalMethod, Trainer.
They are imported on first use (PEP 562), so `import ffvision` and `ffvision --help` do not
load torch. Progress and results are logged to `logging.getLogger("ffvision")`.
"""

from __future__ import annotations

import importlib
import logging

__version__ = "0.3.0.dev0"

# A library logs; the program decides what reaches the terminal (the `ffvision` command configures it).
logging.getLogger("ffvision").addHandler(logging.NullHandler())

_LAZY = {"LocalMethod": "ffvision.methods", "create_method": "ffvision.methods", "list_methods": "ffvision.methods",
         "create_model": "ffvision.models", "list_models": "ffvision.models", "Trainer": "ffvision.train.trainer"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> object:
    """Import a public name's module on first use."""
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ffvision' has no attribute {name!r}")
