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
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pipetune.cli.render import escape
from pipetune.cli.state import stdout_console

if TYPE_CHECKING:
    from pipetune.monitor.compare import ProductionComparison, QuantileDiff

#: Exit code when B regressed beyond noise.
EXIT_REGRESSION = 1


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
    from pipetune.monitor.compare import looks_like_export

    if looks_like_export(first) or looks_like_export(second):
        return compare_production(first, second, as_json=as_json)

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


# -- production latency: monitor exports (pipetune.monitor.compare does the statistics) -------


def compare_production(
    first: str,
    second: str,
    *,
    as_json: bool = False,
    confidence: float = 0.95,
    min_change: float | None = None,
    store_folder: str | Path | None = None,
) -> int:
    """``pipetune compare A B`` where A or B is a monitor export. Returns the exit code."""
    from pipetune.monitor.compare import DEFAULT_MIN_CHANGE, compare_distributions, load_side

    if min_change is None:
        min_change = DEFAULT_MIN_CHANGE
    a, b = load_side(first, store_folder), load_side(second, store_folder)
    result = compare_distributions(a, b, confidence=confidence, min_change=min_change)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        render_production(result)
    return EXIT_REGRESSION if result.regressions else 0


def render_production(result: ProductionComparison) -> None:
    from rich import box
    from rich.table import Table

    console = stdout_console()
    a, b = result.a, result.b
    console.print(f"[bold]A[/] {a.label}: {a.kind}, {a.what} ({a.n:,} samples)")
    console.print(f"[bold]B[/] {b.label}: {b.kind}, {b.what} ({b.n:,} samples)")
    table = Table(box=box.SIMPLE_HEAD, title="B against A", title_justify="left")
    for column in ("", "A", "B", "B - A", "B / A", f"{result.confidence:.0%} CI", "verdict"):
        table.add_column(column, justify="left" if column in ("", "verdict") else "right")
    for d in result.quantiles:
        table.add_row(*_row(d.name.upper(), d))
    console.print(table)
    mw = result.mann_whitney
    console.print(
        f"whole distribution: P(a request of B is slower than one of A) = "
        f"{mw['p_b_slower']:.3f} (0.5 = no shift), Mann-Whitney p = {mw['p_value']:.2g}"
    )
    moved = {
        name: diffs for name, diffs in result.stages.items() if any(d.beyond_noise for d in diffs)
    }
    if moved:
        stages = Table(box=box.SIMPLE_HEAD, title="stages that moved", title_justify="left")
        for column in ("stage", "A", "B", "B - A", "B / A", "CI", "verdict"):
            stages.add_column(column, justify="left" if column in ("stage", "verdict") else "right")
        for name, diffs in moved.items():
            for d in diffs:
                if d.beyond_noise:
                    stages.add_row(*_row(f"{name} {d.name.upper()}", d))
        console.print(stages)
    for note in result.notes:
        console.print(f"[dim]note: {note}[/]")
    if result.regressions:
        console.print("[red]regression beyond noise:[/] " + "; ".join(result.regressions))
    else:
        console.print("[green]no regression beyond noise[/]")


def _row(label: str, d: QuantileDiff) -> list[str]:
    colour = {"slower": "red", "faster": "green"}.get(d.verdict)
    verdict = f"[{colour}]{d.verdict}[/]" if colour else d.verdict
    return [
        label,
        f"{d.a_ms:.2f} ms",
        f"{d.b_ms:.2f} ms",
        f"{d.diff_ms:+.2f} ms",
        f"{d.ratio:.3f}",
        f"[{d.ci[0]:.3f}, {d.ci[1]:.3f}]",
        verdict,
    ]
