"""``pipetune plugins``: what is loaded, what is missing and why, and on what machine."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import click

from pipetune.cli.state import get_pm, stdout_console

if TYPE_CHECKING:
    from rich.table import Table

    from pipetune.core.kernel.manager import PipetunePluginManager


def register(cli: click.Group) -> None:
    from pipetune.cli.plugins_new import new

    plugins.add_command(new)  # pipetune plugins new NAME
    cli.add_command(plugins)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.pass_context
def plugins(ctx: click.Context, as_json: bool) -> None:
    """List plugins (version, source, status, hooks), their optional dependencies and
    backends with whether each is available here (and if not, why and how to install it),
    and this machine."""
    if ctx.invoked_subcommand is not None:
        return
    report = plugins_report(get_pm(ctx))
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        render_plugins_report(report)


def plugins_report(pm: PipetunePluginManager) -> dict[str, Any]:
    """Everything ``pipetune plugins`` shows, as JSON-serializable data."""
    from pipetune import __version__
    from pipetune.core.kernel.hookspecs import API_VERSION
    from pipetune.core.runtime.machine import detect_machine

    plugins = []
    for status in pm.load_report:
        plugin = pm.get_plugin(status.name) if status.status == "loaded" else None
        plugins.append(
            {
                "name": status.name,
                "version": status.version,
                "distribution": status.distribution,
                "source": status.source,
                "module": status.module,
                "status": status.status,
                "reason": status.error,
                "api": getattr(plugin, "PIPETUNE_API", None),
                "hooks": list(status.hooks),
            }
        )
    dependencies = [
        _dependency_row(plugin, dep) for plugin, dep in _registered(pm, "register_dependencies")
    ]
    backends = [
        _backend_row(plugin, backend) for plugin, backend in _registered(pm, "register_backends")
    ]
    _flag_duplicates(backends)
    failures = [{"plugin": f.plugin, "hook": f.hook, "error": f.error} for f in pm.hook_failures]
    return {
        "pipetune": __version__,
        "api_version": API_VERSION,
        "plugins": plugins,
        "dependencies": dependencies,
        "backends": backends,
        "hook_failures": failures,
        "machine": detect_machine().to_dict(),
    }


def _registered(pm: PipetunePluginManager, hook: str) -> list[tuple[str, Any]]:
    """``(plugin, item)`` for each item a ``register_*`` hook returned; a plugin that
    returns something other than a list is reported as a hook failure, not a crash."""
    from pipetune.core.kernel.manager import HookFailure

    items: list[tuple[str, Any]] = []
    for plugin, values in pm.call_each(hook):
        if isinstance(values, str | bytes) or not hasattr(values, "__iter__"):
            kind = type(values).__name__
            pm.hook_failures.append(HookFailure(plugin, hook, f"returned {kind}, not a list"))
            continue
        items.extend((plugin, value) for value in values)
    return items


def _dependency_row(plugin: str, dep: Any) -> dict[str, Any]:
    if not hasattr(dep, "check"):
        return {
            "plugin": plugin,
            "module": repr(dep),
            "extra": None,
            "purpose": "",
            "available": False,
            "reason": f"not a pipetune Dependency ({type(dep).__name__})",
            "install": None,
        }
    availability = dep.check()
    return {
        "plugin": plugin,
        "module": dep.module,
        "extra": dep.extra,
        "purpose": dep.purpose,
        "available": availability.ok,
        "reason": availability.reason,
        "install": availability.install,
    }


def _backend_row(plugin: str, backend: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "plugin": plugin,
        "name": getattr(backend, "name", type(backend).__name__),
        "target": getattr(backend, "target", ""),
        "precisions": list(getattr(backend, "precisions", ())),
        "verified": bool(getattr(backend, "verified", True)),
    }
    try:
        availability = backend.available()
        row.update(
            available=bool(availability.ok),
            reason=availability.reason,
            install=availability.install,
        )
    except Exception as exc:  # a backend's probe must not take the listing down
        row.update(
            available=False,
            reason=f"available() raised {type(exc).__name__}: {exc}",
            install=None,
        )
    return row


def _flag_duplicates(backends: list[dict[str, Any]]) -> None:
    owners: dict[str, str] = {}
    for row in backends:
        other = owners.setdefault(row["name"], row["plugin"])
        if other != row["plugin"]:
            row["available"] = False
            row["reason"] = f"backend name {row['name']!r} is also registered by {other!r}"


# -- rendering -----------------------------------------------------------------------------

_STATUS_STYLE = {
    "loaded": "green",
    "failed": "red",
    "incompatible": "red",
    "disabled": "yellow",
}


def render_plugins_report(report: Mapping[str, Any]) -> None:
    from rich.markup import escape as e

    console = stdout_console()
    console.print(_plugins_table(report))
    if report["dependencies"]:
        console.print(_dependencies_table(report["dependencies"]))
    if report["backends"]:
        console.print(_backends_table(report["backends"]))
    if report["hook_failures"]:
        console.print(_failures_table(report["hook_failures"]))

    console.print("[bold]machine[/]")
    for what, value in machine_rows(report["machine"]):
        console.print(f"  {what}: {e(value)}")


def _titled_table(title: str, columns: tuple[str, ...]) -> Table:
    """An empty table with ``title`` and the given columns, each folding long values."""
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _plugins_table(report: Mapping[str, Any]) -> Table:
    """One row per plugin: its version, source, coloured status, and hooks (or why not loaded)."""
    from rich.markup import escape as e

    title = f"pipetune {report['pipetune']} plugins (plugin API {report['api_version']})"
    table = _titled_table(title, ("plugin", "version", "source", "status", "hooks / reason"))
    for row in report["plugins"]:
        style = _STATUS_STYLE.get(row["status"], "")
        detail = row["reason"] if row["status"] != "loaded" else ", ".join(row["hooks"]) or "-"
        version = row["version"] + (f" ({row['distribution']})" if row["distribution"] else "")
        table.add_row(
            e(row["name"]),
            e(version or "-"),
            row["source"],
            f"[{style}]{row['status']}[/]" if style else row["status"],
            e(detail),
        )
    return table


def _dependencies_table(rows: list[dict[str, Any]]) -> Table:
    """One row per optional dependency: what needs it, whether it is here, how to install it."""
    from rich.markup import escape as e

    deps = _titled_table(
        "optional dependencies", ("plugin", "module", "for", "available", "install")
    )
    for row in rows:
        deps.add_row(
            e(row["plugin"]),
            e(row["module"]),
            e(row["purpose"] or "-"),
            "[green]yes[/]" if row["available"] else f"[red]no[/]: {e(row['reason'])}",
            "" if row["available"] else e(row["install"] or ""),
        )
    return deps


def _backends_table(rows: list[dict[str, Any]]) -> Table:
    """One row per backend: its plugin, target, precisions and whether it is available here."""
    from rich.markup import escape as e

    backends = _titled_table("backends", ("backend", "plugin", "target", "precisions", "available"))
    for row in rows:
        backends.add_row(
            e(row["name"]),
            e(row["plugin"]),
            e(row["target"]),
            e(", ".join(row["precisions"])),
            _backend_available(row),
        )
    return backends


def _backend_available(row: Mapping[str, Any]) -> str:
    """The backend's "available" cell: yes (maybe unverified), or no with the reason and fix."""
    from rich.markup import escape as e

    if row["available"]:
        return "[green]yes[/]" + ("" if row["verified"] else " (unverified here)")
    install = f" — {row['install']}" if row.get("install") else ""
    return f"[red]no[/]: {e(row['reason'] + install)}"


def _failures_table(rows: list[dict[str, Any]]) -> Table:
    """One row per hook that raised or returned the wrong thing, with its error in red."""
    from rich.markup import escape as e

    failures = _titled_table("plugin errors", ("plugin", "hook", "error"))
    for row in rows:
        failures.add_row(e(row["plugin"]), row["hook"], f"[red]{e(row['error'])}[/]")
    return failures


def machine_rows(machine: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(what, value) rows for the machine, Apple Silicon included."""
    from pipetune.core.kernel.results import Machine
    from pipetune.core.runtime.machine import describe_machine

    rows = describe_machine(Machine.from_dict(machine))
    rows.append(("Apple Silicon", "yes" if machine.get("apple_silicon") else "no"))
    return rows
