"""``pipetune monitor show|trace|compare``: read the production monitor's export files."""

from __future__ import annotations

import json
from pathlib import Path

import click

from pipetune.cli.state import get_state, stdout_console


def register(cli: click.Group) -> None:
    cli.add_command(monitor)


@click.group()
def monitor() -> None:
    """Read production monitor exports (written by pipetune.monitor.Monitor.export)."""


@monitor.command()
@click.argument("export_path", metavar="EXPORT", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def show(export_path: Path, as_json: bool) -> int:
    """Latency percentiles (end to end and per stage), throughput, errors and the sampled
    trace of a monitor export."""
    from pipetune.monitor.export import load_export

    export = load_export(export_path)
    if as_json:
        data = {
            "pipeline": export.pipeline,
            "window": [export.started, export.exported],
            "window_s": export.window_s,
            "requests": {"ok": export.ok, "failed": export.failed},
            "throughput_rps": export.throughput_rps,
            "active_rps": export.active_rps,
            **export.summary(),
            "errors": {k: dict(v) for k, v in export.errors.items()},
            "trace": None if export.trace is None else len(export.trace.arrivals_s),
        }
        click.echo(json.dumps(data, indent=2))
        return 0
    _render(export)
    return 0


@monitor.command()
@click.argument("export_path", metavar="EXPORT", type=click.Path(path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="Where to write the trace (JSON with arrivals_s, sizes, pipeline).",
)
@click.option(
    "--first",
    type=click.IntRange(min=1),
    metavar="N",
    help="Keep the first N arrivals (a replay runs in real time).",
)
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="Keep the arrivals of the first S seconds.",
)
@click.pass_context
def trace(
    ctx: click.Context,
    export_path: Path,
    output: Path,
    first: int | None,
    seconds: float | None,
) -> int:
    """Extract the sampled arrival trace of an export, for `pipetune profile --trace` (which
    also reads the export directly), optionally cut to its first N arrivals or S seconds."""
    from pipetune.core.kernel.errors import ConfigError
    from pipetune.core.kernel.model import Trace
    from pipetune.monitor.export import load_export, write_json_atomic

    export = load_export(export_path)
    if export.trace is None:
        raise ConfigError(
            f"monitor export {export_path} holds no trace: create the Monitor with "
            "trace_sample > 0 (e.g. Monitor(pipeline, trace_sample=0.05))"
        )
    kept = export.trace
    keep = len(kept.arrivals_s)
    if seconds is not None:
        keep = sum(1 for a in kept.arrivals_s if a <= seconds)
    if first is not None:
        keep = min(keep, first)
    if keep < len(kept.arrivals_s):
        kept = Trace(
            kept.arrivals_s[:keep],
            None if kept.sizes is None else kept.sizes[:keep],
            kept.pipeline,
        )
    write_json_atomic(output, kept.to_dict())
    get_state(ctx).written.append(str(output))
    span = kept.arrivals_s[-1] - kept.arrivals_s[0]
    click.echo(
        f"wrote {output}: {len(kept.arrivals_s)} arrivals of pipeline {export.pipeline!r} "
        f"over {span:.1f} s"
        + (f" ({kept.rate:.1f} req/s)" if span > 0 else "")
        + (", with input sizes" if kept.sizes is not None else "")
    )
    return 0


@monitor.command(name="compare")
@click.argument("first", metavar="A")
@click.argument("second", metavar="B")
@click.option(
    "--confidence",
    type=click.FloatRange(0.5, 1.0, min_open=True, max_open=True),
    default=0.95,
    show_default=True,
    help="Confidence of the bootstrap intervals.",
)
@click.option(
    "--min-change",
    type=click.FloatRange(min=0.0),
    default=0.05,
    show_default=True,
    help="Smallest relative change called real (the histograms' resolution).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def compare_exports(
    first: str, second: str, confidence: float, min_change: float, as_json: bool
) -> int:
    """Compare latency distributions: A and B are monitor exports or bench runs
    (run-store ID[@profile label]). Exit 0: no regression beyond noise; 1: B is slower
    than A beyond noise at P50, P95 or P99; 2: bad input."""
    from pipetune.cli.compare_cmd import compare_production

    return compare_production(
        first, second, as_json=as_json, confidence=confidence, min_change=min_change
    )


def _render(export) -> None:  # type: ignore[no-untyped-def]
    from rich import box
    from rich.table import Table

    console = stdout_console()
    console.print(
        f"[bold]{export.pipeline}[/]: {export.ok:,} requests served, {export.failed:,} failed, "
        f"{export.throughput_rps:.2f} req/s over {export.window_s:,.0f} s "
        f"({export.started} .. {export.exported})"
    )
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("", "samples", "P50", "P95", "P99", "max", "mean"):
        table.add_column(column, justify="left" if not column else "right")

    def add(label: str, histogram) -> None:  # type: ignore[no-untyped-def]
        p = histogram.percentiles_ms()
        table.add_row(
            label,
            f"{histogram.count:,}",
            *(f"{p[k]:.2f} ms" for k in ("p50", "p95", "p99", "max", "mean")),
        )

    add("end to end", export.latency)
    for name, histogram in export.stage_latency.items():
        add(f"  {name}", histogram)
    console.print(table)
    if export.latency.count == 0:
        console.print("[yellow]no successful request recorded yet[/]")
    for stage, kinds in export.errors.items():
        listed = ", ".join(f"{kind} x{count}" for kind, count in kinds.items())
        console.print(f"[red]errors in {stage}:[/] {listed}")
    if export.trace is not None:
        sampling = export.trace_sampling
        console.print(
            f"trace: {len(export.trace.arrivals_s):,} sampled arrivals "
            f"(share {sampling.get('share', 0):g}, blocks of {sampling.get('block', '?')}), "
            f"{export.trace.rate:.1f} req/s; replay with `pipetune profile TARGET --trace "
            f"{export.source}`"
        )
