"""Terminal rendering shared by commands: profiles, progress bars, small formatters.

rich is imported inside the functions, so importing this module costs nothing.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from pipetune.core.kernel.model import Requirements
    from pipetune.core.kernel.results import Profile


def fmt_ms(value: float | None) -> str:
    """The report's milliseconds (:func:`pipetune.core.report.format.ms`), imported when
    first used so that importing this module stays cheap."""
    from pipetune.core.report.format import ms

    return ms(value)


def fmt_num_ms(value: float | None) -> str:
    """Milliseconds without the unit (for table columns headed "ms")."""
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def fmt_rate(value: float | None) -> str:
    """The report's rate (:func:`pipetune.core.report.format.rate`)."""
    from pipetune.core.report.format import rate

    return rate(value)


def fmt_share(share: float, width: int = 10) -> str:
    filled = max(0, min(width, round(share * width)))
    return f"{share * 100:5.1f} % {'█' * filled}{'·' * (width - filled)}"


def fmt_value(value: Any, limit: int = 90) -> str:
    """A compact one-line rendering of a plugin fact."""
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, default=str, separators=(", ", ": "))
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def escape(text: str) -> str:
    """Text shown through rich, taken literally (``pipetune[vision]`` is not markup).
    rich is imported here, not at module level: ``pipetune --help`` must stay light."""
    from rich.markup import escape as escape_markup

    return escape_markup(text)


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write JSON so that a crash or Ctrl-C never leaves a half-written file."""
    from pipetune.core.kernel.atomic import write_text_atomic

    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def progress_messages(quiet: bool) -> Callable[[str], None]:
    """How a command says what it is doing: ``· message`` on stderr, or nothing with
    --quiet (stdout stays for the command's own output)."""
    if quiet:
        return lambda message: None
    import click

    return lambda message: click.echo(f"· {message}", err=True)


@contextlib.contextmanager
def progress_bar(
    description: str, *, enabled: bool = True, console: Console | None = None
) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields ``update(done, total)``. Disabled: a no-op callback."""
    if not enabled:
        yield lambda done, total: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        yield update


def render_profile(
    profile: Profile,
    console: Console,
    *,
    requirements: Requirements | None = None,
    title: str | None = None,
    top: int = 5,
    hot_top: int = 3,
) -> None:
    """Render everything a :class:`~pipetune.core.kernel.results.Profile` holds."""
    _profile_head(profile, console, title)
    _profile_stages(profile, console)
    _profile_sweep(profile, console)
    _profile_hot_functions(profile, console, hot_top)
    _profile_layers(profile, console, top)
    _profile_context(profile, console)
    _profile_facts(profile, console)
    _profile_errors(profile, console)
    passes = dict(getattr(profile, "passes", {}) or {})
    if passes:
        console.print("[dim]passes: " + escape(_passes(passes)) + "[/]")
    if requirements is not None:
        _render_requirements(profile, requirements, console)
    _render_list(console, "hints", profile.hints, "cyan")
    _render_list(console, "warnings", profile.warnings, "yellow")


def _profile_head(profile: Profile, console: Console, title: str | None) -> None:
    """The title, the workload, end-to-end latency, throughput and accuracy."""
    workload = profile.workload or {}
    head = title or f"profile of {profile.pipeline}"
    items = workload.get("items")
    detail = [f"{profile.mode}", f"{profile.samples} samples"]
    if items is not None:
        detail.insert(0, f"{items} inputs × {workload.get('repeats', '?')} passes")
    console.print(f"[bold]{escape(head)}[/] ({', '.join(detail)})")

    lat = profile.latency_ms
    console.print(
        f"latency     P50 {fmt_ms(lat.p50)}  P95 {fmt_ms(lat.p95)}  P99 {fmt_ms(lat.p99)}  "
        f"max {fmt_ms(lat.max)}"
    )
    console.print(f"throughput  {fmt_rate(profile.throughput_rps)}")
    if profile.accuracy:
        from pipetune.core.report.format import accuracy_line

        console.print(accuracy_line({"accuracy": profile.accuracy}, None), markup=False)


def _profile_stages(profile: Profile, console: Console) -> None:
    from rich.table import Table

    stages = Table(title="where the time goes (other: glue between stages)", title_justify="left")
    for column, justify in (
        ("stage", "left"),
        ("kind", "left"),
        ("share", "left"),
        ("P50 ms", "right"),
        ("P99 ms", "right"),
        ("CPU/wall", "right"),
    ):
        stages.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
    for stats in profile.stages:
        gil = ""
        if stats.holds_gil:
            gil = " [yellow]GIL[/]"
        ratio = "-" if stats.cpu_ratio is None else f"{stats.cpu_ratio:.2f}{gil}"
        name = escape(stats.name) if stats.name != "other" else "[dim]other[/]"
        stages.add_row(
            name,
            escape(stats.kind),
            fmt_share(stats.share),
            fmt_num_ms(stats.p50_ms),
            fmt_num_ms(stats.p99_ms),
            ratio,
        )
    console.print(stages)


def _profile_sweep(profile: Profile, console: Console) -> None:
    """Throughput and latency against concurrency, and the knee."""
    if not profile.concurrency:
        return
    from rich.table import Table

    sweep = Table(title="throughput and latency against concurrency", title_justify="left")
    for column in ("concurrency", "throughput", "P50", "P99", ""):
        sweep.add_column(column, justify="right")
    for point in profile.concurrency:
        knee = "[bold]← knee[/]" if point.concurrency == profile.knee else ""
        sweep.add_row(
            str(point.concurrency),
            fmt_rate(point.throughput_rps),
            fmt_ms(point.p50_ms),
            fmt_ms(point.p99_ms),
            knee,
        )
    console.print(sweep)
    note = getattr(profile, "knee_note", "")
    if note:
        console.print(escape(note))
    elif profile.knee is not None:
        console.print(
            f"knee at concurrency {profile.knee}: beyond it latency grows faster than "
            "throughput (specific to this host)"
        )


def _profile_hot_functions(profile: Profile, console: Console, hot_top: int) -> None:
    hot = [(stage, fns) for stage, fns in (profile.hot_functions or {}).items() if fns]
    if not hot:
        return
    from rich.table import Table

    table = Table(title="hot functions (own profiling pass)", title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("function", overflow="fold")
    table.add_column("share", justify="right", no_wrap=True)
    for stage, functions in hot:
        for position, fn in enumerate(list(functions)[:hot_top]):
            table.add_row(
                escape(stage) if position == 0 else "",
                escape(fn.function),
                f"{fn.share * 100:.1f} %",
                end_section=position == min(len(functions), hot_top) - 1,
            )
    console.print(table)


def _profile_layers(profile: Profile, console: Console, top: int) -> None:
    from rich.table import Table

    for stage, layers in (profile.layers or {}).items():
        if not layers:
            continue
        table = Table(title=f"layers of {escape(stage)}", title_justify="left")
        table.add_column("layer")
        table.add_column("time", justify="right")
        table.add_column("share", justify="right")
        for layer in sorted(layers, key=lambda item: -item.ms)[:top]:
            table.add_row(escape(layer.layer), fmt_ms(layer.ms), f"{layer.share * 100:.1f} %")
        console.print(table)


def _profile_context(profile: Profile, console: Console) -> None:
    """The runtime's settings, peak memory, the GPU and the machine."""
    runtime = dict(getattr(profile, "runtime", {}) or {})
    if runtime:
        console.print("[dim]runtime: " + escape(_inline(runtime)) + "[/]")
    extras = []
    if profile.memory_peak_mb is not None:
        extras.append(f"peak memory {profile.memory_peak_mb:,.0f} MB")
    if profile.gpu and profile.gpu.get("available", True):
        extras.append("gpu " + fmt_value(dict(profile.gpu)))
    machine = profile.machine
    extras.append(
        f"machine {machine.cpu}, {machine.cores} cores"
        + (f", {machine.gpu}" if machine.gpu else ", no GPU")
    )
    console.print("[dim]" + escape("; ".join(extras)) + "[/]")


def _profile_facts(profile: Profile, console: Console) -> None:
    if not profile.facts:
        return
    from rich.table import Table

    facts = Table(title="facts from plugins", title_justify="left")
    facts.add_column("plugin")
    facts.add_column("fact")
    facts.add_column("value", overflow="fold")
    for plugin, values in profile.facts.items():
        for key, value in (values or {}).items():
            facts.add_row(escape(plugin), escape(str(key)), escape(fmt_value(value)))
    console.print(facts)


def _profile_errors(profile: Profile, console: Console) -> None:
    errors = profile.errors
    if errors.count:
        per_stage = ", ".join(f"{stage}: {n}" for stage, n in errors.by_stage.items())
        console.print(f"[red]{errors.count} input(s) failed[/] ({escape(per_stage)}); skipped")
        for example in errors.examples:
            console.print(f"  [red]•[/] {escape(example)}")


def _passes(passes: Mapping[str, Any]) -> str:
    """``warmup 0.5 s, timing 1.2 s, layers skipped (no torch module...)``."""
    parts = []
    for name, info in passes.items():
        if not isinstance(info, Mapping):
            parts.append(f"{name} {fmt_value(info, limit=40)}")
        elif info.get("skipped"):
            parts.append(f"{name} skipped ({info['skipped']})")
        elif isinstance(info.get("seconds"), int | float):
            parts.append(f"{name} {info['seconds']:.1f} s")
        else:
            parts.append(name)
    return ", ".join(parts)


def _inline(values: Mapping[str, Any]) -> str:
    return "; ".join(f"{key} {fmt_value(value, limit=60)}" for key, value in values.items())


def _render_requirements(profile: Profile, requirements: Requirements, console: Console) -> None:
    bounds = {
        f"{metric.upper()} ≤ {getattr(requirements, f'{metric}_ms'):g} ms"
        for metric in ("p50", "p95", "p99", "max")
        if getattr(requirements, f"{metric}_ms") is not None
    }
    if requirements.min_throughput_rps is not None:
        bounds.add(f"throughput ≥ {requirements.min_throughput_rps:g}/s")
    if not bounds:
        return
    latency = {
        "p50": profile.latency_ms.p50,
        "p95": profile.latency_ms.p95,
        "p99": profile.latency_ms.p99,
        "max": profile.latency_ms.max,
    }
    # A relative bound (min_speedup) needs an original to compare with: optimize checks it.
    misses = requirements.evolve(min_speedup=None).check(profile.throughput_rps, latency)
    from rich.markup import escape

    if misses:
        console.print("[red]requirements missed:[/] " + escape("; ".join(misses)))
    else:
        console.print("[green]requirements met:[/] " + escape(", ".join(sorted(bounds))))


def _render_list(console: Console, title: str, lines: Sequence[str], style: str) -> None:
    if not lines:
        return
    from rich.markup import escape

    console.print(f"[{style}]{title}:[/]")
    for line in lines:
        console.print(f"  [{style}]•[/] {escape(line)}")


def profile_json(profile: Profile, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The profile as written by ``--json``: the report's ``baseline`` object (the JSON contract)
    with the profile's other fields alongside."""
    data = profile.to_dict()
    data.update({k: v for k, v in profile.summary().items() if k not in data})
    if extra:
        data.update(extra)
    return data
