"""``pipetune compare A B``: two recorded runs side by side.

Stored figures are only comparable when both runs were measured on the same machine
(``machine_fingerprint``); otherwise the figures are shown without ratios. To compare two
configurations on *this* machine, re-measure them with ``pipetune check``.

When A or B is a monitor export file (``Monitor.export``), the latency distributions are
compared instead: P50/P95/P99 from the histograms, the difference and whether it is beyond
noise (:mod:`pipetune.monitor.compare`; exit 1 when B regressed beyond noise).
"""

from __future__ import annotations

import json

import click

from pipetune.cli.render import escape
from pipetune.cli.state import stdout_console


def register(cli: click.Group) -> None:
    cli.add_command(compare)


@click.command()
@click.argument("first", metavar="A")
@click.argument("second", metavar="B")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def compare(first: str, second: str, as_json: bool) -> int:
    """Compare the final figures of runs A and B (ids, unique prefixes, or `latest`).

    A or B may also be a monitor export file (production latency): then P50/P95/P99 of the
    two distributions are compared with a bootstrap interval of B/A and a verdict (beyond
    noise or not); a run is then ID[@label] (a stored profile: final, baseline). Exit 0: no
    regression beyond noise; 1: B is slower beyond noise; 2: bad input.
    """
    from pipetune.core.loop.store import RunStore
    from pipetune.monitor.compare import looks_like_export, run_cli

    if looks_like_export(first) or looks_like_export(second):
        return run_cli(first, second, as_json=as_json)

    with RunStore() as store:
        a, b = store.run(first), store.run(second)
    figures = {run.id: _readable_figures(run) for run in (a, b)}
    same_machine = a.machine_fingerprint == b.machine_fingerprint
    ratios = {}
    if same_machine:
        fa, fb = figures[a.id], figures[b.id]
        for key in ("throughput_rps", "p50_ms", "p99_ms"):
            if fa.get(key) and fb.get(key):
                ratios[key] = fb[key] / fa[key] if key == "throughput_rps" else fa[key] / fb[key]
    if as_json:
        click.echo(
            json.dumps(
                {
                    "a": a.id,
                    "b": b.id,
                    "same_machine": same_machine,
                    "figures": figures,
                    "speedup_b_over_a": ratios,
                },
                indent=2,
            )
        )
        return 0
    _render(a, b, figures, ratios, same_machine)
    return 0


def _readable_figures(run) -> dict:  # type: ignore[no-untyped-def]
    """A run's figures, or a clear error when its stored row is damaged."""
    from pipetune.core.kernel.errors import StoreError

    problem = run.damage
    if not problem:
        try:
            return _figures(run)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            problem = f"its report has an unexpected shape ({type(exc).__name__}: {exc})"
    raise StoreError(f"run {run.id} is damaged in the run store ({problem}): it cannot be compared")


def _figures(run) -> dict:  # type: ignore[no-untyped-def]
    report = run.report or {}
    final = report.get("final") or (run.summary or {}).get("final") or {}
    latency = final.get("latency_ms") or {}
    return {
        "pipeline": run.pipeline,
        "status": run.display_status,
        "created": run.created,
        "throughput_rps": final.get("throughput_rps"),
        "p50_ms": latency.get("p50"),
        "p99_ms": latency.get("p99"),
        "accepted": [t["proposal"] for t in report.get("trials", []) if t["status"] == "accepted"],
        "requirements_met": report.get("requirements_met"),
        "machine": run.machine_fingerprint,
    }


def _render(a, b, figures, ratios, same_machine) -> None:  # type: ignore[no-untyped-def]
    from rich import box
    from rich.table import Table

    from pipetune.core.report import format as fmt

    console = stdout_console()
    fa, fb = figures[a.id], figures[b.id]
    table = Table(box=box.SIMPLE_HEAD, title=f"{a.id} vs {b.id}", title_justify="left")
    for column in ("", "A", "B", "B against A"):
        table.add_column(column)
    table.add_row("pipeline", escape(fa["pipeline"]), escape(fb["pipeline"]), "")
    table.add_row("status", fa["status"], fb["status"], "")
    table.add_row(
        "throughput",
        fmt.rate(fa["throughput_rps"]),
        fmt.rate(fb["throughput_rps"]),
        fmt.ratio(ratios.get("throughput_rps")),
    )
    table.add_row(
        "P50", fmt.ms(fa["p50_ms"]), fmt.ms(fb["p50_ms"]), fmt.ratio(ratios.get("p50_ms"))
    )
    table.add_row(
        "P99", fmt.ms(fa["p99_ms"]), fmt.ms(fb["p99_ms"]), fmt.ratio(ratios.get("p99_ms"))
    )
    table.add_row(
        "kept changes",
        escape(", ".join(fa["accepted"]) or "-"),
        escape(", ".join(fb["accepted"]) or "-"),
        "",
    )
    console.print(table)
    if not same_machine:
        console.print(
            f"[yellow]not compared:[/yellow] A was measured on machine {fa['machine']} and B on "
            f"{fb['machine']}; stored figures from different machines say nothing about each "
            "other. Re-measure both here with `pipetune check`."
        )
