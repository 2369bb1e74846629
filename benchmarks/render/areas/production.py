"""Production: the monitor's overhead and adaptive computation
(``benchmarks/results/production.json``).

Expected keys:

* ``monitor_overhead`` (``_quick`` for a smoke run): ``command``, ``machine``,
  ``host_load`` (or ``conditions``), ``implied_overhead_pct_at_1ms``,
  ``recording_cost[empty pipeline][variant].cpu.added_us_per_request_median`` (before
  ``compare`` the empty pipelines sat in ``pipelines``) with ``inputs_per_pass`` and
  ``rounds`` (a CPU-time cost, not a comparison), ``pipelines[1 ms
  pipeline][variant].{overhead_pct, overhead_pct_ci, added_us_per_request, compare}``
  (before ``compare``: ``wall``/``cpu`` with ``overhead_pct_median``,
  ``overhead_pct_ci``); ``compare`` is a comparison row from ``benchmarks.common``
  (``inputs_timed``, ``inputs_total``, ``samples_per_side``, ``host_load``),
  ``scrape.{requests_recorded, scrape_ms_median,
  exposition_bytes, export_ms, export_bytes}``;
* ``adaptive_nlp``: ``command``, ``host_load`` (or ``conditions``), ``setup``,
  ``cases[small model].{status, reason, threshold, holdout, speed}`` (``speed``: a
  comparison row from ``benchmarks.common``).
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block

MONITOR = "python -m benchmarks.production.monitor_overhead"
ADAPTIVE = "python -m benchmarks.production.adaptive_nlp"
VARIANTS = ("monitor", "monitor+trace", "prometheus observe()")


def _monitor(results: Results) -> dict[str, Any] | None:
    found = results.section("production", "monitor_overhead")
    return dict(cells.headline(found, MONITOR) or {}) or None


def _costs(section: dict[str, Any]) -> dict[str, Any]:
    costs = section.get("recording_cost")
    if costs:
        return dict(costs)
    return {k: v for k, v in (section.get("pipelines") or {}).items() if "empty" in k}


def _direct(section: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (section.get("pipelines") or {}).items() if "empty" not in k}


def _overhead(entry: dict[str, Any] | None) -> str:
    """``+0.18 % [+0.17, +0.25]`` (compare's interval, or the wall-time rounds' bootstrap
    interval from before ``compare``)."""
    entry = entry or {}
    if "overhead_pct" not in entry:
        entry = entry.get("wall") or {}
        value = entry.get("overhead_pct_median")
    else:
        value = entry.get("overhead_pct")
    low, high = entry.get("overhead_pct_ci") or (None, None)
    bounds = f" [{cells.points(low)}, {cells.points(high)}]" if low is not None else ""
    return f"{cells.points(value)}{bounds}"


def _rests_on(entry: dict[str, Any] | None, figures: dict[str, Any], command: bool = False) -> str:
    """What a direct figure rests on; for a run from before ``compare``, what it had and
    that the rest is pending (with the command where ``command``: a summary row)."""
    row = (entry or {}).get("compare")
    if row:
        return cells.rests_on(row, what="requests")
    return (
        f"{cells.number(figures.get('inputs_per_pass'))} requests × "
        f"{cells.number(figures.get('rounds'))} interleaved rounds (distinct inputs and "
        f"samples through compare: {cells.pending(MONITOR) if command else cells.PENDING})"
    )


def _load(entry: dict[str, Any] | None, section: dict[str, Any]) -> str:
    """The host's load behind a direct figure: its comparison's run-queue wait, or, for a
    run from before ``compare``, what the run recorded with the wait pending."""
    row = (entry or {}).get("compare")
    if row and row.get("host_load"):
        return cells.load(row)
    text = cells.load(section)
    pending = f"run-queue wait: {cells.pending(MONITOR)}"
    return text.replace("run-queue wait not recorded", pending).replace(
        "host load not recorded", pending
    )


def _cost_rests_on(figures: dict[str, Any]) -> str:
    """What the recording cost rests on (process CPU time, not a comparison)."""
    return (
        f"recording cost: {cells.number(figures.get('inputs_per_pass'))} requests × "
        f"{cells.number(figures.get('rounds'))} interleaved passes a variant (process CPU "
        "time, not a speed comparison)"
    )


@block("production.monitor.cost", "production")
def monitor_cost(results: Results) -> str:
    section = _monitor(results)
    if not section:
        return cells.missing(results.section("production", "monitor_overhead_quick"), MONITOR)
    rows = []
    for label, figures in _costs(section).items():
        added = [
            ((figures.get(v) or {}).get("cpu") or {}).get("added_us_per_request_median")
            for v in VARIANTS
        ]
        rows.append([label, *(f"{cells.number(a)} µs" for a in added)])
    header = ["pipeline", "monitor", "monitor + 5 % trace", "`Histogram.observe()` per request"]
    implied = section.get("implied_overhead_pct_at_1ms")
    return (
        cells.table(header, rows, "lrrr")
        + f"\n\nThe monitor's recording cost on one empty stage is **{cells.number(implied)} %** "
        "of a 1 ms stage."
    )


@block("production.monitor.direct", "production")
def monitor_direct(results: Results) -> str:
    section = _monitor(results)
    if not section:
        return cells.missing(results.section("production", "monitor_overhead_quick"), MONITOR)
    rows = []
    for label, figures in _direct(section).items():
        rows.append(
            [
                label,
                f"**{_overhead(figures.get('monitor'))}**",
                _overhead(figures.get("monitor vs control")),
                _overhead(figures.get("prometheus observe()")),
                _overhead(figures.get("control wrapper")),
                _rests_on(figures.get("monitor"), figures),
            ]
        )
    header = [
        "stage",
        "monitor vs bare",
        "monitor vs control wrapper",
        "`observe()` vs bare",
        "control wrapper vs bare",
        "rests on",
    ]
    return f"{cells.table(header, rows, 'lrrrrl')}\n\n{cells.conditions(section, MONITOR)}"


@block("production.monitor.scrape", "production")
def monitor_scrape(results: Results) -> str:
    section = _monitor(results)
    scrape = (section or {}).get("scrape")
    if not scrape:
        return cells.missing(results.section("production", "monitor_overhead_quick"), MONITOR)
    return (
        f"3-stage monitor, {cells.number(scrape.get('requests_recorded'))} requests recorded: "
        f"a Prometheus scrape (`generate_latest`) {cells.number(scrape.get('scrape_ms_median'))} "
        f"ms, {cells.number(scrape.get('exposition_bytes'))} bytes of exposition; a JSON export "
        f"{cells.number(scrape.get('export_ms'), 1)} ms, "
        f"{cells.number(scrape.get('export_bytes'))} bytes."
    )


@block("production.summary.monitor", "production")
def monitor_summary(results: Results) -> str:
    section = _monitor(results)
    if not section:
        missing = cells.missing(results.section("production", "monitor_overhead_quick"), MONITOR)
        return cells.row_cells(missing, "—", "—", "—", missing)
    costs = _costs(section)
    one = costs.get("1 empty stage") or {}
    cost = ((one.get("monitor") or {}).get("cpu") or {}).get("added_us_per_request_median")
    observe = ((one.get("prometheus observe()") or {}).get("cpu") or {}).get(
        "added_us_per_request_median"
    )
    direct = _direct(section)
    busy = direct.get("busy 1 ms") or {}
    others = ", ".join(
        f"{label} {_overhead(figures.get('monitor'))}"
        for label, figures in direct.items()
        if label != "busy 1 ms"
    )
    return cells.row_cells(
        f"recording cost **{cells.number(cost)} µs** a request "
        f"(**{cells.number(section.get('implied_overhead_pct_at_1ms'))} %** of 1 ms); "
        f"busy-wait 1 ms stage {_overhead(busy.get('monitor'))}",
        f"`prometheus_client` `observe()` per request: {cells.number(observe)} µs",
        "—",
        f"other 1 ms stages: {others}",
        f"{_cost_rests_on(one)}; busy-wait 1 ms: {_rests_on(busy.get('monitor'), busy, True)}; "
        f"{_load(busy.get('monitor'), section)}",
    )


def _adaptive(results: Results) -> dict[str, Any] | None:
    found = results.section("production", "adaptive_nlp")
    return dict(cells.headline(found, ADAPTIVE) or {}) or None


def _decision(case: dict[str, Any]) -> str:
    if case.get("status") == "declined":
        return f"**declined**: {case.get('reason')}"
    speed = case.get("speed") or {}
    hold = case.get("holdout") or {}
    return (
        f"**{case.get('status')}**: {cells.ratio(speed.get('speedup'), speed.get('ci'))} "
        f"on held-out documents, {cells.percent(hold.get('small_share'))} routed to the small "
        f"model, agreement {cells.number(hold.get('agreement_with_large'), 3)}; "
        f"{cells.p99(speed)}; {cells.rests_on(speed, what='documents')}"
    )


@block("production.adaptive", "production")
def adaptive(results: Results) -> str:
    section = _adaptive(results)
    if not section:
        return cells.missing(results.section("production", "adaptive_nlp_quick"), ADAPTIVE)
    setup = section.get("setup") or {}
    rows = [
        [f"{label} (same family, own head)", _decision(case)]
        for label, case in (section.get("cases") or {}).items()
    ]
    return "\n".join(
        [
            cells.table(["small encoder", "decision"], rows, "ll"),
            "",
            f"Workload: {cells.number(setup.get('documents'))} documents "
            f"({cells.number(setup.get('calibration'))} calibration, "
            f"{cells.number(setup.get('holdout'))} held out), at most "
            f"{cells.percent(setup.get('max_accuracy_drop'), 0)} label-agreement drop. "
            + cells.conditions(section, ADAPTIVE),
        ]
    )


@block("production.summary.adaptive", "production")
def adaptive_summary(results: Results) -> str:
    section = _adaptive(results)
    if not section:
        missing = cells.missing(results.section("production", "adaptive_nlp_quick"), ADAPTIVE)
        return cells.row_cells(missing, "—", "—", "—", missing)
    cases = section.get("cases") or {}
    decisions = "; ".join(
        f"{label}: {case.get('status')}"
        + (f" ({cells.ratio(case['speed'].get('speedup'), case['speed'].get('ci'))})"
           if case.get("speed") else "")
        for label, case in cases.items()
    )  # fmt: skip
    setup = section.get("setup") or {}
    speeds = [case.get("speed") for case in cases.values() if case.get("speed")]
    rests = (
        cells.rests_on(speeds[0], what="documents")
        if speeds
        else f"declined by the tune step on {cells.number(setup.get('calibration'))} calibration "
        "documents, before any paired timing"
    )
    return cells.row_cells(
        decisions,
        "— (the nlp-optimized pipeline is the baseline)",
        f"≤ {cells.percent(setup.get('max_accuracy_drop'), 0)} drop enforced",
        "a cascade pays only when the small model keeps more inputs than its relative cost",
        f"{rests}; {cells.load(section)}",
    )
