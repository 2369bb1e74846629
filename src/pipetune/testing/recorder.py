"""Record every hook call on a plugin manager: which plugin, with what, returning what.

pluggy's ``add_hookcall_monitoring`` sees only calls made through ``pm.hook``, and only the
merged result; the host also calls implementations one at a time (``call_each``, to isolate
a failing plugin). So the recorder wraps each hook implementation's function instead: every
call is seen, however it is made, with the result of that one plugin.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pluggy


@dataclass
class HookCall:
    """One call of one plugin's implementation of a hook."""

    hook: str
    plugin: str
    kwargs: dict[str, Any]
    result: Any = None
    exception: BaseException | None = None
    order: int = 0

    @property
    def raised(self) -> bool:
        return self.exception is not None


@dataclass
class HookRecorder:
    """Records hook calls on ``pm`` between :meth:`install` and :meth:`uninstall` (or
    inside ``with HookRecorder(pm) as recorder:``). Plugins registered while it is
    installed are recorded too."""

    pm: pluggy.PluginManager
    calls: list[HookCall] = field(default_factory=list)
    _originals: list[tuple[Any, Callable[..., Any]]] = field(default_factory=list)
    _register: Callable[..., Any] | None = None

    # -- installing ------------------------------------------------------------------------
    def install(self) -> HookRecorder:
        if self._register is not None:
            return self
        for caller in self._callers():
            for impl in caller.get_hookimpls():
                self._wrap(caller.name, impl)
        original_register = self.pm.register
        self._register = original_register

        @functools.wraps(original_register)
        def register(plugin: Any, name: str | None = None) -> str | None:
            result = original_register(plugin, name=name)
            for caller in self.pm.get_hookcallers(plugin) or ():
                for impl in caller.get_hookimpls():
                    if impl.plugin is plugin:
                        self._wrap(caller.name, impl)
            return result

        self.pm.register = register  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        for impl, function in reversed(self._originals):
            impl.function = function
        self._originals.clear()
        if self._register is not None:
            self.pm.__dict__.pop("register", None)
            self._register = None

    def __enter__(self) -> HookRecorder:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _callers(self) -> Iterator[Any]:
        for name in dir(self.pm.hook):
            if not name.startswith("_"):
                caller = getattr(self.pm.hook, name)
                if hasattr(caller, "get_hookimpls"):
                    yield caller

    def _wrap(self, hook: str, impl: Any) -> None:
        if impl.hookwrapper or getattr(impl, "wrapper", False):
            return  # wrappers are generators around other calls: nothing of their own
        if getattr(impl.function, "__pipetune_recorded__", False):
            return
        function = impl.function
        argnames = tuple(impl.argnames)

        @functools.wraps(function)
        def recorded(*args: Any, **kwargs: Any) -> Any:
            call = HookCall(
                hook=hook,
                plugin=impl.plugin_name,
                kwargs={**dict(zip(argnames, args, strict=False)), **kwargs},
                order=len(self.calls),
            )
            self.calls.append(call)
            try:
                call.result = function(*args, **kwargs)
            except BaseException as exc:
                call.exception = exc
                raise
            return call.result

        recorded.__pipetune_recorded__ = True  # type: ignore[attr-defined]
        self._originals.append((impl, function))
        impl.function = recorded

    # -- querying --------------------------------------------------------------------------
    def calls_to(self, hook: str, plugin: str | None = None) -> list[HookCall]:
        """The calls of ``hook`` (by ``plugin`` only, when given), in call order."""
        return [c for c in self.calls if c.hook == hook and (plugin is None or c.plugin == plugin)]

    def results(self, hook: str) -> list[tuple[str, Any]]:
        """``(plugin, result)`` for each call of ``hook`` that returned something."""
        return [(c.plugin, c.result) for c in self.calls_to(hook) if c.result is not None]

    def plugins_called(self, hook: str) -> list[str]:
        return [c.plugin for c in self.calls_to(hook)]

    def hooks_called(self) -> list[str]:
        """Hook names in the order they were first called."""
        return list(dict.fromkeys(c.hook for c in self.calls))

    def assert_called(
        self, hook: str, plugin: str | None = None, times: int | None = None
    ) -> list[HookCall]:
        calls = self.calls_to(hook, plugin)
        who = f" on plugin {plugin!r}" if plugin else ""
        if not calls:
            seen = ", ".join(self.hooks_called()) or "none"
            raise AssertionError(f"hook {hook}{who} was never called (hooks called: {seen})")
        if times is not None and len(calls) != times:
            raise AssertionError(f"hook {hook}{who} was called {len(calls)} times, not {times}")
        return calls

    def assert_not_called(self, hook: str, plugin: str | None = None) -> None:
        calls = self.calls_to(hook, plugin)
        if calls:
            who = ", ".join(sorted({c.plugin for c in calls}))
            raise AssertionError(f"hook {hook} was called {len(calls)} times (plugins: {who})")

    def clear(self) -> None:
        self.calls.clear()
