"""ffvision: train convolutional networks without end-to-end backpropagation.

Public API: create_model, list_models, create_method, list_methods, Trainer.
"""

from ffvision.methods import LocalMethod, create_method, list_methods
from ffvision.models import create_model, list_models

__version__ = "0.1.0"

__all__ = ["LocalMethod", "Trainer", "create_method", "create_model", "list_methods", "list_models"]


def __getattr__(name: str) -> object:
    """Import the Trainer lazily (it pulls in tqdm and the data stack)."""
    if name == "Trainer":
        from ffvision.train.trainer import Trainer

        return Trainer
    raise AttributeError(name)
