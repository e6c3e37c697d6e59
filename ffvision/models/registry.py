"""Model registry: short named entrypoints over configurable classes (timm style)."""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from ffvision.errors import ConfigError, unknown_name

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all registered models."""
    return sorted(_MODELS)


def model_takes(name: str, option: str) -> bool:
    """Whether the entrypoint of model `name` declares the keyword `option` (e.g. filters for ffcnn3)."""
    if name not in _MODELS:
        raise unknown_name("model", name, list(_MODELS))
    return option in inspect.signature(_MODELS[name]).parameters


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model by name; unknown names and options are clear errors."""
    if name not in _MODELS:
        raise unknown_name("model", name, list(_MODELS))
    try:
        return _MODELS[name](**kwargs)
    except TypeError as e:  # an unexpected keyword is a user error, not a bug
        raise ConfigError(f"model {name!r}: {e}") from None
