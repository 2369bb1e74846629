"""JSON round-trips for the frozen result dataclasses.

``to_dict`` turns a dataclass (nested dataclasses, tuples, mappings, numpy scalars) into
plain JSON values; ``from_dict`` rebuilds it from its type hints, so Profile, Proposal,
Trial and Recipe need no hand-written (de)serializers that could drift from their fields.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pipetune.core.kernel.errors import ConfigError

T = TypeVar("T")


def to_dict(value: Any) -> Any:
    """Plain JSON data for a dataclass tree. Non-finite floats become ``None``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_dict(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dict(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        return to_dict(item())
    if hasattr(value, "tolist"):  # numpy arrays
        return to_dict(value.tolist())
    return str(value)


def from_dict(cls: type[T], data: Any) -> T:
    """Rebuild dataclass ``cls`` from :func:`to_dict` output. Unknown keys are ignored
    (fields may be added to the contract, never renamed)."""
    try:
        return _convert(cls, data)
    except (TypeError, ValueError, KeyError) as exc:
        raise ConfigError(f"malformed {getattr(cls, '__name__', cls)} data: {exc}") from None


def _convert(hint: Any, data: Any) -> Any:
    """``data`` (JSON) rebuilt as annotation ``hint`` says, by the converter for its kind."""
    if data is None:
        return None
    if dataclasses.is_dataclass(hint):
        return _convert_dataclass(hint, data)
    origin = typing.get_origin(hint)
    for origins, convert in _CONVERTERS:
        if origin in origins:
            return convert(hint, data)
    if hint in (dict, Mapping):
        return _convert_mapping(hint, data)
    if hint is float:
        return float(data)
    if hint is int:
        return int(data)
    return data


def _convert_dataclass(hint: Any, data: Any) -> Any:
    """A dataclass from its JSON object, field by field; a missing required field fails."""
    hint = typing.cast(Any, hint)  # a dataclass type: hints are types, never instances
    if not isinstance(data, Mapping):
        raise TypeError(f"expected an object for {hint.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(hint)
    kwargs = {}
    for f in dataclasses.fields(hint):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name])
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise KeyError(f"{hint.__name__} needs {f.name!r}")
    return hint(**kwargs)


def _convert_union(hint: Any, data: Any) -> Any:
    """The first of the union's non-None members that ``data`` converts to."""
    non_none = [a for a in typing.get_args(hint) if a is not type(None)]
    for candidate in non_none:
        try:
            return _convert(candidate, data)
        except (TypeError, ValueError, KeyError):
            continue
    raise TypeError(f"{data!r} matches none of {hint}")


def _convert_tuple(hint: Any, data: Any) -> Any:
    """A tuple from a JSON list: ``tuple[X, ...]`` item by item, a fixed tuple by position."""
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_convert(args[0], v) for v in data)
    if args:
        return tuple(_convert(a, v) for a, v in zip(args, data, strict=True))
    return tuple(data)


def _convert_list(hint: Any, data: Any) -> Any:
    """A list from a JSON list, each item converted to the item type."""
    args = typing.get_args(hint)
    return [_convert(args[0], v) for v in data] if args else list(data)


def _convert_mapping(hint: Any, data: Any) -> Any:
    """A dict from a JSON object, each value converted to the value type."""
    args = typing.get_args(hint)
    if not isinstance(data, Mapping):
        raise TypeError(f"expected an object, got {type(data).__name__}")
    value_hint = args[1] if len(args) == 2 else Any
    return {k: _convert(value_hint, v) for k, v in data.items()}


def _convert_literal(hint: Any, data: Any) -> Any:
    """``data`` itself, when it is one of the literal's values."""
    args = typing.get_args(hint)
    if data not in args:
        raise ValueError(f"{data!r} is not one of {args}")
    return data


# _convert's table: a generic hint's origin picks its converter.
_CONVERTERS: tuple[tuple[tuple[Any, ...], Callable[[Any, Any], Any]], ...] = (
    ((typing.Union, types.UnionType), _convert_union),
    ((tuple,), _convert_tuple),
    ((list, typing.List), _convert_list),  # noqa: UP006
    ((dict, Mapping, typing.Mapping, typing.Dict), _convert_mapping),  # noqa: UP006
    ((typing.Literal,), _convert_literal),
)
