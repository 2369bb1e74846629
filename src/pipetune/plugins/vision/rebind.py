"""Running a stage's own function with a library decoder swapped, without touching the
user's module: the mechanism behind reduced decode for plain decode code.

A function looks up ``Image`` in ``Image.open(path)`` (or ``cv2`` in ``cv2.imread``) in
its module's globals at every call. :class:`Rebound` runs the *same code object* with a
globals mapping of its own: a :class:`GlobalsOverlay` that answers the rebound names
(``Image`` → a :class:`ModuleView` of ``PIL.Image`` whose ``open`` is the reduced-decode
drop-in) and reads every other name live from the module, so a global the module rebinds
later is still seen. The module, its globals dict, the library module and the user's
function object are never modified; the original pipeline keeps calling the original.

Where it applies (:func:`reachable`): a plain Python function or bound method whose code
reads the decoder through a module-level name (``Image``, ``cv2``, ``iio``, a directly
imported ``imread``), and that never assigns module globals (``global x; x = ...`` would
write to the overlay, not the module). A decoder held in a closure or a local variable,
a callable object, or a function that assigns globals is out of reach: the proposal then
shows the exact line to change instead.
"""

from __future__ import annotations

import dis
import inspect
import types
from collections.abc import Mapping
from typing import Any

_WRITES_GLOBALS = frozenset({"STORE_GLOBAL", "DELETE_GLOBAL"})


class GlobalsOverlay(dict):
    """A function's globals: the overriding names held here, every other name read from
    the module's own dict at lookup time (``__missing__``)."""

    def __init__(self, base: dict[str, Any], overrides: Mapping[str, Any]):
        super().__init__(overrides)
        self["__builtins__"] = base.get("__builtins__", __builtins__)
        self._base = base

    def __missing__(self, key: str) -> Any:
        return self._base[key]


class ModuleView:
    """A library module (or object) as seen by a rebound function: the overridden
    attributes, everything else forwarded to the real module."""

    def __init__(self, target: Any, overrides: Mapping[str, Any]):
        object.__setattr__(self, "_target", target)
        for name, value in overrides.items():
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_target"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{self!r} is read-only")

    def __repr__(self) -> str:
        return f"<pipetune view of {object.__getattribute__(self, '_target')!r}>"


def _names(code: types.CodeType) -> tuple[set[str], set[str], bool]:
    """(names read as globals or attributes, local/closure names, writes globals) of
    ``code`` and the code nested in it (lambdas, comprehensions, inner functions)."""
    names, local = set(code.co_names), set(code.co_varnames) | set(code.co_freevars)
    local |= set(code.co_cellvars)
    writes = any(i.opname in _WRITES_GLOBALS for i in dis.get_instructions(code))
    for const in code.co_consts:
        if inspect.iscode(const):
            inner_names, _inner_local, inner_writes = _names(const)
            names |= inner_names
            writes = writes or inner_writes
    return names, local, writes


def _function(fn: Any) -> types.FunctionType | None:
    target = fn.__func__ if inspect.ismethod(fn) else fn
    return target if isinstance(target, types.FunctionType) else None


def resolve(fn: Any, written: str) -> Any:
    """What ``written`` (``Image.open``) names in ``fn``'s module globals; raises
    ``LookupError`` when it names nothing there."""
    function = _function(fn)
    if function is None:
        raise LookupError(f"{fn!r} is not a Python function")
    root, *rest = written.split(".")
    if root not in function.__globals__:
        raise LookupError(f"{root!r} is not a module-level name of {function.__qualname__}")
    value = function.__globals__[root]
    for part in rest:
        try:
            value = getattr(value, part)
        except AttributeError:
            raise LookupError(f"{written!r}: no attribute {part!r}") from None
    return value


def reachable(fn: Any, written: list[str] | tuple[str, ...]) -> str | None:
    """``None`` when :class:`Rebound` can swap ``written`` for ``fn``; otherwise why not,
    in words."""
    function = _function(fn)
    if function is None:
        return f"the stage's function is a {type(fn).__name__}, not a Python function"
    names, local, writes = _names(function.__code__)
    if writes:
        return f"{function.__qualname__} assigns module globals (a `global` statement)"
    for name in written:
        root = name.split(".")[0]
        if root in local or root not in names:
            return f"{name} is read from a local variable or a closure, not a module-level name"
        try:
            resolve(function, name)
        except LookupError as exc:
            return str(exc)
    return None


def _tree(replacements: Mapping[str, Any]) -> dict[str, Any]:
    """``{"PIL.Image.open": f, "PIL.Image.fromarray": g}`` → nested dicts by name part."""
    tree: dict[str, Any] = {}
    for written, value in replacements.items():
        node = tree
        *parents, last = written.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def _views(obj: Any, tree: Mapping[str, Any]) -> dict[str, Any]:
    """The overriding attribute values for ``obj``: a leaf is the replacement itself, an
    inner name a :class:`ModuleView` of the real attribute."""
    return {
        name: ModuleView(getattr(obj, name), _views(getattr(obj, name), sub))
        if isinstance(sub, dict)
        else sub
        for name, sub in tree.items()
    }


class Rebound:
    """``fn`` run with some module-level names swapped (see the module docstring).

    Calls, signature and source are ``fn``'s (``__wrapped__``); pickling rebuilds the
    overlay from ``fn`` (pickled by reference) and the replacements, so a process-based
    runtime runs the rebound function too, never silently the original.
    """

    def __init__(self, fn: Any, replacements: Mapping[str, Any]):
        function = _function(fn)
        if function is None:
            raise TypeError(f"cannot rebind names of {fn!r}: not a Python function")
        self.__wrapped__ = fn
        self.replacements = dict(replacements)
        module_globals = function.__globals__
        overrides: dict[str, Any] = {}
        for root, sub in _tree(self.replacements).items():
            overrides[root] = (
                ModuleView(module_globals[root], _views(module_globals[root], sub))
                if isinstance(sub, dict)
                else sub
            )
        rebound = types.FunctionType(
            function.__code__,
            GlobalsOverlay(module_globals, overrides),
            function.__name__,
            function.__defaults__,
            function.__closure__,
        )
        rebound.__kwdefaults__ = function.__kwdefaults__
        rebound.__qualname__ = function.__qualname__
        rebound.__module__ = function.__module__
        self._call = types.MethodType(rebound, fn.__self__) if inspect.ismethod(fn) else rebound

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Rebound, (self.__wrapped__, self.replacements))

    def __repr__(self) -> str:
        names = ", ".join(sorted(self.replacements))
        inner = getattr(self.__wrapped__, "__qualname__", self.__wrapped__)
        return f"<{inner} with {names} rebound>"
