"""Architectures only, registered by name: create_model("vgg8", in_channels=1, ...)."""

from ffvision.models import convstack, mlp  # noqa: F401  (register vgg8, vgg11, vgg11a, ffcnn3, mlp, ...)
from ffvision.models.registry import create_model, list_models, register_model

__all__ = ["create_model", "list_models", "register_model"]
