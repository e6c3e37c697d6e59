"""How networks learn: one file per method, registered by name; options declared in methods/options.py.

The registry and the options are torch-free; a method's module (and torch) loads when it is built.
"""

from __future__ import annotations

import importlib

from ffvision.methods.registry import (
    create_method,
    default_model,
    list_methods,
    method_class,
    method_kwargs,
    method_options,
    method_spec,
    register_method,
    used_config,
    used_options,
)

__all__ = ["LocalMethod", "create_method", "default_model", "list_methods", "method_class",
           "method_kwargs", "method_options", "method_spec", "register_method", "used_config",
           "used_options"]


def __getattr__(name: str) -> object:
    """LocalMethod (and torch) on first use."""
    if name == "LocalMethod":
        return importlib.import_module("ffvision.methods.base").LocalMethod
    raise AttributeError(f"module 'ffvision.methods' has no attribute {name!r}")
