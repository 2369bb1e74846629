"""``pipetune propose TARGET``: profile and print the ranked proposals, applying nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetune.cli.options import TargetOptions, json_file_option, runs_target, timeout_option
from pipetune.cli.render import escape
from pipetune.cli.state import get_state, plugin_problems, stdout_console

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from pipetune.core.loop.planner import Plan, Ranked


def register(cli: click.Group) -> None:
    cli.add_command(propose)


@click.command()
@runs_target
@json_file_option("Write the profile summary and the ranked proposals as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No table (with --json).")
@timeout_option
@click.pass_context
def propose(
    ctx: click.Context,
    target: str | None,
    target_opts: TargetOptions,
    json_path: Path | None,
    quiet: bool,
) -> int:
    """Profile TARGET and list what every plugin proposes, ranked by estimated end-to-end
    gain per unit of effort on the metric the requirements name. Says when a proposal
    cannot matter, which ones are unavailable here (with the install command), and which
    are advice only. Nothing is applied.
    """
    from pipetune.cli.render import write_json_atomic
    from pipetune.cli.target import load_target
    from pipetune.core.kernel import control
    from pipetune.core.loop import planner
    from pipetune.core.measure.profiler import profile

    state = get_state(ctx)
    resolved = load_target(target, target_opts)
    assert resolved.workload is not None
    pm = state.plugin_manager()
    measured = profile(resolved.pipeline, resolved.workload, pm=pm)
    if measured.stopped:  # proposals from a partial profile would mislead: stop here
        control.complete(measured)
    plan = planner.plan(pm, resolved.pipeline, measured, resolved.requirements)
    data = {
        "pipeline": resolved.pipeline.name,
        "metric": plan.metric,
        "baseline": measured.summary(),
        "proposals": [planner.describe(r) for r in plan.all()],
        "failures": [f"{f.plugin} in {f.hook}: {f.error}" for f in plan.failures],
        "hints": list(measured.hints),
        "warnings": list(dict.fromkeys([*plugin_problems(state), *measured.warnings])),
    }
    if json_path is not None:
        write_json_atomic(json_path, data)
        state.written.append(str(json_path))
    if not quiet:
        render_plan(plan, data)
    else:  # the verdict line, so that no run ends without one
        click.echo(f"{len(plan.all())} proposal(s) for {resolved.pipeline.name}", err=True)
    return 0


def render_plan(plan: Any, data: dict[str, Any]) -> None:
    console = stdout_console()
    _print_baseline(console, plan, data)
    console.print(_proposals_table(plan.candidates))
    if plan.candidates:
        _print_estimate_note(console, plan.candidates)
    _print_rationales(console, plan.candidates)
    if plan.advice:
        _print_advice(console, plan.advice)
    if plan.unavailable:
        _print_unavailable(console, plan.unavailable)
    if not plan.all():
        console.print("No plugin proposes anything for this pipeline.")
    for line in data["failures"]:
        console.print(f"[yellow]warning:[/yellow] plugin raised: {escape(line)}")
    for hint in data["hints"]:
        console.print(f"[dim]hint: {escape(hint)}[/dim]")


def _print_baseline(console: Console, plan: Plan, data: dict[str, Any]) -> None:
    """One line: the pipeline's baseline throughput and latency, and the metric ranked for."""
    from pipetune.core.report import format as fmt

    baseline = data["baseline"]
    console.print(
        f"[bold]{escape(data['pipeline'])}[/bold]: {fmt.rate(baseline['throughput_rps'])}, "
        f"P50 {fmt.ms(baseline['latency_ms']['p50'])}, P99 {fmt.ms(baseline['latency_ms']['p99'])}"
        f" · ranking for {fmt.metric_label(plan.metric)}"
    )


def _proposals_table(candidates: Sequence[Ranked]) -> Table:
    """The ranked candidates, best first: stage share, estimated end-to-end gain, effort, risk."""
    from rich import box
    from rich.table import Table

    from pipetune.core.report import format as fmt

    table = Table(box=box.SIMPLE_HEAD, title="Proposals, best first", title_justify="left")
    for column in ("#", "proposal", "stage share", "est. end to end", "effort", "risk"):
        table.add_column(column, justify="right" if column in ("#", "stage share") else "left")
    for position, ranked in enumerate(candidates, start=1):
        p = ranked.proposal
        table.add_row(
            str(position),
            f"{escape(p.id)} @ {escape(p.stage)}\n[dim]{escape(p.title)}[/dim]",
            fmt.pct(ranked.share),
            fmt.ratio(ranked.est_e2e_speedup)
            + fmt.ceiling(ranked.ceiling, ranked.ceiling_informative)
            + (f"\n[dim]assuming {escape(p.in_flight.describe())}[/dim]" if p.in_flight else ""),
            p.effort,
            p.accuracy_risk,
        )
    return table


def _print_estimate_note(console: Console, candidates: Sequence[Ranked]) -> None:
    """Say where the estimates come from (and what ≤ means when a ceiling is shown)."""
    bounded = any(ranked.ceiling_informative for ranked in candidates)
    console.print(
        "[dim]Estimates replay this profile's per-input stage times"
        + (" (≤: the most the stage could give if it took no time)" if bounded else "")
        + "; `pipetune optimize` gives the same figure for the profile it takes.[/dim]"
    )


def _print_rationales(console: Console, candidates: Sequence[Ranked]) -> None:
    """For each candidate with a rationale or a planner note, print them under its name."""
    for ranked in candidates:
        if ranked.note or ranked.proposal.rationale:
            console.print(
                f"  [bold]{escape(ranked.proposal.id)}[/bold] @ {escape(ranked.proposal.stage)}:"
            )
            if ranked.proposal.rationale:
                console.print(f"    {ranked.proposal.rationale}", markup=False)
            if ranked.note:
                style = "yellow" if ranked.cannot_matter else "dim"
                console.print(f"    [{style}]{escape(ranked.note)}[/{style}]")


def _print_advice(console: Console, advice: Sequence[Ranked]) -> None:
    """List the advice-only proposals with their estimate and effort; these are never applied."""
    console.print("[bold]Advice[/bold] (never applied automatically):")
    for ranked in advice:
        p = ranked.proposal
        console.print(
            f"  {p.id} @ {p.stage}: {p.title} — est. {ranked.est_e2e_speedup:.2f}x, "
            f"effort {p.effort}. {p.reason}",
            markup=False,
        )


def _print_unavailable(console: Console, unavailable: Sequence[Ranked]) -> None:
    """List the proposals this machine cannot run, with why and what to install."""
    console.print("[bold]Unavailable here[/bold]:")
    for ranked in unavailable:
        p = ranked.proposal
        install = f" — install: {p.install}" if p.install else ""
        # escape: an install hint such as pipetune[vision] is not rich markup
        console.print(escape(f"  {p.id} @ {p.stage}: {p.reason}{install}"))
