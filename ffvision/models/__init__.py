"""Architectures only, registered by name: create_model("vgg8", in_channels=1, ...)."""

from ffvision.models import convstack, mlp, tv  # noqa: F401  (register every architecture)
from ffvision.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
