"""Method registry: create_method("asge", model="vgg8", num_classes=10, in_channels=1)."""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

from ffvision.config import FIELDS
from ffvision.errors import ConfigError, unknown_name
from ffvision.methods.base import LocalMethod

_METHODS: dict[str, type[LocalMethod]] = {}


def register_method(cls: type[LocalMethod]) -> type[LocalMethod]:
    """Register a LocalMethod subclass under its `name`."""
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    """Names of all registered methods."""
    return sorted(_METHODS)


def method_class(name: str) -> type[LocalMethod]:
    """The class registered as `name` (clear error listing the choices otherwise)."""
    if name not in _METHODS:
        raise unknown_name("method", name, list(_METHODS))
    return _METHODS[name]


def method_options(name: str) -> list[str]:
    """Keyword options that method `name` accepts."""
    return list(method_defaults(name))


# Config fields every run has (the trainer's, the data's) even where a method's constructor takes them too.
_GENERAL = {"seed", "model", "image_size", "width_mult", "dropout", "lr", "weight_decay"}


def option_owners(option: str) -> list[str]:
    """The methods whose constructor takes `option` (all of them for a general option)."""
    return [m for m in list_methods() if option in method_options(m)]


def method_specific(fields: Any) -> dict[str, list[str]]:
    """Of the given config field names, those only some methods take, with the methods that take them."""
    out = {}
    for f in fields:
        owners = option_owners(f)
        if f not in _GENERAL and owners and len(owners) < len(_METHODS):
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


def method_defaults(name: str) -> dict[str, Any]:
    """Each keyword option of method `name` with its default (None where it has none; a subclass's wins)."""
    return dict(_constructor_defaults(method_class(name)))


@functools.cache
def _constructor_defaults(cls: type[LocalMethod]) -> tuple[tuple[str, Any], ...]:
    """(option, default) pairs of cls's keyword-only constructor options, following **kwargs up the MRO.

    Cached: the saved config of every checkpoint (and the divergence guard's snapshots) asks for them.
    """
    out: dict[str, Any] = {}
    for c in cls.__mro__:
        if "__init__" not in vars(c):
            continue
        params = inspect.signature(c.__init__).parameters.values()
        for p in params:
            if p.kind is p.KEYWORD_ONLY and p.name not in out:
                out[p.name] = None if p.default is inspect.Parameter.empty else p.default
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return tuple(out.items())


def create_method(name: str, **kwargs: Any) -> LocalMethod:
    """Build a method with its blocks and optimizers; unknown options are a ConfigError."""
    cls = method_class(name)
    unknown = sorted(set(kwargs) - set(method_options(name)))
    if unknown:
        raise ConfigError(f"method {name!r} does not take {', '.join(unknown)}; it takes: "
                          f"{', '.join(method_options(name))}")
    return cls(**kwargs)


def default_model(name: str) -> str:
    """The architecture a method uses when none is given (vgg8, ffcnn3, mlp, resnet18, ...)."""
    model = method_defaults(name).get("model")
    if model is None:
        raise ConfigError(f"method {name!r} needs --model")
    return model


def resolve(cfg: Any) -> Any:
    """The config with the method's default model filled in (config itself knows no methods)."""
    method_class(cfg.method)  # an unknown method is a clear error here
    return cfg if cfg.model is not None else dataclasses.replace(cfg, model=default_model(cfg.method))


def used_config(cfg: Any) -> dict[str, Any]:
    """The config as a dict without the options its method does not take (checkpoints, summary.json)."""
    return used_options(cfg.method, dataclasses.asdict(cfg))


def method_kwargs(cfg: Any, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """The config fields the method's constructor takes (None = the method's own default)."""
    kw = {k: getattr(cfg, k) for k in method_options(cfg.method) if k in FIELDS and getattr(cfg, k) is not None}
    kw.pop("image_size", None)
    return {**kw, "num_classes": num_classes, "in_channels": in_channels, "image_size": image_size}
