"""``pipetune optimize TARGET``: profile, propose, apply and prove changes, keep the best.

Exit codes: 0 the requirements hold (or none were given); 3 the loop finished but the
requirements still do not hold (the best pipeline found is kept and reported); 130
interrupted (the finished trials, the report and the recipe are kept); 2 a usage or
configuration error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetune.cli.options import (
    THREADS_HELP,
    TargetOptions,
    ThreadCount,
    json_file_option,
    recipe_option,
    resolve_threads,
    target_argument,
    target_options,
    timeout_option,
)
from pipetune.cli.render import escape
from pipetune.cli.state import get_state, plugin_problems, stderr_console, stdout_console

if TYPE_CHECKING:
    from pipetune.cli.state import CliState
    from pipetune.core.kernel.model import Pipeline, Requirements, Workload
    from pipetune.core.loop.optimize import LoopSettings, Optimized

EXIT_INTERRUPTED = 130


def register(cli: click.Group) -> None:
    cli.add_command(optimize)


def loop_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``optimize`` and ``demo``."""
    decorators = [
        json_file_option("Write the JSON report (checked against its JSON Schema)."),
        click.option(
            "--html",
            "html_path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Write a self-contained HTML report with plots.",
        ),
        click.option(
            "--markdown",
            "markdown_path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Write the report as Markdown.",
        ),
        click.option(
            "--chrome-trace",
            "trace_path",
            type=click.Path(path_type=Path, dir_okay=False),
            help="Write the stage spans of one pass of the original and one of the optimized "
            "pipeline as a Chrome trace (open in ui.perfetto.dev).",
        ),
        recipe_option(
            "Where to write the recipe (default: .pipetune/recipes/RUN.json).", exists=False
        ),
        click.option(
            "--max-trials",
            type=click.IntRange(min=0),
            metavar="N",
            help="Stop after N trials.",
        ),
        click.option(
            "--time-budget",
            "time_budget_s",
            type=click.FloatRange(min=0, min_open=True),
            metavar="SECONDS",
            help="Start no new trial after this many seconds.",
        ),
        click.option(
            "--rounds",
            type=click.IntRange(min=2),
            metavar="N",
            help="ABBA rounds per validation (default 8; up to twice as many when the first "
            "rounds leave a trial undecided).",
        ),
        click.option(
            "--threads",
            type=ThreadCount(),
            metavar="N|auto",
            callback=resolve_threads,
            help=THREADS_HELP + " The recipe records the pin and load_recipe applies it.",
        ),
        click.option(
            "--quick",
            is_flag=True,
            help="A smoke run: light profiles and 4 short ABBA rounds (rougher figures).",
        ),
        click.option(
            "--on-error",
            type=click.Choice(["stop", "skip"]),
            default="stop",
            show_default=True,
            help="stop: an input the original pipeline raises on is an error naming the stage "
            "and the input; skip: set such inputs aside before measuring, leave them out of "
            "both sides, count them and list them in the report.",
        ),
        click.option("--no-store", is_flag=True, help="Do not record the run in .pipetune."),
        click.option("--quiet", "-q", is_flag=True, help="Only the final report."),
        timeout_option,
    ]
    for decorator in reversed(decorators):
        fn = decorator(fn)
    return fn


@click.command()
@target_argument
@target_options
@loop_options
@click.pass_context
def optimize(
    ctx: click.Context, target: str | None, target_opts: TargetOptions, **options: Any
) -> int:
    """Optimize TARGET: profile it, try the proposals with the best end-to-end gain per
    effort first, keep each change only when it is proven faster (bootstrapped interval
    over paired ABBA rounds) and no less accurate than the original, re-profile after each
    kept change, and stop when the requirements hold, nothing is left, or the budget is
    spent. Writes the recipe and, on request, the JSON, HTML and Markdown reports.
    """
    from pipetune.cli.target import load_target
    from pipetune.cli.target_module import factory_spec

    resolved = load_target(target, target_opts)
    assert resolved.workload is not None
    return run_and_report(
        get_state(ctx),
        resolved.pipeline,
        resolved.workload,
        resolved.requirements,
        target=resolved.source,
        factory=factory_spec(resolved.source)[0],
        **options,
    )


def run_and_report(
    state: CliState,
    pipeline: Pipeline,
    workload: Workload,
    requirements: Requirements,
    *,
    target: str | None,
    factory: str | None = None,
    json_path: Path | None = None,
    html_path: Path | None = None,
    markdown_path: Path | None = None,
    recipe_path: Path | None = None,
    trace_path: Path | None = None,
    max_trials: int | None = None,
    time_budget_s: float | None = None,
    rounds: int | None = None,
    threads: int | None = None,
    no_store: bool = False,
    on_error: str = "stop",
    quiet: bool = False,
    quick: bool = False,
    baseline_outputs: Sequence[Any] | None = None,
) -> int:
    """Run the loop, print the report, write the files; returns the exit code.
    ``factory``: how a fresh process builds the pipeline (the final re-measurement runs
    there); ``baseline_outputs``: the original's outputs when known (a demo's cached
    set-up)."""
    from pipetune.core.loop.optimize import EXIT_REQUIREMENTS_UNMET
    from pipetune.core.loop.optimize import optimize as run_loop
    from pipetune.core.loop.store import RunStore
    from pipetune.core.measure.timed_pass import RuntimeSpec

    errors = stderr_console()
    log = (lambda message: None) if quiet else (lambda m: errors.print(f"[dim]· {escape(m)}[/dim]"))
    settings = _loop_settings(rounds, quick, max_trials, time_budget_s, on_error)
    store = None if no_store else RunStore()
    try:
        result: Optimized = run_loop(
            pipeline,
            workload,
            requirements,
            pm=state.plugin_manager(),
            settings=settings,
            store=store if store is not None else False,
            target=target,
            runtime=RuntimeSpec.from_workload(workload, threads=threads),
            log=log,
            baseline_outputs=baseline_outputs,
            factory=factory,
        )
        data = result.report.to_dict()
        data["warnings"] = list(dict.fromkeys([*plugin_problems(state), *data["warnings"]]))
        written = write_outputs(
            state, result, data, store, json_path, html_path, markdown_path, recipe_path
        )
        if trace_path is not None:
            written.append(("Chrome trace", write_trace(pipeline, result, workload, trace_path)))
            state.written.append(str(trace_path))
    finally:
        if store is not None:
            store.close()
    _print_report(data, written)
    if result.report.stopped == "interrupted":
        return _report_interrupt(state, result, written)
    return 0 if result.report.requirements_met else EXIT_REQUIREMENTS_UNMET


def _loop_settings(
    rounds: int | None,
    quick: bool,
    max_trials: int | None,
    time_budget_s: float | None,
    on_error: str,
) -> LoopSettings:
    """The loop's settings: ABBA rounds (fewer and shorter with ``--quick``), budget, errors."""
    from pipetune.core.kernel import control
    from pipetune.core.loop.optimize import LoopSettings
    from pipetune.core.measure.comparison import CompareSettings
    from pipetune.core.measure.validator import ValidatorSettings

    # A second look on twice the rounds when the first leaves a trial undecided.
    first = rounds or (4 if quick else 8)
    if quick:
        compare = CompareSettings(
            rounds=first, max_rounds=2 * first, round_target_s=0.2, bootstrap=1000
        )
    else:
        compare = CompareSettings(rounds=first, max_rounds=2 * first)
    return LoopSettings(
        max_trials=max_trials,
        time_budget_s=time_budget_s,
        validator=ValidatorSettings(compare=compare),
        detailed_profiles=not quick,
        stage_timeout_s=control.current().item_timeout_s,
        on_error=on_error,
    )


def _print_report(data: dict[str, Any], written: list[tuple[str, Path]]) -> None:
    """The report on stdout, then one line per file written."""
    from pipetune.core.report import terminal

    console = stdout_console()
    terminal.render(data, console)
    for kind, path in written:
        console.print(f"[dim]wrote {kind} {escape(str(path))}[/dim]")


def _report_interrupt(state: CliState, result: Optimized, written: list[tuple[str, Path]]) -> int:
    """Say on stderr what an interrupted run kept (trials, files); the exit code is 130."""
    state.reported_interrupt = True
    run = result.report.run_id
    recorded = f"run {run} is recorded as interrupted" if run else "the run was not recorded"
    kept = ", ".join(str(path) for _, path in written) or "nothing written"
    click.echo(
        f"Interrupted: {recorded}, with the {len(result.report.trials)} trial(s) that "
        f"finished; kept: {kept}.",
        err=True,
    )
    return EXIT_INTERRUPTED


def write_outputs(
    state: CliState,
    result: Optimized,
    data: dict[str, Any],
    store: Any,
    json_path: Path | None,
    html_path: Path | None,
    markdown_path: Path | None,
    recipe_path: Path | None,
) -> list[tuple[str, Path]]:
    """The recipe, and the reports asked for. Returns (kind, path) for each file."""
    from pipetune.core.loop.paths import store_dir
    from pipetune.core.report import html, markdown
    from pipetune.core.report import json as report_json

    written: list[tuple[str, Path]] = []
    recipe = result.report.recipe
    if recipe is not None and (recipe.changes or recipe_path is not None):
        if recipe_path is None:
            folder = (store.folder if store is not None else store_dir()) / "recipes"
            folder.mkdir(parents=True, exist_ok=True)
            recipe_path = folder / f"{result.report.run_id or 'latest'}.json"
        recipe.save(recipe_path)
        written.append(("recipe", recipe_path))
    if json_path is not None:
        problems = report_json.write(data, json_path)
        written.append(("JSON report", json_path))
        if problems:
            stderr_console().print(
                "[yellow]warning:[/yellow] the report does not match its schema "
                f"(please report this): {problems[:3]}"
            )
    if html_path is not None:
        html.write(data, html_path)
        written.append(("HTML report", html_path))
    if markdown_path is not None:
        markdown.write(data, markdown_path)
        written.append(("Markdown report", markdown_path))
    state.written.extend(str(path) for _, path in written)
    return written


def write_trace(original: Pipeline, result: Optimized, workload: Workload, path: Path) -> Path:
    """One pass of the original and one of the optimized pipeline, with stage spans, as a
    Chrome trace (one process each), on at most 200 inputs of the workload."""
    from pipetune.core.kernel.state import reset_state
    from pipetune.core.measure.timed_pass import RuntimeSpec, run_pass
    from pipetune.core.runtime.trace import write_chrome_trace

    items = list(workload.items)[:200]
    runtime = RuntimeSpec.from_workload(workload)
    if runtime.mode != "offline" and runtime.rate is None and runtime.trace is None:
        runtime = RuntimeSpec(mode="offline")
    runs = []
    for pipeline in (original, result.pipeline):
        reset_state(pipeline)
        runs.append(run_pass(pipeline, items, runtime, spans=True))
    return write_chrome_trace(runs, path, name=f"{original.name}: 1 original, 2 optimized")
