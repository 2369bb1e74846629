"""``pipetune history [RUN]``: the runs in the run store, or one run's report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipetune.cli.render import escape
from pipetune.cli.state import get_state, stdout_console

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rich.console import Console

    from pipetune.cli.state import CliState
    from pipetune.core.kernel.results import Trial
    from pipetune.core.loop.store import RunRecord, RunStore


def register(cli: click.Group) -> None:
    cli.add_command(history)


@click.command()
@click.argument("run", required=False)
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--pipeline", metavar="NAME", help="Only runs of this pipeline.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--html",
    "html_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="With RUN: write its HTML report.",
)
@click.pass_context
def history(
    ctx: click.Context,
    run: str | None,
    limit: int,
    pipeline: str | None,
    as_json: bool,
    html_path: Path | None,
) -> int:
    """List recorded runs (newest first), or show RUN (an id, a unique prefix of one, or
    `latest`): its report, its trials, and where its recipe is."""
    from pipetune.core.loop.store import RunStore

    state = get_state(ctx)
    console = stdout_console()
    with RunStore() as store:
        if run is None:
            _list_runs(store, limit, pipeline, as_json, console)
            return 0
        record = store.run(run)
        trials = store.trials(record.id)
        notes = [f"run {record.id} is damaged: {record.damage}"] if record.damage else []
        notes += store.damaged
        if as_json:
            _echo_run_json(record, trials, notes)
            return 0
        for note in notes:
            click.echo(f"warning: {note}", err=True)
        if record.report:
            _render_report(record.id, record.report, console)
        else:
            _print_kept_trials(record, trials, console)
        if html_path is not None:
            _write_html(record, html_path, state, console)
    return 0


def _list_runs(
    store: RunStore, limit: int, pipeline: str | None, as_json: bool, console: Console
) -> None:
    """Print the newest runs (as JSON or a table), then a line for each damaged one."""
    records = store.runs(limit=limit, pipeline=pipeline)
    if as_json:
        click.echo(json.dumps([_row(r) for r in records], indent=2))
        return
    if not records:
        console.print(f"no runs recorded in {store.path}", markup=False)
        return
    _table(records, console)
    for record in records:
        if record.damage:
            console.print(f"run {record.id} is damaged: {record.damage}", markup=False)


def _echo_run_json(record: RunRecord, trials: list[Trial], notes: list[str]) -> None:
    """Print one run as JSON: its row, its report, its trials and the damage notes."""
    click.echo(
        json.dumps(
            {
                **_row(record),
                "report": record.report,
                "trials": [t.to_dict() for t in trials],
                "damaged": notes,
            },
            indent=2,
            default=str,
        )
    )


def _render_report(run_id: str, report: Mapping[str, Any], console: Console) -> None:
    """Render the run's stored report, calling the run damaged if the report's shape is off."""
    from pipetune.core.report import terminal

    try:
        terminal.render(report, console)
    except (AttributeError, TypeError, KeyError, IndexError, ValueError) as exc:
        from pipetune.core.kernel.errors import StoreError

        raise StoreError(
            f"run {run_id}: its stored report has an unexpected shape "
            f"({type(exc).__name__}: {exc}); it is damaged"
        ) from None


def _print_kept_trials(record: RunRecord, trials: list[Trial], console: Console) -> None:
    """For a run with no report (interrupted or failed), list the finished trials it kept."""
    console.print(
        f"run {record.id} ({record.display_status}) has no report; "
        f"{len(trials)} finished trial(s) were kept:"
    )
    for trial in trials:
        console.print(escape(f"  {trial.proposal} @ {trial.stage}: {trial.status}: {trial.reason}"))


def _write_html(record: RunRecord, html_path: Path, state: CliState, console: Console) -> None:
    """Write the run's HTML report (``--html``) and note the file as written."""
    if not record.report:
        raise click.ClickException("this run has no report to write")
    from pipetune.core.report import html

    html.write(record.report, html_path)
    state.written.append(str(html_path))
    console.print(f"[dim]wrote {escape(str(html_path))}[/dim]")


def _row(record) -> dict:  # type: ignore[no-untyped-def]
    summary = record.summary or {}
    speedup = summary.get("speedup")
    speedup = speedup if isinstance(speedup, dict) else {}
    return {
        "id": record.id,
        "created": record.created,
        "pipeline": record.pipeline,
        "target": record.target,
        "status": record.display_status,
        "trials": summary.get("trials"),
        "accepted": summary.get("accepted"),
        "metric": summary.get("metric"),
        "throughput_speedup": speedup.get("throughput"),
        "p99_speedup": speedup.get("p99_latency"),
        "requirements_met": summary.get("requirements_met"),
        "machine": record.machine_fingerprint,
        "damage": record.damage or None,
    }


def _table(records, console) -> None:  # type: ignore[no-untyped-def]
    from rich import box
    from rich.table import Table

    from pipetune.core.report import format as fmt

    table = Table(box=box.SIMPLE_HEAD)
    for column in ("run", "when", "pipeline", "status", "kept", "throughput", "P99", "met"):
        table.add_column(column)
    for record in records:
        row = _row(record)
        when = row["created"][:19].replace("T", " ")
        try:
            met = row["requirements_met"]
            cells = [
                row["status"],
                "-" if row["trials"] is None else f"{row['accepted'] or 0}/{row['trials']}",
                fmt.ratio(row["throughput_speedup"]),
                fmt.ratio(row["p99_speedup"]),
                "-" if met is None else ("yes" if met else "no"),
            ]
        except (TypeError, ValueError, AttributeError, KeyError):  # a summary of odd shape
            cells = ["damaged", "-", "-", "-", "-"]
        table.add_row(row["id"], when, row["pipeline"], *cells)
    console.print(table)
