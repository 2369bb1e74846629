"""Fresh plugin managers for tests."""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

from pipetune.core.kernel.errors import PluginError
from pipetune.core.kernel.manager import PipetunePluginManager, get_plugin_manager


def make_plugin_manager(
    *plugins: Any,
    builtins: bool = False,
    entry_points: bool = False,
    strict: bool = True,
    disable: Iterable[str] = (),
) -> PipetunePluginManager:
    """A new plugin manager with ``plugins`` loaded through the same path as real ones
    (API-version check, misspelled-hook check).

    Args:
        plugins: plugin modules or objects, or ``(name, plugin)`` pairs. A module's name
            is its last dotted part, skipping ``plugin``/``hooks`` (``my_pkg.plugin`` ->
            ``my_pkg``) unless it sets ``PIPETUNE_PLUGIN_NAME``; an object's is its class
            name in lower case. Pass ``(name, plugin)`` to match your entry point's name,
            which is the prefix of your proposal ids.
        builtins: also load pipetune's built-in plugins.
        entry_points: also load installed third-party plugins (off: tests must not
            depend on what happens to be installed).
        strict: a plugin that fails to load, or raises inside a hook, fails the test
            instead of being reported and skipped. Set ``False`` to test that isolation.
    """
    pairs = [_named(plugin) for plugin in plugins]
    names = [name for name, _ in pairs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PluginError(
            f"two test plugins are named {', '.join(duplicates)}: pass (name, plugin)"
        )
    return get_plugin_manager(
        builtins=builtins,
        entry_points=entry_points,
        strict=strict,
        disable=disable,
        plugins=pairs,
    )


_GENERIC_MODULE_NAMES = ("plugin", "plugins", "hooks", "hookimpls", "__init__")


def _named(plugin: Any) -> tuple[str, Any]:
    if isinstance(plugin, tuple) and len(plugin) == 2 and isinstance(plugin[0], str):
        return plugin[0], plugin[1]
    if isinstance(plugin, types.ModuleType):
        parts = plugin.__name__.split(".")
        # my_plugin.plugin -> my_plugin: hook modules are usually called plugin.py
        while len(parts) > 1 and parts[-1] in _GENERIC_MODULE_NAMES:
            parts.pop()
        return getattr(plugin, "PIPETUNE_PLUGIN_NAME", None) or parts[-1], plugin
    return getattr(plugin, "PIPETUNE_PLUGIN_NAME", None) or type(plugin).__name__.lower(), plugin
