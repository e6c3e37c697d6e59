"""Model registry: short named entrypoints over configurable classes (timm style).

Torch-free until a model is built: the built-in names are listed here with the module that
registers them, imported on first use (so `ffvision list` does not load torch).
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Callable

from ffvision.errors import ConfigError, unknown_name

if TYPE_CHECKING:
    from torch import nn

# Built-in architectures and the module whose import registers each (tests check the two agree).
BUILTIN = {**dict.fromkeys(("vgg8", "vgg11", "vgg11a", "ffcnn3", "ffcnn4", "ffcnn6"), "ffvision.models.convstack"),
           "mlp": "ffvision.models.mlp", "cwresnet17": "ffvision.models.cwresnet",
           **dict.fromkeys(("resnet18", "mobilenet_v3_small", "mobilenet_v3_large"), "ffvision.models.tv")}
_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a model builder under its function name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names of all models (built-in and registered)."""
    return sorted(set(BUILTIN) | set(_MODELS))


def _entrypoint(name: str) -> Callable[..., nn.Module]:
    """The builder of model `name`, importing its module on first use."""
    if name not in _MODELS and name in BUILTIN:
        importlib.import_module(BUILTIN[name])
    if name not in _MODELS:
        raise unknown_name("model", name, list_models())
    return _MODELS[name]


def model_takes(name: str, option: str) -> bool:
    """Whether the entrypoint of model `name` declares the keyword `option` (e.g. filters for ffcnn3)."""
    return option in inspect.signature(_entrypoint(name)).parameters


def sized_by_classes(name: str) -> bool:
    """Whether model `name`'s layers are laid out by class (channel groups), so it is built for the data's classes
    even as a feature stack."""
    return bool(getattr(_entrypoint(name), "sized_by_classes", False))


def create_model(name: str, **kwargs: object) -> nn.Module:
    """Build a registered model by name; unknown names and options are clear errors."""
    fn = _entrypoint(name)
    try:
        return fn(**kwargs)
    except TypeError as e:  # an option the model does not take is a user error; any other TypeError a bug
        if "unexpected keyword argument" not in str(e) or not any(f"'{k}'" in str(e) for k in kwargs):
            raise
        raise ConfigError(f"model {name!r}: {e}") from None
