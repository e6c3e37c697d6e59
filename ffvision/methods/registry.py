"""Method registry: create_method("asge", model="vgg8", num_classes=10, in_channels=1).

Torch-free: what a method takes and its defaults come from its declared options
(methods/options.py); the method's module (and torch) is imported only by `method_class`.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import TYPE_CHECKING, Any

from ffvision.errors import unknown_name
from ffvision.methods.options import METHODS, MethodSpec
from ffvision.options import Declaration, declarations

if TYPE_CHECKING:
    from ffvision.methods.base import LocalMethod

_SPECS: dict[str, MethodSpec] = dict(METHODS)
_CLASSES: dict[str, type[LocalMethod]] = {}


def register_method(cls: type[LocalMethod]) -> type[LocalMethod]:
    """Register a LocalMethod subclass under its spec's name (a class attribute `spec`, a MethodSpec)."""
    spec = getattr(cls, "spec", None)
    if not isinstance(spec, MethodSpec):
        raise TypeError(f"{cls.__name__} needs a class attribute `spec` (a ffvision.methods.options.MethodSpec)")
    check_one_declaration(spec)
    _SPECS[spec.name] = spec
    _CLASSES[spec.name] = cls
    return cls


def check_one_declaration(spec: MethodSpec) -> None:
    """TypeError if the spec's options declare anew an option another method declares: an option is one flag
    with one help, so methods that share one derive it from one options class."""
    theirs = {k: d.owner for m in _SPECS if m != spec.name for k, d in declarations(_SPECS[m].options).items()}
    for k, d in declarations(spec.options).items():
        if theirs.get(k, d.owner) is not d.owner:
            raise TypeError(f"{spec.options.__name__}.{k} is declared by {theirs[k].__name__} too: derive it from "
                            "that options class or choose another name")


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


def method_declarations(name: str) -> dict[str, Declaration]:
    """The options of method `name` as declared (type, default, help, choices, bounds)."""
    return declarations(method_spec(name).options)


def option_declarations() -> dict[str, Declaration]:
    """Every method option of every registered method, by name (one declaration each: a method that changes
    only a default keeps the declaration above it)."""
    out: dict[str, Declaration] = {}
    for m in list_methods():
        for k, d in method_declarations(m).items():
            out.setdefault(k, d)
    return out


def option_owners(option: str) -> list[str]:
    """The methods that take `option`."""
    return [m for m in list_methods() if option in method_options(m)]


def used_options(method: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` without the method options that `method` does not take (a recipe of another method)."""
    theirs = set(option_declarations()) - set(method_options(method))
    return {k: v for k, v in values.items() if k not in theirs}


def create_method(name: str, **kwargs: Any) -> LocalMethod:
    """Build a method with its blocks and optimizers; unknown options are a ConfigError."""
    return method_class(name)(**kwargs)  # the class checks its options against its declaration


def default_model(name: str) -> str:
    """The architecture a method uses when none is given (vgg8, ffcnn3, mlp, resnet18, ...)."""
    return method_spec(name).options().model


def used_config(cfg: Any) -> dict[str, Any]:
    """The config as one flat dict, the method's options at the values it uses (checkpoints, summary.json)."""
    opts = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg.method_options()).items()}
    return {**{k: v for k, v in cfg.to_dict().items() if k not in opts}, **opts}


def method_kwargs(cfg: Any, num_classes: int, in_channels: int, image_size: int) -> dict[str, Any]:
    """The method options given (the method's defaults for the rest), the seed and the data's shape."""
    return {**cfg.options, "seed": cfg.seed, "num_classes": num_classes, "in_channels": in_channels,
            "image_size": image_size}
