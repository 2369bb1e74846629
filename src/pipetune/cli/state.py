"""What every command gets from the ``pipetune`` group: the plugin manager and the flags.

Commands reach it with :func:`get_state` (or :func:`get_pm`) instead of building their own
plugin manager, so ``-p no:NAME``, ``PIPETUNE_DISABLE_PLUGINS`` and strict mode apply to
every command alike.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console

    from pipetune.core.kernel.manager import PipetunePluginManager

DEBUG_ENV = "PIPETUNE_DEBUG"


@dataclass
class CliState:
    """Per-invocation state, stored as the click context's ``obj``."""

    pm: PipetunePluginManager | None = None
    debug: bool = field(default_factory=lambda: _env_flag(DEBUG_ENV))
    #: Plugin names disabled on the command line (``-p no:NAME``).
    disabled: list[str] = field(default_factory=list)
    #: Extra plugin modules loaded on the command line (``-p module.path``).
    extra_plugins: list[str] = field(default_factory=list)
    #: Files a command finished writing; an interrupted command says which it kept.
    written: list[str] = field(default_factory=list)
    #: Whether "Interrupted." was said already (it is said once).
    reported_interrupt: bool = False

    def plugin_manager(self) -> PipetunePluginManager:
        if self.pm is None:
            from pipetune.core.kernel.manager import get_plugin_manager

            self.pm = get_plugin_manager(disable=self.disabled)
        return self.pm


def get_state(ctx: click.Context | None = None) -> CliState:
    """The :class:`CliState` of the running command (a fresh one outside ``pipetune``)."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return CliState()
    state = ctx.find_object(CliState)
    if state is None:
        state = ctx.ensure_object(CliState)
    return state


def get_pm(ctx: click.Context | None = None) -> PipetunePluginManager:
    """The plugin manager the CLI was built with."""
    return get_state(ctx).plugin_manager()


def plugin_problems(state: CliState) -> list[str]:
    """Every plugin problem of this command so far (load failures, hook failures), for
    the ``warnings`` of its JSON report."""
    pm = state.pm
    problems = getattr(pm, "problems", None)
    return list(problems()) if problems is not None else []


def stdout_console(**options: Any) -> Console:
    """A rich console on stdout. Imported lazily: ``pipetune --help`` must stay instant."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False, **options)


def stderr_console(**options: Any) -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, **options)


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")
