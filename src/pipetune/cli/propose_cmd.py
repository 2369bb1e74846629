"""``pipetune propose TARGET``: profile and print the ranked proposals, applying nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from pipetune.cli.options import TargetOptions, json_file_option, runs_target, timeout_option
from pipetune.cli.render import escape
from pipetune.cli.state import get_state, plugin_problems, stdout_console


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
    from rich import box
    from rich.table import Table

    from pipetune.core.report import format as fmt

    console = stdout_console()
    baseline = data["baseline"]
    console.print(
        f"[bold]{escape(data['pipeline'])}[/bold]: {fmt.rate(baseline['throughput_rps'])}, "
        f"P50 {fmt.ms(baseline['latency_ms']['p50'])}, P99 {fmt.ms(baseline['latency_ms']['p99'])}"
        f" · ranking for {fmt.metric_label(plan.metric)}"
    )
    table = Table(box=box.SIMPLE_HEAD, title="Proposals, best first", title_justify="left")
    for column in ("#", "proposal", "stage share", "est. end to end", "effort", "risk"):
        table.add_column(column, justify="right" if column in ("#", "stage share") else "left")
    for position, ranked in enumerate(plan.candidates, start=1):
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
    console.print(table)
    if plan.candidates:
        bounded = any(ranked.ceiling_informative for ranked in plan.candidates)
        console.print(
            "[dim]Estimates replay this profile's per-input stage times"
            + (" (≤: the most the stage could give if it took no time)" if bounded else "")
            + "; `pipetune optimize` gives the same figure for the profile it takes.[/dim]"
        )
    for ranked in plan.candidates:
        if ranked.note or ranked.proposal.rationale:
            console.print(
                f"  [bold]{escape(ranked.proposal.id)}[/bold] @ {escape(ranked.proposal.stage)}:"
            )
            if ranked.proposal.rationale:
                console.print(f"    {ranked.proposal.rationale}", markup=False)
            if ranked.note:
                style = "yellow" if ranked.cannot_matter else "dim"
                console.print(f"    [{style}]{escape(ranked.note)}[/{style}]")
    if plan.advice:
        console.print("[bold]Advice[/bold] (never applied automatically):")
        for ranked in plan.advice:
            p = ranked.proposal
            console.print(
                f"  {p.id} @ {p.stage}: {p.title} — est. {ranked.est_e2e_speedup:.2f}x, "
                f"effort {p.effort}. {p.reason}",
                markup=False,
            )
    if plan.unavailable:
        console.print("[bold]Unavailable here[/bold]:")
        for ranked in plan.unavailable:
            p = ranked.proposal
            install = f" — install: {p.install}" if p.install else ""
            # escape: an install hint such as pipetune[vision] is not rich markup
            console.print(escape(f"  {p.id} @ {p.stage}: {p.reason}{install}"))
    if not plan.all():
        console.print("No plugin proposes anything for this pipeline.")
    for line in data["failures"]:
        console.print(f"[yellow]warning:[/yellow] plugin raised: {escape(line)}")
    for hint in data["hints"]:
        console.print(f"[dim]hint: {escape(hint)}[/dim]")
