"""``pipetune profile TARGET``: where the time goes, on the target's workload."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetune.cli.options import TargetOptions, json_file_option, runs_target, timeout_option
from pipetune.cli.state import get_state, plugin_problems, stdout_console

if TYPE_CHECKING:
    from pipetune.cli.state import CliState
    from pipetune.cli.target import Target
    from pipetune.core.kernel.results import Profile


def register(cli: click.Group) -> None:
    cli.add_command(profile)


@click.command()
@runs_target
@json_file_option("Write the profile as JSON (the report's baseline object plus the details).")
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="stop: the first input a stage raises on is an error naming the stage, the input "
    "and the exception; skip: count failures per stage and go on.",
)
@timeout_option
@click.option("--quiet", "-q", is_flag=True, help="No tables or progress bar.")
@click.pass_context
def profile(
    ctx: click.Context,
    target: str | None,
    target_opts: TargetOptions,
    json_path: Path | None,
    on_error: str,
    quiet: bool,
) -> int:
    """Profile TARGET: each stage's share of end-to-end time, latency percentiles,
    throughput (and against concurrency), plugin facts, hints and warnings.

    TARGET is package.module:attr or path/to/file.py:attr naming a Pipeline; the module
    may export `workload` and `requirements`, or options and [tool.pipetune] give them.
    Ctrl-C stops the run and keeps what was measured.
    """
    from pipetune.cli.render import progress_bar, render_profile
    from pipetune.cli.target import load_target
    from pipetune.core.kernel import control
    from pipetune.core.measure.profiler import profile as run_profile

    state = get_state(ctx)
    resolved = load_target(target, target_opts)
    assert resolved.workload is not None
    console = stdout_console()
    show_progress = not quiet and sys.stderr.isatty()

    with progress_bar(f"profiling {resolved.pipeline.name}", enabled=show_progress) as update:
        try:
            measured = run_profile(
                resolved.pipeline,
                resolved.workload,
                pm=state.plugin_manager(),
                on_error=on_error,  # type: ignore[arg-type]
                progress=update,
            )
        except KeyboardInterrupt:
            state.reported_interrupt = True
            click.echo("Interrupted before a full pass was measured; nothing to keep.", err=True)
            return 130

    # The runtime keeps what it measured on Ctrl-C; the token says it happened.
    interrupted = control.cancelled() or bool(getattr(measured, "stopped", False))
    if interrupted:
        measured = _mark_interrupted(measured)
    problems = plugin_problems(state)
    if problems:  # plugin failures belong in the report too, not only on the terminal
        measured = measured.evolve(warnings=(*problems, *measured.warnings))
    if json_path is not None:
        _write_profile_json(json_path, measured, resolved, state)
    if not quiet:
        render_profile(measured, console, requirements=resolved.requirements)
        if json_path is not None:
            console.print(f"[dim]wrote {json_path}[/]")
    if interrupted:
        state.reported_interrupt = True
        kept = f" Kept: {json_path}." if json_path is not None else ""
        click.echo(f"Interrupted: profiled {measured.samples} samples.{kept}", err=True)
        return 130
    if quiet:  # the verdict line, so that no run ends without one
        click.echo(f"profiled {measured.samples} samples of {resolved.pipeline.name}", err=True)
    return 0


def _mark_interrupted(measured: Profile) -> Profile:
    """The profile as cut short by Ctrl-C: stopped, with a warning saying how little it measured."""
    changes: dict[str, Any] = {}
    if not any("interrupted" in warning for warning in measured.warnings):
        note = f"interrupted: only {measured.samples} samples were measured"
        changes["warnings"] = (*measured.warnings, note)
    if hasattr(measured, "stopped"):
        changes["stopped"] = True
    return measured.evolve(**changes)


def _write_profile_json(
    json_path: Path, measured: Profile, resolved: Target, state: CliState
) -> None:
    """Write ``--json`` (the profile plus the target and where its settings came from), then
    check it against the schema."""
    from pipetune.cli.render import profile_json, write_json_atomic

    data = profile_json(
        measured,
        {"target": resolved.source, "origins": dict(resolved.origins)},
    )
    write_json_atomic(json_path, data)  # first: a schema problem must not lose it
    state.written.append(str(json_path))
    _warn_if_invalid(json_path, data)


def _warn_if_invalid(path: Path, data: dict[str, Any]) -> None:
    """The JSON Schema is the contract tools rely on: say so if a profile breaks it."""
    try:
        from pipetune.core.report.schema import problems
    except ImportError:
        return
    from pipetune.core.kernel.errors import PipetuneError

    try:
        found = problems("profile", data)
    except PipetuneError:  # jsonschema missing: nothing to check with
        return
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        click.echo(f"warning: {path} does not match the profile schema: {found[0]}{more}", err=True)
