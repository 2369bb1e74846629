"""Typed change parameters: the schema a change type declares, checked by the host.

A change type (:class:`~pipetune.core.kernel.registry.ChangeType`) declares its parameters
as a frozen dataclass and a schema version. The host checks a change's parameters against
that dataclass when the change is made (after its tune step) and again when a recipe
re-applies it, so a misspelled or missing parameter is an error naming the change and the
key, never a ``KeyError`` deep inside a plugin. A recipe written under an older schema
version is migrated through the change type's registered migrations; a newer or unknown
version is refused.

Subclass :class:`ChangeParams` to read the parameters back typed::

    @dataclass(frozen=True)
    class SetLookupParams(ChangeParams):
        slots: tuple[str, ...]

    params = SetLookupParams.of(change)  # checked, lists turned back into tuples
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pipetune.core.kernel.errors import ParamsError
from pipetune.core.kernel.serial import from_dict, to_dict

if TYPE_CHECKING:
    from pipetune.core.kernel.registry import ChangeType

P = TypeVar("P", bound="ChangeParams")


@dataclasses.dataclass(frozen=True)
class ChangeParams:
    """Base class for a change type's parameter dataclass (optional: any frozen dataclass
    works as a schema; subclassing adds :meth:`of` and :meth:`to_params`)."""

    @classmethod
    def of(cls: type[P], source: Any) -> P:
        """The typed parameters of ``source``: a :class:`~pipetune.Change`, a
        :class:`~pipetune.Proposal` (anything with ``params``) or a mapping. Raises
        :class:`~pipetune.core.kernel.errors.ParamsError` naming the offending key."""
        params = getattr(source, "params", source)
        what = getattr(source, "proposal", None) or getattr(source, "id", None) or cls.__name__
        return parse_params(cls, params, what=f"change {what}")

    def to_params(self) -> dict[str, Any]:
        """Plain JSON parameters, as a change or a proposal stores them."""
        return dict(to_dict(self))


@dataclasses.dataclass(frozen=True)
class NoParams(ChangeParams):
    """The schema of a change type that takes no parameters."""


def schema_fields(schema: type) -> dict[str, dataclasses.Field[Any]]:
    """The fields of a params dataclass, by name."""
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"a change type's params must be a dataclass, not {schema!r}")
    return {f.name: f for f in dataclasses.fields(schema)}


def check_params(schema: type, params: Mapping[str, Any], *, what: str) -> None:
    """Refuse ``params`` that do not fit ``schema``: an unknown key, a missing required
    one, or a value of the wrong JSON type. ``what`` names the change in the message."""
    if not isinstance(params, Mapping):
        raise ParamsError(f"{what}: params must be a mapping, not {type(params).__name__}")
    fields = schema_fields(schema)
    known = ", ".join(sorted(fields)) or "none"
    for key in params:
        if key not in fields:
            raise ParamsError(
                f"{what}: unknown parameter {key!r} (the {schema.__name__} schema has: {known})"
            )
    hints = typing.get_type_hints(schema)
    for name, f in fields.items():
        if name not in params:
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if required:
                raise ParamsError(f"{what}: required parameter {name!r} is missing")
            continue
        if not _matches(hints.get(name, Any), params[name]):
            raise ParamsError(
                f"{what}: parameter {name!r} is {_short(params[name])}, "
                f"not {_describe(hints.get(name, Any))}"
            )


def parse_params(schema: type[P], params: Mapping[str, Any], *, what: str) -> P:
    """``params`` checked against ``schema`` and built into an instance of it."""
    check_params(schema, params, what=what)
    return from_dict(schema, dict(params))


def migrate_params(
    change_type: ChangeType, params: Mapping[str, Any], version: int, *, where: str
) -> dict[str, Any]:
    """``params`` written under schema ``version`` of ``change_type``, brought to its
    current version through the registered migrations (one step per version).

    Raises :class:`~pipetune.core.kernel.errors.ParamsError` naming the change, ``where``
    (the recipe) and both versions when the version is newer than the plugin's or a
    migration step is missing.
    """
    current = change_type.version
    if version == current:
        return dict(params)
    owner = change_type.owner or change_type.id.partition(".")[0]
    where = f"{where}: " if where else ""
    if version > current:
        raise ParamsError(
            f"{where}change {change_type.id} was saved with params schema version "
            f"{version}, but the installed plugin {owner!r} provides version {current}: "
            "upgrade the plugin, or re-run `pipetune optimize` to make a new recipe"
        )
    migrated = dict(params)
    for step in range(version, current):
        migrate: Callable[[dict[str, Any]], Mapping[str, Any]] | None = change_type.migrations.get(
            step
        )
        if migrate is None:
            raise ParamsError(
                f"{where}change {change_type.id} was saved with params schema version "
                f"{version}; plugin {owner!r} is at version {current} and registers no "
                f"migration from version {step} to {step + 1}: re-run `pipetune optimize` "
                "to make a new recipe"
            )
        migrated = dict(migrate(dict(migrated)))
    return migrated


# -- value checks ----------------------------------------------------------------------------


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` (JSON data, or what a tune step put there) fits annotation ``hint``.
    Tuples and lists are interchangeable (JSON has only lists); numpy scalars count as
    numbers."""
    if hint is Any or hint is object:
        return True
    if value is None:
        return hint is None or hint is type(None) or _allows_none(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(arg, value) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint in (bool, int, float, str):
        return _matches_scalar(hint, value)
    if origin in (list, tuple, Sequence) or hint in (list, tuple, Sequence):
        return _matches_sequence(hint, value)
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return _matches_mapping(hint, value)
    return _matches_class(hint, value)


def _matches_scalar(hint: type, value: Any) -> bool:
    """Whether ``value`` is a bool, int, float or str as ``hint`` says (a bool is no number)."""
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    return isinstance(value, str)


def _matches_sequence(hint: Any, value: Any) -> bool:
    """Whether ``value`` is a list or tuple whose items fit ``hint``'s (a fixed tuple by
    position, else every item against the one item type)."""
    if not isinstance(value, list | tuple):
        return False
    args = typing.get_args(hint)
    if typing.get_origin(hint) is tuple and args and args[-1] is not Ellipsis:
        return len(args) == len(value) and all(map(_matches, args, value))
    return not args or all(_matches(args[0], item) for item in value)


def _matches_mapping(hint: Any, value: Any) -> bool:
    """Whether ``value`` is a mapping whose values fit ``hint``'s value type."""
    if not isinstance(value, Mapping):
        return False
    args = typing.get_args(hint)
    return len(args) != 2 or all(_matches(args[1], item) for item in value.values())


def _matches_class(hint: Any, value: Any) -> bool:
    """Whether ``value`` is an instance of class ``hint`` (a dataclass may also be its
    JSON mapping); anything else unrecognized is accepted."""
    if dataclasses.is_dataclass(hint):
        return isinstance(value, Mapping | hint)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _allows_none(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(hint)


def _describe(hint: Any) -> str:
    text = getattr(hint, "__name__", None) if isinstance(hint, type) else None
    return f"a {text}" if text else f"of type {hint}"


def _short(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({type(value).__name__})"
