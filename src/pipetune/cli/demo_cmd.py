"""``pipetune demo [NAME]``: the whole loop on a built-in reference pipeline.

Demos come from plugins (``register_demos``); ``pipetune demo`` with no name runs the one
marked ``default=True`` (the document-processing story), ``--list`` shows them all. The
report is printed and written as HTML (``--html``, default ``pipetune-demo-NAME.html``);
``--json`` writes the JSON report. Every domain demo follows the same form.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetune.cli.optimize_cmd import loop_options, run_and_report
from pipetune.cli.render import escape
from pipetune.cli.state import get_state, stdout_console

if TYPE_CHECKING:
    from pipetune.core.kernel.registry import Demo, DemoSetup


def register(cli: click.Group) -> None:
    cli.add_command(demo)


@click.command()
@click.argument("name", required=False)
@click.option("--list", "list_demos", is_flag=True, help="List the demos and exit.")
@loop_options
@click.pass_context
def demo(
    ctx: click.Context,
    name: str | None,
    list_demos: bool,
    html_path: Path | None,
    **options: Any,
) -> int:
    """Run the optimize loop on a built-in reference pipeline and its embedded workload.
    With --quick the demo builds its small version too."""
    from pipetune.core.kernel.errors import ConfigError

    state = get_state(ctx)
    demos = state.plugin_manager().demos()
    if list_demos:
        _list_demos(demos)
        return 0
    if not demos:
        raise ConfigError("no demo is registered (is a plugin providing demos disabled?)")
    name = _resolve_name(name, demos)
    plugin, entry = demos[name]
    _check_requirements(name, entry)
    stdout_console().print(f"[bold]pipetune demo {escape(name)}[/bold]: {escape(entry.title)}")
    setup = _build_setup(name, plugin, entry, quick=bool(options.get("quick")))
    html_path = html_path or Path(f"pipetune-demo-{name}.html")
    return run_and_report(
        state,
        setup.pipeline,
        setup.workload,
        setup.requirements,
        target=f"demo:{name}",
        factory=setup.factory,
        html_path=html_path,
        baseline_outputs=setup.baseline_outputs,
        **options,
    )


def _list_demos(demos: dict[str, tuple[str, Demo]]) -> None:
    """Print every registered demo with its plugin and title (``--list``), marking the default."""
    console = stdout_console()
    for demo_name, (plugin, entry) in sorted(demos.items()):
        mark = " (default)" if entry.default else ""
        console.print(f"{escape(demo_name)}{mark} [dim]({plugin})[/dim]: {escape(entry.title)}")


def _resolve_name(name: str | None, demos: dict[str, tuple[str, Demo]]) -> str:
    """The demo to run: ``name`` if registered, else the single one marked default."""
    from pipetune.core.kernel.errors import ConfigError

    if name is None:
        defaults = [n for n, (_, d) in demos.items() if d.default]
        if len(defaults) > 1:
            raise ConfigError(f"several demos claim to be the default: {', '.join(defaults)}")
        if not defaults:
            raise ConfigError(
                "no default demo is registered; name one: " + ", ".join(sorted(demos))
            )
        name = defaults[0]
    if name not in demos:
        raise ConfigError(f"no demo named {name!r} (demos: {', '.join(sorted(demos))})")
    return name


def _check_requirements(name: str, entry: Demo) -> None:
    """Raise ``MissingDependency`` for the first package the demo needs that is not installed."""
    from pipetune.core.kernel.errors import MissingDependency

    for dependency in entry.requires:
        available = dependency.check()
        if not available:
            raise MissingDependency(
                dependency.distribution or dependency.module,
                dependency.extra,
                f"the {name} demo",
            )


def _build_setup(name: str, plugin: str, entry: Demo, *, quick: bool) -> DemoSetup:
    """Build the demo's set-up, refusing anything but a ``DemoSetup``, and print its description."""
    from pipetune.core.kernel.errors import ConfigError
    from pipetune.core.kernel.registry import DemoSetup

    setup = entry.build(quick)
    if not isinstance(setup, DemoSetup):
        raise ConfigError(f"demo {name!r} (plugin {plugin!r}) did not build a DemoSetup")
    if setup.description:
        stdout_console().print(f"[dim]{escape(setup.description)}[/dim]")
    return setup
