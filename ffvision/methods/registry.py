"""Method registry: create_method("asge", model="vgg8", num_classes=10, in_channels=1).

Torch-free: what a method takes and its defaults come from its declared options
(methods/options.py); the method's module (and torch) is imported only by `method_class`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from ffvision.config import FIELDS
from ffvision.errors import ConfigError, unknown_name
from ffvision.methods.options import METHODS, MethodOptions, MethodSpec

if TYPE_CHECKING:
    from ffvision.methods.base import LocalMethod

_SPECS: dict[str, MethodSpec] = dict(METHODS)
_CLASSES: dict[str, type[LocalMethod]] = {}


def register_method(cls: type[LocalMethod]) -> type[LocalMethod]:
    """Register a LocalMethod subclass under its spec's name (a class attribute `spec`, a MethodSpec)."""
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"{cls.__name__} needs a class attribute `spec` (a ffvision.methods.options.MethodSpec)")
    _SPECS[spec.name] = spec
    _CLASSES[spec.name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of all methods (built-in and registered)."""
    return sorted(_SPECS)


def method_spec(name: str) -> MethodSpec:
    """The declaration of method `name` (clear error listing the choices otherwise)."""
    if name not in _SPECS:
        raise unknown_name("method", name, list(_SPECS))
    return _SPECS[name]


def method_class(name: str) -> type[LocalMethod]:
    """The class of method `name`, importing its module on first use."""
    spec = method_spec(name)
    if name not in _CLASSES:
        importlib.import_module(spec.module)  # registers it
    return _CLASSES[name]


def method_defaults(name: str) -> dict[str, Any]:
    """Each option of method `name` with its default."""
    return method_spec(name).defaults()


def method_options(name: str) -> list[str]:
    """Options that method `name` takes."""
    return list(method_defaults(name))


# Config fields every run has (the trainer's, the data's) even where a method's options hold them too.
_GENERAL = {f.name for f in dataclasses.fields(MethodOptions)}


def option_owners(option: str) -> list[str]:
    """The methods that take `option`."""
    return [m for m in list_methods() if option in method_options(m)]


def method_specific(fields: Any) -> dict[str, list[str]]:
    """Of the given config field names, those only some methods take, with the methods that take them."""
    out = {}
    for f in fields:
        owners = option_owners(f)
        if f not in _GENERAL and owners and len(owners) < len(_SPECS):
            out[f] = owners
    return out


def check_options(method: str, values: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
    """ConfigError for an option that `method` does not take: any of `values` (flags given), or, with
    `defaults`, any whose value differs from its default (a resolved config)."""
    for f, owners in method_specific(values).items():
        if method not in owners and (defaults is None or values[f] != defaults[f]):
            flag = "--" + f.replace("_", "-")
            raise ConfigError(f"{flag} does not apply to method {method!r}; it is an option of "
                              f"{', '.join(owners)} (see `ffvision list --method {method}`)")


def used_options(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """The config without the options the method does not take (what recipes and saved configs hold)."""
    drop = {f for f, owners in method_specific(values).items() if method not in owners}
    return {k: v for k, v in values.items() if k not in drop}


def create_method(name: str, **kwargs: Any) -> LocalMethod:
    """Build a method with its blocks and optimizers; unknown options are a ConfigError."""
    return method_class(name)(**kwargs)  # the class checks its options against its declaration


def default_model(name: str) -> str:
    """The architecture a method uses when none is given (vgg8, ffcnn3, mlp, resnet18, ...)."""
    return method_spec(name).options().model


def resolve(cfg: Any) -> Any:
    """The config with the method's default model filled in (config itself knows no methods)."""
    method_spec(cfg.method)  # an unknown method is a clear error here
    return cfg if cfg.model is not None else dataclasses.replace(cfg, model=default_model(cfg.method))


def used_config(cfg: Any) -> dict[str, Any]:
    """The config as a dict without the options its method does not take (checkpoints, summary.json); the
    method's own options left unset hold the values the method used (its declared defaults)."""
    values = dataclasses.asdict(cfg)
    for k, v in method_defaults(cfg.method).items():
        if k not in _GENERAL and k in values and values[k] is None and v is not None:
            values[k] = v
    return used_options(cfg.method, values)


def method_kwargs(cfg: Any, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """The config fields the method takes (None = the method's own default), and the data's shape."""
    kw = {k: getattr(cfg, k) for k in method_options(cfg.method) if k in FIELDS and getattr(cfg, k) is not None}
    return {**kw, "num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
