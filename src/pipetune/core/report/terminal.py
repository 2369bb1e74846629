"""The report on the terminal (rich tables). Reads the JSON form of the report."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from pipetune.core.report import format as fmt

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


_STATUS_STYLE = {"accepted": "green", "rejected": "red", "deferred": "yellow"}


def render(report: Mapping[str, Any], console: Console | None = None) -> None:
    """Print ``report`` (the dict of :meth:`Report.to_dict`) to ``console``."""
    from rich.console import Console

    console = console or Console()
    for section in (_head, _summary, _stages, _trials, _proposals, _cost, _verdict):
        section(report, console)
    if report.get("run_id"):
        console.print(f"run {report['run_id']} recorded in the run store")


def _table(title: str, **options: Any) -> Table:
    from rich import box
    from rich.table import Table

    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", **options)


def _head(report: Mapping[str, Any], console: Console) -> None:
    """The pipeline, the metric, the machine and the workload's split."""
    metric = report.get("metric", "throughput")
    machine = report["machine"]
    workload = report.get("workload") or {}
    head = (
        f"[bold]{escape(report['pipeline'])}[/bold] · optimizing {fmt.metric_label(metric)} · "
        f"{escape(machine['cpu'])} ({machine['cores']} cores"
        + (f", {escape(machine['gpu'])}" if machine.get("gpu") else "")
        + ")"
    )
    console.print(head)
    if workload:
        calibration = workload.get("calibration_items")
        console.print(
            f"workload {workload.get('name', '')}: {workload.get('items')} inputs "
            f"({workload.get('tune_items')} to tune, "
            + (f"{calibration} to calibrate, " if calibration is not None else "")
            + f"{workload.get('holdout_items')} held out to validate), "
            f"{workload.get('mode', 'offline')} mode",
            markup=False,
        )


def _summary(report: Mapping[str, Any], console: Console) -> None:
    """The headline table and what its figures rest on."""
    summary = _table("Original → optimized")
    for column in ("", "original", "optimized", "speedup [95 % CI]"):
        summary.add_column(column, justify="right" if column else "left")
    for cells in fmt.summary_rows(report):
        summary.add_row(*cells)
    console.print(summary)
    for line in fmt.context_lines(report):
        style = "yellow" if "BUSY" in line else "dim"
        console.print(f"[{style}]{escape(line)}[/{style}]")


def _stages(report: Mapping[str, Any], console: Console) -> None:
    stages = _table("Where the time goes")
    for column in ("stage", "before", "after", "time per input"):
        stages.add_column(column, justify="left" if column == "stage" else "right")
    for name, before, after, note in fmt.stage_rows(report):
        stages.add_row(escape(name), fmt.pct(before), fmt.pct(after), note)
    console.print(stages)


def _trials(report: Mapping[str, Any], console: Console) -> None:
    """The trials table, then each trial's reason (and how to finish a deferred one)."""
    if not report["trials"]:
        return
    trials = _table("Trials")
    trials.add_column("change")
    trials.add_column("status")
    trials.add_column("estimated", justify="right")
    trials.add_column("measured [CI]", justify="right")
    trials.add_column("fidelity", justify="right")
    for row, trial in zip(fmt.trial_rows(report), report["trials"], strict=True):
        style = _STATUS_STYLE[row["status"]]
        trials.add_row(
            escape(f"{row['proposal']} @ {row['stage']}"),
            f"[{style}]{row['status']}[/{style}]",
            escape(row["estimated"]),
            row["measured"],
            fmt.fidelity_value(trial.get("fidelity")),
        )
    console.print(trials)
    for row, trial in zip(fmt.trial_rows(report), report["trials"], strict=True):
        style = _STATUS_STYLE[row["status"]]
        console.print(
            f"  [{style}]{escape(row['proposal'])}[/{style}] @ "
            f"{escape(row['stage'])}: {escape(row['reason'])}"
        )
        if trial["status"] == "deferred" and trial.get("command"):
            console.print(
                f"    artifact {trial.get('artifact') or '-'}; finish with: {trial['command']}",
                markup=False,
            )
    console.print()


def _proposals(report: Mapping[str, Any], console: Console) -> None:
    """The proposals not tried, advice, and what is unavailable here."""
    groups = fmt.proposal_groups(report)
    untried = fmt.untried_rows(report)
    if untried:
        table = _table("Not tried", expand=True)
        for column in ("proposal", "estimated", "effort", "why"):
            table.add_column(column)
        for row in untried:
            table.add_row(*(escape(row[key]) for key in ("proposal", "estimated", "effort", "why")))
        console.print(table)
    if groups["advice"]:
        console.print("[bold]Advice[/bold] (not applied automatically):")
        for p in groups["advice"]:
            console.print(
                f"  {p['id']} @ {p['stage']}: {p['title']} — est. "
                f"{fmt.ratio(p.get('est_e2e_speedup'))}, effort {p['effort']}. "
                f"{p.get('reason', '')}",
                markup=False,
            )
    if groups["unavailable"]:
        console.print("[bold]Unavailable here[/bold]:")
        for p in groups["unavailable"]:
            install = f" — install: {p['install']}" if p.get("install") else ""
            # escape: an install hint such as pipetune[vision] is not rich markup
            console.print(escape(f"  {p['id']} @ {p['stage']}: {p['reason']}{install}"))


def _cost(report: Mapping[str, Any], console: Console) -> None:
    cost = report.get("cost")
    if not cost:
        return
    line = (
        f"cost per 1,000 predictions: {fmt.money(cost['per_1000_before'])} → "
        f"{fmt.money(cost['per_1000_after'])}"
    )
    if cost.get("monthly_before") is not None:
        line += (
            f"; per month at {cost['monthly_volume']:,.0f} predictions: "
            f"{fmt.money(cost['monthly_before'])} → {fmt.money(cost['monthly_after'])}"
        )
    console.print(line)


def _verdict(report: Mapping[str, Any], console: Console) -> None:
    """Whether the requirements are met, the cumulative fidelity and accuracy, warnings."""
    style = "green" if report["requirements_met"] else "red"
    console.print(
        f"[{style}]{escape(fmt.requirements_line(report))}[/{style}] "
        f"({escape(str(report.get('stopped')))})"
    )
    fid = report.get("fidelity")
    if fid:
        console.print(
            f"cumulative fidelity against the original: {fmt.fidelity(fid)}", markup=False
        )
    accuracy = fmt.accuracy_line(report.get("baseline"), report.get("final"))
    if accuracy:
        console.print(accuracy, markup=False)
    for warning in report.get("warnings") or []:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
