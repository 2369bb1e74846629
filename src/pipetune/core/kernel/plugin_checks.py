"""What the plugin manager says about a plugin it loads or calls: whether it is a plugin
object or a loader, whether its plugin API fits this pipetune, and a failure described in
one line (a hook that raised, called ``sys.exit`` or was refused by pluggy)."""

from __future__ import annotations

import importlib
import importlib.metadata
import traceback
from collections.abc import Callable
from typing import Any

import pluggy

from pipetune.core.kernel import hookspecs
from pipetune.core.kernel.errors import PipetuneError, PluginError


class IncompatiblePlugin(PluginError):
    """A plugin written for a newer plugin API than this pipetune provides."""


def module_loader(module: str) -> Callable[[], Any]:
    def load() -> Any:
        return importlib.import_module(module)

    load.__name__ = f"load_{module}"
    return load


def is_plugin_object(obj: Any) -> bool:
    """Modules and class instances are plugins; plain functions are loaders."""
    import types

    return isinstance(obj, types.ModuleType) or not isinstance(
        obj, types.FunctionType | types.MethodType | types.BuiltinFunctionType
    )


def check_api_version(name: str, plugin: Any, distribution: str, version: str) -> None:
    wanted = getattr(plugin, "PIPETUNE_API", None)
    if wanted is None:
        return
    try:
        wanted_int = int(wanted)
    except (TypeError, ValueError):
        raise PluginError(f"PIPETUNE_API must be an integer, got {wanted!r}") from None
    if wanted_int > hookspecs.API_VERSION:
        where = f" ({distribution} {version})" if distribution else ""
        raise IncompatiblePlugin(
            f"plugin {name!r}{where} is built for pipetune plugin API {wanted_int}, but this "
            f"pipetune ({pipetune_version()}) provides API {hookspecs.API_VERSION}: "
            "upgrade pipetune or use an older release of the plugin"
        )


def describe_validation_error(name: str, exc: pluggy.PluginValidationError) -> PluginError:
    """pluggy refuses an implementation taking an argument its hookspec lacks. Hooks only
    gain arguments, so that is a plugin written for a newer plugin API: say so."""
    import re

    text = str(exc)
    found = re.search(r"for hook '(\w+)'.*Argument\(s\) (\{.*?\}) are declared", text, re.S)
    if found is None:
        return PluginError(text)
    hook, arguments = found.groups()
    return IncompatiblePlugin(
        f"plugin {name!r} implements {hook} with argument(s) {arguments} that this pipetune "
        f"({pipetune_version()}, plugin API {hookspecs.API_VERSION}) does not provide: the "
        "plugin needs a newer pipetune (or has a misspelled argument name)"
    )


def exit_message(exc: SystemExit) -> str:
    return f"called sys.exit({exc.code!r}); a hook must return or raise, never end the process"


def describe_failure(exc: BaseException) -> str:
    if isinstance(exc, PipetuneError):
        return str(exc)
    if isinstance(exc, pluggy.PluginValidationError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def pipetune_version() -> str:
    try:
        return importlib.metadata.version("pipetune")
    except importlib.metadata.PackageNotFoundError:
        from pipetune._version import __version__

        return __version__
