"""The plugin manager factory, plugin loading in isolation, and merged-result checks.

No manager exists at import time: :func:`get_plugin_manager` builds one. Built-in plugins
load through the same path as third-party ones (a module name and a plugin name);
third-party plugins come from the ``pipetune`` entry-point group. Each plugin loads in
isolation: one that fails to import, targets a newer plugin API, or implements a hook that
does not exist (a misspelling) is reported with its name and version, and the rest load.
``PIPETUNE_STRICT_PLUGINS=1`` (or ``strict=True``) fails fast instead.

Every hook call the host makes one implementation at a time (:meth:`call_each`,
:meth:`call_owner`, :meth:`call_first`) is bounded: it runs on a worker thread with a
deadline (:data:`HOOK_TIMEOUT_S`, longer for tuning and materializing), and one that
outlasts it is named, its result dropped, and the run goes on. A hook that raises, calls
``sys.exit()``, or returns the wrong kind of value is recorded as a
:class:`HookFailure` (listeners, such as the CLI's warning line, hear about it at once);
strict mode makes each of them a :class:`PluginError`.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.metadata
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pluggy

from pipetune.core.kernel import dispatch, hookspecs
from pipetune.core.kernel.errors import DuplicateError, PipetuneError, PluginError
from pipetune.core.kernel.plugin_checks import (
    IncompatiblePlugin,
    check_api_version,
    describe_failure,
    describe_validation_error,
    exit_message,
    is_plugin_object,
    module_loader,
    pipetune_version,
)

if TYPE_CHECKING:
    from pathlib import Path

    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Pipeline
    from pipetune.core.kernel.registry import ChangeType, OutputKind
    from pipetune.core.kernel.results import Change, Fidelity, Proposal, Tuned

#: The built-in plugins: (plugin name, module). Loaded exactly like entry points.
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("generic", "pipetune.plugins.generic.plugin"),
    ("recsys", "pipetune.plugins.recsys.plugin"),
    ("nlp", "pipetune.plugins.nlp.plugin"),
    ("vision", "pipetune.plugins.vision.plugin"),
    ("llm", "pipetune.plugins.llm.plugin"),
    ("hardware", "pipetune.plugins.hardware.plugin"),
)
ENTRY_POINT_GROUP = "pipetune"
STRICT_ENV = "PIPETUNE_STRICT_PLUGINS"
DISABLE_ENV = "PIPETUNE_DISABLE_PLUGINS"
#: Seconds: caps every hook's bound (CI, tests), e.g. ``PIPETUNE_HOOK_TIMEOUT=30``.
HOOK_TIMEOUT_ENV = "PIPETUNE_HOOK_TIMEOUT"

T = TypeVar("T")

#: How long one plugin hook call may take before it is abandoned and reported.
HOOK_TIMEOUT_S = 120.0
#: Hooks that do real work get longer (an index build, an export): seconds per hook.
HOOK_TIMEOUTS: dict[str, float | None] = {
    "tune_proposal": 3600.0,
    "materialize_change": 600.0,
    "profile_pipeline": 600.0,
    "calibration_inputs": 600.0,
    "register_commands": None,  # called while the CLI is built, before any command runs
}
#: Hooks whose result is a mapping (anything else is a recorded failure, dropped).
MAPPING_HOOKS = ("inspect_pipeline", "profile_pipeline")
#: Hooks whose result is a list of values: a bare string is one value, not characters.
LIST_HOOKS = (
    "register_dependencies",
    "register_backends",
    "register_demos",
    "stage_hints",
    "propose_changes",
    "scan_rules",
    "scan_file",
)


@dataclass(frozen=True)
class PluginStatus:
    """How loading one plugin went."""

    name: str
    source: str  # "builtin", "entrypoint" or "explicit"
    status: str  # "loaded", "failed", "disabled" or "incompatible"
    version: str = ""
    distribution: str = ""
    module: str = ""
    error: str = ""
    hooks: tuple[str, ...] = ()


@dataclass(frozen=True)
class HookFailure:
    """A plugin failed inside a hook (raised, exited, outlasted its bound, or returned
    the wrong kind of value); the others went on."""

    plugin: str
    hook: str
    error: str

    @property
    def message(self) -> str:
        return f"plugin {self.plugin!r} failed in {self.hook}: {self.error}"


class PipetunePluginManager(pluggy.PluginManager):
    """A pluggy manager that records how each plugin loaded and isolates hook failures."""

    def __init__(self, *, strict: bool = False):
        super().__init__(hookspecs.PROJECT_NAME)
        self.add_hookspecs(hookspecs)
        self.strict = strict
        self.load_report: list[PluginStatus] = []
        self.hook_failures: list[HookFailure] = []
        #: Called with each new :class:`HookFailure` (the CLI prints a warning line).
        self.failure_listeners: list[Callable[[HookFailure], None]] = []
        #: Per-hook bounds (seconds; ``None``: unbounded); defaults to :data:`HOOK_TIMEOUTS`.
        self.hook_timeouts: dict[str, float | None] = dict(HOOK_TIMEOUTS)
        self.default_hook_timeout_s: float = HOOK_TIMEOUT_S

    def cap_hook_timeouts(self, seconds: float) -> None:
        """No hook call may take longer than ``seconds`` (unbounded ones included)."""
        self.default_hook_timeout_s = min(self.default_hook_timeout_s, seconds)
        for hook, bound in self.hook_timeouts.items():
            self.hook_timeouts[hook] = seconds if bound is None else min(bound, seconds)

    # -- loading ---------------------------------------------------------------------------
    def load_plugin(
        self,
        name: str,
        plugin: Any | Callable[[], Any],
        *,
        source: str = "explicit",
        distribution: str = "",
        version: str = "",
        module: str = "",
    ) -> PluginStatus:
        """Register one plugin (an object, or a zero-argument loader returning it) in
        isolation. Returns its status; raises only in strict mode."""
        try:
            try:
                obj = plugin() if callable(plugin) and not is_plugin_object(plugin) else plugin
            except SystemExit as exc:  # a plugin module that exits while it is imported
                raise PluginError(f"calling sys.exit({exc.code!r}) while it was imported") from exc
            check_api_version(name, obj, distribution, version)
            try:
                self.register(obj, name=name)
            except pluggy.PluginValidationError as exc:
                raise describe_validation_error(name, exc) from exc
            unknown = self._unknown_hooks(obj)
            if unknown:
                self.unregister(obj)
                raise PluginError(unknown)
        except Exception as exc:  # one broken plugin must not take the host down
            status = "incompatible" if isinstance(exc, IncompatiblePlugin) else "failed"
            message = describe_failure(exc)
            record = PluginStatus(name, source, status, version, distribution, module, message)
            self.load_report.append(record)
            if self.strict:
                where = f" ({distribution} {version})" if distribution else ""
                raise PluginError(f"plugin {name!r}{where} failed to load: {message}") from exc
            return record
        hooks = tuple(sorted(caller.name for caller in self.get_hookcallers(obj) or ()))
        record = PluginStatus(name, source, "loaded", version, distribution, module, "", hooks)
        self.load_report.append(record)
        return record

    def _unknown_hooks(self, plugin: Any) -> str:
        """A message for hookimpls that match no hookspec (misspelled hooks), else ''."""
        known = [name for name, caller in vars(self.hook).items() if caller.spec is not None]
        problems = []
        for caller in self.get_hookcallers(plugin) or ():
            if caller.spec is None:
                close = difflib.get_close_matches(caller.name, known, n=1)
                hint = (
                    f" (did you mean {close[0]!r}?)"
                    if close
                    else f" (not in plugin API {hookspecs.API_VERSION}: a misspelling, or the "
                    "plugin needs a newer pipetune)"
                )
                problems.append(f"unknown hook {caller.name!r}{hint}")
        return "; ".join(problems)

    def check_pending(self) -> None:
        """Raise :class:`PluginError` for hook implementations without a spec."""
        try:
            super().check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from None

    # -- calling ---------------------------------------------------------------------------
    def call_each(self, hook: str, **kwargs: Any) -> list[tuple[str, Any]]:
        """Call every implementation of ``hook`` one at a time, in pluggy's order.

        Returns ``(plugin_name, result)`` for each non-``None`` result. A plugin that
        raises, exits, or outlasts its bound is recorded in :attr:`hook_failures` (and the
        others still run), unless the manager is strict: then it is a :class:`PluginError`.
        """
        caller = getattr(self.hook, hook)
        results: list[tuple[str, Any]] = []
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            ok, value = self._call_impl(hook, impl, kwargs)
            if ok and value is not None:
                checked = self._checked(hook, impl.plugin_name, value)
                if checked is not None:
                    results.append((impl.plugin_name, checked))
        return results

    def call_first(self, hook: str, *, returns: type | None = None, **kwargs: Any) -> Any:
        """A ``firstresult`` hook, one implementation at a time in pluggy's order, each
        bounded and isolated like :meth:`call_each`: the first non-``None`` result (of
        type ``returns`` when given: another kind of value is a recorded failure, and the
        next implementation is asked)."""
        caller = getattr(self.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            ok, value = self._call_impl(hook, impl, kwargs)
            if not ok or value is None:
                continue
            if returns is not None and not isinstance(value, returns):
                self.record_failure(
                    impl.plugin_name,
                    hook,
                    f"returned {type(value).__name__}, not {returns.__name__}; ignored",
                )
                continue
            return value
        return None

    def record_failure(
        self, plugin: str, hook: str, error: str, exc: BaseException | None = None
    ) -> None:
        """Record that ``plugin`` failed in ``hook`` (strict mode: raise
        :class:`PluginError` instead), and tell the listeners."""
        if self.strict:
            raise PluginError(f"plugin {plugin!r} failed in {hook}: {error}") from exc
        failure = HookFailure(plugin, hook, error)
        if failure in self.hook_failures:
            return
        self.hook_failures.append(failure)
        for listener in list(self.failure_listeners):
            with contextlib.suppress(Exception):  # a warning line must never stop the run
                listener(failure)

    def _call_impl(self, hook: str, impl: Any, kwargs: dict[str, Any]) -> tuple[bool, Any]:
        """Call one implementation, bounded; ``(False, None)`` when it failed (recorded)."""
        try:
            args = [kwargs[name] for name in impl.argnames]
        except KeyError as exc:
            raise PluginError(
                f"hook {hook}: plugin {impl.plugin_name!r} asks for argument {exc} "
                "which this host does not provide"
            ) from None
        try:
            return True, self._bounded(hook, impl.plugin_name, lambda: impl.function(*args))
        except KeyboardInterrupt:
            raise
        except PluginError as exc:  # strict mode below (a nested call), or the plugin's own
            if self.strict:
                raise
            self.record_failure(impl.plugin_name, hook, str(exc), exc)
        except TimeoutError as exc:
            self.record_failure(impl.plugin_name, hook, f"{exc}; its result was dropped", exc)
        except SystemExit as exc:
            self.record_failure(impl.plugin_name, hook, exit_message(exc), exc)
        except Exception as exc:
            self.record_failure(impl.plugin_name, hook, f"{type(exc).__name__}: {exc}", exc)
        return False, None

    def _bounded(self, hook: str, plugin: str, fn: Callable[[], T]) -> T:
        """``fn()`` on a worker thread within the hook's bound (see the module docstring)."""
        from pipetune.core.kernel import isolation, workers

        isolation.mark(f"hook {hook} of plugin {plugin!r}")
        bound = self.hook_timeouts.get(hook, self.default_hook_timeout_s)
        what = f"plugin {plugin!r} in {hook}"
        return workers.call(fn, timeout_s=bound, what=what)

    def _checked(self, hook: str, plugin: str, value: Any) -> Any:
        """A result in the shape its hook promises, or ``None`` (a recorded failure): a
        list hook's bare string is one item, never a list of characters; a mapping hook's
        result must be a mapping. (Callers check the items, and a single object.)"""
        if hook in MAPPING_HOOKS and not isinstance(value, Mapping):
            self.record_failure(
                plugin, hook, f"returned {type(value).__name__}, not a mapping; ignored"
            )
            return None
        if hook in LIST_HOOKS:
            if isinstance(value, Mapping):
                self.record_failure(plugin, hook, "returned a mapping, not a list; ignored")
                return None
            if isinstance(value, str | bytes):
                return [value]
        return value

    def call_owner(self, hook: str, owner: str, **kwargs: Any) -> Any:
        """Call ``hook`` on plugin ``owner`` only (apply is dispatched to the plugin that
        made the proposal). Returns its result, or ``None`` if it does not implement it."""
        plugin = self.get_plugin(owner)
        if plugin is None:
            raise PluginError(
                f"no plugin named {owner!r} is loaded (loaded: {', '.join(self.plugin_names())})"
            )
        others = [p for p in self.get_plugins() if p is not plugin]
        caller = self.subset_hook_caller(hook, remove_plugins=others)
        try:
            return self._bounded(hook, owner, lambda: caller(**kwargs))
        except (PipetuneError, KeyboardInterrupt):
            raise  # Rejected, Deferred and the like: what the hook means to say
        except TimeoutError as exc:
            self.record_failure(owner, hook, f"{exc}; its result was dropped", exc)
            raise
        except SystemExit as exc:
            message = exit_message(exc)
            self.record_failure(owner, hook, message, exc)
            raise PluginError(f"plugin {owner!r} in {hook}: {message}") from exc
        except Exception as exc:
            self.record_failure(owner, hook, f"{type(exc).__name__}: {exc}", exc)
            raise

    def problems(self) -> list[str]:
        """Every plugin problem so far, as sentences: plugins that failed to load, then
        hook failures (for the warnings of every report)."""
        found = []
        for status in self.load_report:
            if status.status in ("failed", "incompatible"):
                where = f" ({status.distribution} {status.version})" if status.distribution else ""
                found.append(f"plugin {status.name!r}{where} failed to load: {status.error}")
        found.extend(failure.message for failure in self.hook_failures)
        return found

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.list_name_plugin())

    # -- merged registrations ----------------------------------------------------------------
    def collect(self, hook: str, key: Callable[[T], str], what: str) -> dict[str, tuple[str, T]]:
        """Merge every plugin's list from a ``register_*`` hook, keyed by ``key``.

        Duplicate keys raise :class:`DuplicateError` naming both plugins; nothing is renamed.
        """
        merged: dict[str, tuple[str, T]] = {}
        for plugin_name, values in self.call_each(hook):
            for value in values:
                merge_unique(merged, key(value), plugin_name, value, what)
        return merged

    def backends(self) -> dict[str, tuple[str, Any]]:
        return self.collect("register_backends", lambda b: b.name, "backend")

    def demos(self) -> dict[str, tuple[str, Any]]:
        return self.collect("register_demos", lambda d: d.name, "demo")

    def thread_pools(self) -> dict[str, Any]:
        """Every registered thread pool by name, with its owner set (duplicates refused,
        naming both plugins)."""
        from dataclasses import replace

        merged: dict[str, tuple[str, Any]] = self.collect(
            "register_thread_pools", lambda p: p.name, "thread pool"
        )
        return {name: replace(pool, owner=owner) for name, (owner, pool) in merged.items()}

    def dependencies(self) -> list[tuple[str, Any]]:
        return [
            (name, dep) for name, deps in self.call_each("register_dependencies") for dep in deps
        ]

    # -- the change and output-kind contract (see pipetune.core.kernel.dispatch) -------------
    def change_types(self) -> dict[str, ChangeType]:
        """Every registered change type by id (duplicates refused, naming both plugins)."""
        return dispatch.change_types(self)

    def output_kinds(self) -> dict[str, OutputKind]:
        """Every registered output kind by name (duplicates refused, naming both plugins)."""
        return dispatch.output_kinds(self)

    def tune(self, proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned | None:
        """Tune ``proposal`` through the change type registered for its id."""
        return dispatch.tune(self, proposal, pipeline, context)

    def make_change(self, proposal: Proposal, tuned: Tuned | None) -> Change:
        """The recipe's record of ``proposal`` tuned as ``tuned`` (params checked, versioned)."""
        return dispatch.make_change(self, proposal, tuned)

    def materialize(
        self, change: Change, pipeline: Pipeline, artifacts_dir: str | Path, *, where: str = ""
    ) -> Pipeline | None:
        """Build ``change`` on ``pipeline`` through the change type registered for its id."""
        return dispatch.materialize(self, change, pipeline, artifacts_dir, where=where)

    def compare(
        self,
        kind: str,
        baseline: Sequence[Any],
        candidate: Sequence[Any],
        labels: Sequence[Any] | None = None,
    ) -> Fidelity:
        """Fidelity of ``candidate`` against ``baseline`` by the owner of output ``kind``."""
        return dispatch.compare_outputs(self, kind, baseline, candidate, labels)


def merge_unique(
    merged: dict[str, tuple[str, T]], key: str, plugin: str, value: T, what: str
) -> None:
    """Add ``value`` under ``key`` or raise :class:`DuplicateError` naming both plugins."""
    if key in merged:
        other = merged[key][0]
        raise DuplicateError(f"{what} {key!r} is registered by both {other!r} and {plugin!r}")
    merged[key] = (plugin, value)


def get_plugin_manager(
    *,
    builtins: bool = True,
    entry_points: bool = True,
    disable: Iterable[str] = (),
    strict: bool | None = None,
    plugins: Sequence[tuple[str, Any]] = (),
) -> PipetunePluginManager:
    """Build a plugin manager.

    Args:
        builtins: load :data:`BUILTIN_PLUGINS`.
        entry_points: load third-party plugins from the ``pipetune`` entry-point group.
        disable: plugin names not to load (``-p no:NAME``); ``PIPETUNE_DISABLE_PLUGINS``
            adds a comma-separated list.
        strict: fail fast on any plugin problem; default from ``PIPETUNE_STRICT_PLUGINS``.
        plugins: extra ``(name, plugin_object)`` pairs to register (tests, embedding).
    """
    if strict is None:
        strict = os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "true", "yes")
    disabled = _disabled_names(disable)
    pm = PipetunePluginManager(strict=strict)
    _cap_hook_timeouts_from_env(pm)
    if builtins:
        _load_builtins(pm, disabled)
    if entry_points:
        _load_entry_points(pm, disabled, strict)
    for name, plugin in plugins:
        if name not in disabled:
            pm.load_plugin(name, plugin, source="explicit")
    return pm


def _disabled_names(disable: Iterable[str]) -> set[str]:
    """The plugin names not to load: ``disable`` plus ``PIPETUNE_DISABLE_PLUGINS``."""
    disabled = {name.strip() for name in disable if name.strip()}
    disabled |= {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}
    return disabled


def _cap_hook_timeouts_from_env(pm: PipetunePluginManager) -> None:
    """Cap every hook's bound at ``PIPETUNE_HOOK_TIMEOUT`` seconds when set (CI, tests)."""
    bound = os.environ.get(HOOK_TIMEOUT_ENV, "").strip()
    if not bound:
        return
    try:
        seconds = float(bound)
    except ValueError:
        seconds = math.nan
    if not (seconds > 0 and math.isfinite(seconds)):
        raise PluginError(f"{HOOK_TIMEOUT_ENV}={bound!r}: expected a number of seconds > 0")
    pm.cap_hook_timeouts(seconds)


def _load_builtins(pm: PipetunePluginManager, disabled: set[str]) -> None:
    """Load :data:`BUILTIN_PLUGINS` the way entry points load (or report them disabled)."""
    for name, module in BUILTIN_PLUGINS:
        if name in disabled:
            pm.load_report.append(PluginStatus(name, "builtin", "disabled", module=module))
            continue
        pm.load_plugin(
            name,
            module_loader(module),
            source="builtin",
            distribution="pipetune",
            version=pipetune_version(),
            module=module,
        )


def _load_entry_points(pm: PipetunePluginManager, disabled: set[str], strict: bool) -> None:
    """Load third-party plugins from the entry-point group; a name already loaded is a failure."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = getattr(ep, "dist", None)
        distribution = dist.name if dist is not None else ""
        version = dist.version if dist is not None else ""
        if ep.name in disabled:
            pm.load_report.append(
                PluginStatus(ep.name, "entrypoint", "disabled", version, distribution, ep.value)
            )
            continue
        if pm.has_plugin(ep.name):
            pm.load_report.append(
                PluginStatus(
                    ep.name,
                    "entrypoint",
                    "failed",
                    version,
                    distribution,
                    ep.value,
                    f"a plugin named {ep.name!r} is already loaded",
                )
            )
            if strict:
                raise DuplicateError(f"two plugins are named {ep.name!r}")
            continue
        pm.load_plugin(
            ep.name,
            ep.load,
            source="entrypoint",
            distribution=distribution,
            version=version,
            module=ep.value,
        )
