"""Declaring an option once: its type, default, help, choices and bounds, in a dataclass field.

    @dataclass(frozen=True)
    class MyOptions(MethodOptions):
        gain: float = option(1.0, "how much louder", gt=0)

The CLI flags (`--gain`), recipe validation, `ffvision list`, the bench's flags and docs/options.md
are generated from these declarations (`declarations`), and `check_value` enforces them. A subclass
that only changes a default (`lr: float = 1e-2`) keeps the help, choices and bounds declared above it.
Torch-free.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ffvision.errors import ConfigError

_BOUNDS = ("gt", "ge", "lt", "le")


def option(default: Any, help: str, *, choices: tuple[str, ...] | None = None, gt: float | None = None,
           ge: float | None = None, lt: float | None = None, le: float | None = None,
           topic: str | None = None) -> Any:
    """A dataclass field with its --help text, allowed values (choices; bounds gt/ge/lt/le) and --help topic."""
    meta = {"help": help, "choices": choices, "topic": topic,
            "bounds": {k: v for k, v in zip(_BOUNDS, (gt, ge, lt, le)) if v is not None}}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Declaration:
    """One option as declared: name, type, default, help, choices, bounds, --help topic, declaring class."""

    name: str
    hint: Any
    default: Any
    help: str
    choices: tuple[str, ...] | None
    bounds: dict[str, float]
    topic: str | None
    owner: type

    @property
    def flag(self) -> str:
        """The CLI flag: width_mult -> --width-mult."""
        return "--" + self.name.replace("_", "-")

    @property
    def base_type(self) -> Any:
        """The type without None (int for `int | None`; list[float] stays list[float])."""
        args = typing.get_args(self.hint) if isinstance(self.hint, types.UnionType) else (self.hint,)
        return next(a for a in args if a is not type(None))

    def allowed(self) -> str:
        """The allowed values in words: 'one of a, b', '> 0', 'in [0, 1)', or ''."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        b = self.bounds
        lo = ("(", b["gt"]) if "gt" in b else ("[", b["ge"]) if "ge" in b else None
        hi = (")", b["lt"]) if "lt" in b else ("]", b["le"]) if "le" in b else None
        if lo and hi:
            return f"in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
        if lo == ("[", 1) and self.base_type is int:
            return "positive"
        if lo and lo[1] == 0:
            return "positive" if lo[0] == "(" else "zero or positive"
        if lo:
            return f"{'>' if lo[0] == '(' else '>='} {_num(lo[1])}"
        if hi:
            return f"{'<' if hi[0] == ')' else '<='} {_num(hi[1])}"
        return ""


def _num(v: float) -> str:
    """A bound as written: 1 rather than 1.0."""
    return str(int(v)) if float(v).is_integer() else str(v)


@functools.cache
def declarations(cls: type) -> dict[str, Declaration]:
    """The options of a dataclass, by name, in field order; help, choices, bounds and topic come from the
    class that declared the field with `option` (a subclass may change only the default)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        meta = next((c.__dataclass_fields__[f.name].metadata for c in cls.__mro__
                     if f.name in getattr(c, "__dataclass_fields__", {})
                     and "help" in c.__dataclass_fields__[f.name].metadata), {})
        owner = next(c for c in reversed(cls.__mro__) if f.name in getattr(c, "__dataclass_fields__", {}))
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        out[f.name] = Declaration(f.name, hints[f.name], default, meta.get("help", ""), meta.get("choices"),
                                  dict(meta.get("bounds", {})), meta.get("topic"), owner)
    return out


def check_value(d: Declaration, value: Any) -> Any:
    """`value` converted to the declared type (int -> float, a list -> tuple where declared) and checked
    against the choices and bounds; a ConfigError naming the option otherwise."""
    value = _coerce(d, value)
    if value is None:
        return None
    if d.choices is not None and value not in d.choices:
        raise ConfigError(f"{d.name} must be one of {', '.join(d.choices)}, got {value!r}")
    b = d.bounds
    items = value if isinstance(value, (list, tuple)) else (value,)
    for v in items:
        if (("gt" in b and not v > b["gt"]) or ("ge" in b and not v >= b["ge"])
                or ("lt" in b and not v < b["lt"]) or ("le" in b and not v <= b["le"])):
            got = value if items is not value else v
            raise ConfigError(f"{d.name} must be {d.allowed()}, got {got!r}")
    return value


def _coerce(d: Declaration, value: Any) -> Any:
    """Check `value` against the declared type, converting where harmless (int -> float, '2e-4' -> float)."""
    args = typing.get_args(d.hint) if isinstance(d.hint, types.UnionType) else (d.hint,)
    if value is None:
        if type(None) in args:
            return None
        raise ConfigError(f"{d.name} cannot be empty")
    for t in args:
        origin = typing.get_origin(t)
        if origin in (list, tuple):
            if isinstance(value, (list, tuple)) and all(_is_number(v) for v in value):
                return origin(float(v) for v in value)
            continue
        if t is bool and isinstance(value, bool):
            return value
        if t is float and _is_number(value):
            return float(value)
        if t is float and isinstance(value, str):  # YAML 1.1 reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                continue
        if t is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if t is str and isinstance(value, str):
            return value
    expected = " or ".join(_type_name(t) for t in args if t is not type(None))
    raise ConfigError(f"{d.name} must be {expected}, got {value!r}")


def _is_number(v: Any) -> bool:
    """int or float, not bool."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _type_name(t: Any) -> str:
    """'float', 'a list of numbers', ..."""
    return "a list of numbers" if typing.get_origin(t) in (list, tuple) else getattr(t, "__name__", str(t))


def check_fields(obj: Any) -> None:
    """Check (and convert in place) every field of a dataclass instance against its declaration."""
    for name, d in declarations(type(obj)).items():
        object.__setattr__(obj, name, check_value(d, getattr(obj, name)))
