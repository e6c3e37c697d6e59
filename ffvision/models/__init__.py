"""Architectures only, registered by name: create_model("vgg8", in_channels=1, ...).

Each architecture's module (and torch) is imported when a model of it is built.
"""

from ffvision.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
