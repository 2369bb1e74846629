"""``pipetune profile TARGET``: where the time goes, on the target's workload."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from pipetune.cli.options import TargetOptions, target_argument, target_options, threads_option
from pipetune.cli.state import get_state, stdout_console


def register(cli: click.Group) -> None:
    cli.add_command(profile)


@click.command()
@target_argument
@target_options
@threads_option
@click.option(
    "--json",
    "json_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the profile as JSON (the report's baseline object plus the details).",
)
@click.option(
    "--on-error",
    type=click.Choice(["stop", "skip"]),
    default="stop",
    show_default=True,
    help="stop: the first input a stage raises on is an error naming the stage, the input "
    "and the exception; skip: count failures per stage and go on.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Give up on a pass that runs longer than this (a hung stage is named).",
)
@click.option("--quiet", "-q", is_flag=True, help="No tables or progress bar.")
@click.pass_context
def profile(
    ctx: click.Context,
    target: str | None,
    target_opts: TargetOptions,
    json_path: Path | None,
    on_error: str,
    timeout_s: float | None,
    quiet: bool,
) -> int:
    """Profile TARGET: each stage's share of end-to-end time, latency percentiles,
    throughput (and against concurrency), plugin facts, hints and warnings.

    TARGET is package.module:attr or path/to/file.py:attr naming a Pipeline; the module
    may export `workload` and `requirements`, or options and [tool.pipetune] give them.
    Ctrl-C stops the run and keeps what was measured.
    """
    from pipetune.cli.render import profile_json, progress_bar, render_profile, write_json_atomic
    from pipetune.cli.target import load_target
    from pipetune.core.measure.profiler import profile as run_profile

    state = get_state(ctx)
    resolved = load_target(target, target_opts)
    assert resolved.workload is not None
    console = stdout_console()
    show_progress = not quiet and sys.stderr.isatty()

    with (
        _interrupt_flag() as interrupted,
        progress_bar(f"profiling {resolved.pipeline.name}", enabled=show_progress) as update,
    ):
        try:
            measured = run_profile(
                resolved.pipeline,
                resolved.workload,
                pm=state.plugin_manager(),
                on_error=on_error,  # type: ignore[arg-type]
                timeout_s=timeout_s,
                progress=update,
            )
        except KeyboardInterrupt:
            click.echo("Interrupted before a full pass was measured; nothing to keep.", err=True)
            return 130

    # The runtime catches Ctrl-C to return what it measured; the flag says it happened.
    interrupted = bool(interrupted) or bool(getattr(measured, "stopped", False))
    if interrupted:
        changes: dict[str, Any] = {}
        if not any("interrupted" in warning for warning in measured.warnings):
            note = f"interrupted: only {measured.samples} samples were measured"
            changes["warnings"] = (*measured.warnings, note)
        if hasattr(measured, "stopped"):
            changes["stopped"] = True
        measured = measured.evolve(**changes)
    if json_path is not None:
        data = profile_json(
            measured,
            {"target": resolved.source, "origins": dict(resolved.origins)},
        )
        write_json_atomic(json_path, data)  # first: a schema problem must not lose it
        state.written.append(str(json_path))
        _warn_if_invalid(json_path, data)
    if not quiet:
        render_profile(measured, console, requirements=resolved.requirements)
        if json_path is not None:
            console.print(f"[dim]wrote {json_path}[/]")
    if interrupted:
        kept = f" Kept: {json_path}." if json_path is not None else ""
        click.echo(f"Interrupted: profiled {measured.samples} samples.{kept}", err=True)
        return 130
    return 0


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


@contextlib.contextmanager
def _interrupt_flag() -> Iterator[list[bool]]:
    """Record that Ctrl-C was pressed, even when the runtime catches the
    ``KeyboardInterrupt`` to return what it measured (a falsy-until-set list)."""
    flag: list[bool] = []

    def handler(signum: int, frame: Any) -> None:
        flag.append(True)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not in the main thread: no handler, no flag
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
