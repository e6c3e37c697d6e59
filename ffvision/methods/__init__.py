"""How networks learn: one file per method, registered by name."""

from ffvision.methods import asge, backprop, ff, sff  # noqa: F401  (register the methods)
from ffvision.methods.base import LocalMethod
from ffvision.methods.registry import (
    check_options,
    create_method,
    default_model,
    list_methods,
    method_class,
    method_kwargs,
    method_options,
    register_method,
    resolve,
    used_config,
    used_options,
)

__all__ = ["LocalMethod", "check_options", "create_method", "default_model", "list_methods", "method_class",
           "method_kwargs", "method_options", "register_method", "resolve", "used_config", "used_options"]
