"""The settings checker: builds a frozen dataclass from a config mapping, checking every value once.

:func:`build` reads each field's annotation (``int``, ``float``, ``bool``, ``str``, ``X | None``,
``Literal[...]``, ``tuple[X, ...]``, ``dict[str, str]`` or a nested section) and the bounds in its
``Annotated`` metadata (:class:`Bounds`), and refuses a wrong value with one line that names the key.
The sections themselves are in :mod:`gap_spark.core.settings`.
"""
from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from gap_spark.core.errors import ConfigError

__all__ = ["Bounds", "Count", "Fraction", "NonNegative", "Positive", "Seed", "build", "require"]

@dataclass(frozen=True)
class Bounds:
    """``Annotated`` metadata: the value (or every element of a tuple) must lie within these bounds."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None


Count = Annotated[int, Bounds(ge=1)]
Seed = Annotated[int, Bounds(ge=0)]
NonNegative = Annotated[float, Bounds(ge=0)]
Positive = Annotated[float, Bounds(gt=0)]
Fraction = Annotated[float, Bounds(ge=0, le=1)]


# --------------------------------------------------------------------------------------------------
# The checker
# --------------------------------------------------------------------------------------------------

def _type_name(hint: Any) -> str:
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _is_optional(hint: Any) -> tuple[bool, Any]:
    if get_origin(hint) in (Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def _scalar(value: Any, hint: Any, key: str) -> Any:
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            try:  # YAML 1.1 reads 1e-6 (no dot) as a string
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return value
    raise TypeError(f"settings: no checker for {hint!r} ({key})")  # a bug in a dataclass, not user input


def _coerce(value: Any, hint: Any, key: str) -> Any:
    if get_origin(hint) is Annotated:
        base, *extras = get_args(hint)
        value = _coerce(value, base, key)
        for bounds in extras:
            if isinstance(bounds, Bounds):
                _check_bounds(value, bounds, key)
        return value
    optional, inner = _is_optional(hint)
    if optional:
        return None if value is None else _coerce(value, inner, key)
    if get_origin(hint) in (Union, types.UnionType):  # X | Y: the first member the value fits
        for member in get_args(hint):
            try:
                return _coerce(value, member, key)
            except ConfigError:
                continue
        names = " or ".join(_type_name(m) for m in get_args(hint))
        raise ConfigError(f"config key '{key}' must be {names}, got {value!r}")
    if value is None:
        raise ConfigError(f"config key '{key}' must be set, got null")
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)  # type: ignore[arg-type]
    origin = get_origin(hint)
    if origin is Literal:
        choices = get_args(hint)
        if isinstance(value, str) and value.strip().lower() in [str(c).lower() for c in choices]:
            return next(c for c in choices if str(c).lower() == value.strip().lower())
        raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, choices))}, got {value!r}")
    if origin is tuple:
        element = get_args(hint)[0]
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}")
        return tuple(_coerce(v, element, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}")
        return {str(k): str(v) for k, v in value.items()}
    return _scalar(value, hint, key)


def _check_bounds(value: Any, bounds: Bounds, key: str) -> None:
    checks = ((bounds.ge, ">=", lambda v, b: v >= b), (bounds.gt, ">", lambda v, b: v > b),
              (bounds.le, "<=", lambda v, b: v <= b), (bounds.lt, "<", lambda v, b: v < b))
    for limit, sign, holds in checks:
        if limit is not None and not holds(value, limit):
            raise ConfigError(f"config key '{key}' must be {sign} {limit:g}, got {value!r}")


def build(cls: type, data: Any, prefix: str) -> Any:
    """An instance of the settings dataclass ``cls`` from the mapping ``data``, every value checked.

    Parameters
    ----------
    cls : type
        A frozen dataclass of this module.
    data : mapping
        The config section (defaults already merged in).
    prefix : str
        The section's dotted key, for messages.

    Raises
    ------
    ConfigError
        One line naming the first key whose value is missing, of the wrong type or out of bounds.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{prefix}' is a section and needs a mapping, got {data!r}")
    hints = get_type_hints(cls, include_extras=True)
    values = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}"
        if f.name not in data:
            raise ConfigError(f"config key '{key}' is missing")
        values[f.name] = _coerce(data[f.name], hints[f.name], key)
    return cls(**values)


def require(ok: bool, message: str) -> None:
    """Refuse a rule that ties two keys together, with one line."""
    if not ok:
        raise ConfigError(message)
