"""Plugin problems on the command line: ``-p`` names that do not resolve are usage errors
with the nearest name, and plugin failures are shown at the top of every command.

Nothing here imports a plugin: the manager has loaded them already; this only reads how
that went (``pm.load_report``, ``pm.problems()``) and listens for hook failures.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager


def split_extra(value: str) -> tuple[str, str]:
    """``-p NAME=MODULE`` loads MODULE under NAME; ``-p MODULE`` under the module's name."""
    name, equals, module = value.partition("=")
    return (name.strip(), module.strip()) if equals else (value, value)


def announce_plugin_problems(pm: PipetunePluginManager) -> None:
    """Plugin problems at the top of the command's output (stderr): plugins that failed
    to load and hook failures so far; later hook failures as they happen."""
    if getattr(pm, "_announcing", False):
        return
    pm._announcing = True  # type: ignore[attr-defined]
    for problem in pm.problems():
        click.echo(f"warning: {problem} (see `pipetune plugins`)", err=True)

    def announce(failure: Any) -> None:
        click.echo(f"warning: {failure.message}", err=True)

    pm.failure_listeners.append(announce)


def check_plugin_arguments(
    pm: PipetunePluginManager, disabled: Sequence[str], extra: Sequence[str]
) -> None:
    """``-p`` names that do not resolve are usage errors (exit 2), with the nearest name:
    a misspelled ``-p no:NAME`` must not leave the plugin on, nor a misspelled module
    leave the plugin out unnoticed."""
    from pipetune.core.kernel.errors import PluginError

    statuses = {status.name: status for status in pm.load_report}
    for name in disabled:
        if name not in statuses:
            raise PluginError(
                f"-p no:{name}: no plugin named {name!r}{_did_you_mean(name, list(statuses))} "
                f"(plugins: {', '.join(sorted(statuses)) or 'none'})"
            )
    for value in extra:
        name, module = split_extra(value)
        status = statuses.get(name)
        if status is None or status.status == "loaded" or status.source == "builtin":
            continue
        raise PluginError(
            f"-p {value}: cannot load {module!r} as a plugin: {status.error}"
            f"{_did_you_mean(module, _module_candidates(module, pm))}"
        )


def _did_you_mean(word: str, candidates: Sequence[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(dict.fromkeys(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _module_candidates(module: str, pm: PipetunePluginManager) -> list[str]:
    """Importable module names near ``module``: its parent package's modules (or the
    top-level ones), and the modules of the plugins pipetune knows."""
    import pkgutil

    parent, _, _ = module.rpartition(".")
    names = [status.module for status in pm.load_report if status.module]
    try:
        if parent:
            package = importlib.import_module(parent)
            prefix = parent + "."
            names += [prefix + m.name for m in pkgutil.iter_modules(package.__path__)]
        else:
            names += [m.name for m in pkgutil.iter_modules()]
    except (ImportError, AttributeError):
        pass
    return names
