"""Core: the profiler's overhead and the online mode (``benchmarks/results/core.json``).

Expected keys, section ``profiler_overhead`` (a file from before sections holds them at
the top): ``command``, ``machine``, ``host_load`` (or ``conditions``),
``instrumentation_cost[pipeline].{inputs_per_pass, rounds, bare_us_per_input_min |
bare_ms_per_input_min, profiled|traced.added_cpu_us_per_input_median}``,
``estimated_overhead_pct_at_1ms``, ``overhead[pipeline].{bare_ms_per_input,
inputs_per_chunk, chunks, profiled|traced.{overhead_pct, overhead_pct_ci,
distinct_inputs, compare}}`` (``compare``: a comparison row from ``benchmarks.common``
whose inputs are chunks; before ``compare``: ``inputs_per_pass``, ``rounds``,
``overhead_pct_median``, ``overhead_pct_q1/q3``), ``online[]`` rows.

The instrumentation's CPU cost is not a comparison of two pipelines' speed (it is process
CPU time; see the benchmark's docstring): its row states inputs per pass and rounds.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block

COMMAND = "python -m benchmarks.core.profiler_overhead"


def _section(results: Results) -> dict[str, Any] | None:
    found = results.section("core", "profiler_overhead", flat=True)
    return dict(cells.headline(found, COMMAND) or {}) or None


def _overhead(entry: dict[str, Any]) -> tuple[Any, str]:
    """The overhead in points and its interval text: compare's 95 % interval, or the
    interquartile range of the rounds in results from before ``compare``."""
    if "overhead_pct" in entry:
        low, high = entry.get("overhead_pct_ci") or (None, None)
        bounds = f"[{cells.points(low)}, {cells.points(high)}]" if low is not None else ""
        return entry["overhead_pct"], bounds
    low, high = entry.get("overhead_pct_q1"), entry.get("overhead_pct_q3")
    bounds = f"IQR [{cells.points(low)}, {cells.points(high)}]" if low is not None else ""
    return entry.get("overhead_pct_median"), bounds


def _rests_on(entry: dict[str, Any], section: dict[str, Any], command: bool = False) -> str:
    """What one pipeline's direct overhead rests on: the chunks ``compare`` timed, the
    distinct inputs in them and the samples per side (one a chunk); a run from before
    ``compare`` says what it had and that the rest is pending (with the command to run
    where ``command``: a summary row, which has no sentence naming it)."""
    profiled = entry.get("profiled") or {}
    row = profiled.get("compare")
    if row:
        chunks = cells.rests_on(row, what=f"chunks of {entry.get('inputs_per_chunk')} inputs")
        distinct = profiled.get("distinct_inputs")
        inputs = f" ({cells.number(distinct)} distinct inputs)" if distinct else ""
        return f"per pipeline: {chunks}{inputs}; a sample is a chunk"
    rounds, n = entry.get("rounds") or section.get("rounds"), entry.get("inputs_per_pass")
    return (
        f"per pipeline: {cells.number(n)} inputs × {cells.number(rounds)} interleaved rounds "
        f"(distinct inputs and samples through compare: "
        f"{cells.pending(COMMAND) if command else cells.PENDING})"
    )


def _cost_rests_on(section: dict[str, Any]) -> str:
    """What the CPU-cost headline rests on (process CPU time, not a comparison)."""
    cost = (section.get("instrumentation_cost") or {}).get("no-op, 1 stage") or {}
    return (
        f"CPU cost: {cells.number(cost.get('inputs_per_pass'))} inputs × "
        f"{cells.number(cost.get('rounds'))} interleaved passes a side (process CPU time, "
        "not a speed comparison)"
    )


@block("core.instrumentation", "core")
def instrumentation(results: Results) -> str:
    section = _section(results)
    if not section:
        return cells.missing(results.section("core", "profiler_overhead_quick"), COMMAND)
    rows = []
    for label, found in (section.get("instrumentation_cost") or {}).items():
        bare = found.get("bare_us_per_input_min")
        if bare is None and found.get("bare_ms_per_input_min") is not None:
            bare = found["bare_ms_per_input_min"] * 1000
        added = (found.get("profiled") or {}).get("added_cpu_us_per_input_median")
        traced = (found.get("traced") or {}).get("added_cpu_us_per_input_median")
        rows.append(
            [
                label,
                f"{cells.number(bare)} µs",
                f"**{cells.number(added, 1)} µs**",
                f"{cells.number(traced, 1)} µs",
                f"{cells.number(added / 10 if added is not None else None)} %",
            ]
        )
    return cells.table(
        ["pipeline", "bare, per input", "+ profiled, CPU", "+ traced, CPU", "share of 1 ms"],
        rows,
        "lrrrr",
    )


@block("core.overhead", "core")
def overhead(results: Results) -> str:
    section = _section(results)
    if not section:
        return cells.missing(results.section("core", "profiler_overhead_quick"), COMMAND)
    rows = []
    for label, entry in (section.get("overhead") or {}).items():
        value, bounds = _overhead(entry.get("profiled") or {})
        traced, _ = _overhead(entry.get("traced") or {})
        rows.append(
            [
                label,
                cells.number(entry.get("bare_ms_per_input"), 3),
                f"**{cells.points(value)}** {bounds}".strip(),
                cells.points(traced),
                _rests_on(entry, section),
            ]
        )
    table = cells.table(
        ["~1 ms pipeline", "bare ms/input", "profiled", "traced", "rests on"], rows, "lrrrl"
    )
    return f"{table}\n\n{cells.conditions(section, COMMAND)}"


@block("core.online", "core")
def online(results: Results) -> str:
    section = _section(results)
    if not section:
        return cells.missing(results.section("core", "profiler_overhead_quick"), COMMAND)
    rows = []
    for row in section.get("online") or []:
        overloaded = row.get("overloaded")
        rows.append(
            [
                row.get("stage", "–"),
                cells.number(row.get("offered_rps"), 0),
                cells.number(row.get("scheduled_rps"), 1),
                cells.number(row.get("submitted_rps"), 1),
                cells.number(row.get("completed_rps"), 1),
                cells.number(row.get("lag_ms_p99")),
                cells.number(row.get("utilization_rho")),
                cells.number(row.get("queue_ms_mean")),
                cells.number(row.get("queue_ms_mg1_prediction")),
                "**overloaded**" if overloaded else "keeps up",
                cells.number(row.get("requests")),
            ]
        )
    header = [
        "stage",
        "offered",
        "scheduled",
        "submitted",
        "done",
        "lag p99 ms",
        "ρ",
        "Wq ms (measured)",
        "Wq ms (M/G/1)",
        "verdict",
        "requests",
    ]
    return cells.table(header, rows, "lrrrrrrrrlr")


@block("core.summary", "core")
def summary(results: Results) -> str:
    """BENCHMARKS.md's row: measured | vs library defaults | fidelity | trade-offs |
    rests on."""
    section = _section(results)
    if not section:
        missing = cells.missing(results.section("core", "profiler_overhead_quick"), COMMAND)
        return cells.row_cells(missing, "—", "—", "—", missing)
    estimate = section.get("estimated_overhead_pct_at_1ms")
    cost = (section.get("instrumentation_cpu_us_per_input") or {}).get("no-op, 1 stage")
    entries = section.get("overhead") or {}
    direct = [_overhead(e.get("profiled") or {})[0] for e in entries.values()]
    traced = [_overhead(e.get("traced") or {})[0] for e in entries.values()]
    direct = [v for v in direct if v is not None]
    traced = [v for v in traced if v is not None]
    measured = (
        f"**{cells.number(estimate)} %** of a 1 ms stage by CPU cost "
        f"({cells.number(cost, 1)} µs per input and stage)"
    )
    if direct:
        measured += (
            f"; measured directly on {len(direct)} ~1 ms pipelines: "
            f"{cells.points(min(direct))} to {cells.points(max(direct))}"
        )
    trade = (
        f"with span recording: {cells.points(min(traced))} to {cells.points(max(traced))}"
        if traced
        else "—"
    )
    first = next(iter(entries.values()), {})
    direct_on = _rests_on(first, section, command=True).replace(
        "per pipeline:", "direct, per pipeline:", 1
    )
    rests = f"{_cost_rests_on(section)}; {direct_on}; {cells.load(section)}"
    return cells.row_cells(
        measured,
        "— (the reference is the bare `pipeline.run` loop)",
        "—",
        trade,
        rests,
    )
