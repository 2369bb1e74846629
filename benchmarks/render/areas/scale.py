"""Scale: Ray Data, Ray Serve and a lost node (``benchmarks/results/scale.json``).

Expected keys, sections ``nlp``, ``port``, ``fault``, ``serve``: ``command``, ``quick``,
``passes_per_side`` (or ``passes_per_engine``), ``load_before``/``load_after``, and per
part: ``nlp.{documents, ray_over_local, steady_ray_over_local, parity.identical}``,
``port.{rows, pipetune_over_usual, same_outputs, fetch}``, ``fault.{rows,
every_input_exactly_once, untouched_wall_s, fault_wall_s}``, ``serve.{requests_per_pass,
p99_serve_over_local}``, each ratio a ``{median, min, max, n, values}`` summary. A part
with fewer than two passes a side, or from a ``--quick`` run, is pending.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block

COMMAND = "python -m benchmarks.scale.run"
PARTS = (
    ("nlp", "Ray Data against the local engine, the optimized nlp pipeline", "ray_over_local",
     "documents", "≥ 0.8x documents/s, outputs identical"),
    ("port", "pipetune's plan against the usual port (fetch latency simulated with a sleep)",
     "pipetune_over_usual", "rows", "≥ 1.5x rows/s"),
    ("fault", "a node removed at 50 % on a 3-node local cluster", "", "rows",
     "every input exactly once"),
    ("serve", "Ray Serve P99 over the local online mode's", "p99_serve_over_local",
     "requests_per_pass", "≤ 1.3x"),
)  # fmt: skip


def _passes(section: dict[str, Any]) -> int:
    return int(section.get("passes_per_side") or section.get("passes_per_engine") or 0)


def _part(results: Results, key: str) -> tuple[dict[str, Any] | None, str]:
    """A part's section, or why it is pending."""
    section = results.section("scale", key)
    if not section:
        return None, cells.pending(f"{COMMAND} --only {key}")
    if cells.is_smoke(section):
        return None, cells.pending(f"{COMMAND} --only {key}", "only a smoke run recorded")
    if _passes(section) < 2:
        return None, cells.pending(
            f"{COMMAND} --only {key}",
            f"one pass a side recorded, {cells.load(section)}",
        )
    return section, ""


def _spread(summary: dict[str, Any] | None) -> str:
    summary = summary or {}
    return (
        f"{cells.times(summary.get('median'))} (range {cells.number(summary.get('min'))}–"
        f"{cells.number(summary.get('max'))} over {summary.get('n')} passes)"
    )


def _seconds(summary: dict[str, Any] | None) -> str:
    summary = summary or {}
    return (
        f"{cells.number(summary.get('median'), 1)} s (range {cells.number(summary.get('min'), 1)}"
        f"–{cells.number(summary.get('max'), 1)} over {summary.get('n')} passes)"
    )


def _figure(key: str, section: dict[str, Any], field: str) -> str:
    if key == "fault":
        once = section.get("every_input_exactly_once")
        share = (section.get("removed_at_share_of_wall") or {}).get("median")
        at = f"; node removed at {share:.0%} of the job's wall time" if share else ""
        return (
            f"every input exactly once: {once}; {_seconds(section.get('fault_wall_s'))}, "
            f"untouched {_seconds(section.get('untouched_wall_s'))}{at}"
        )
    figure = f"**{_spread(section.get(field))}**"
    if key == "nlp":
        figure += _nlp_detail(section)
    return figure


def _nlp_detail(section: dict[str, Any]) -> str:
    """The job's fixed start-up beside its steady rate: the rate from the first rows written
    to the last, and when the first rows came (actors building the pipeline)."""
    steady = (section.get("steady_ray_over_local") or {}).get("median")
    first = (section.get("ray_first_rows_s") or {}).get("median")
    if not steady or not first:
        return ""
    return (
        f"; steady rate (first rows to last) {cells.times(steady)}; Ray's first rows after "
        f"{cells.number(first, 1)} s (the embed actors building the pipeline)"
    )


@block("scale.figures", "scale")
def figures(results: Results) -> str:
    rows = []
    for key, what, field, size, target in PARTS:
        section, why = _part(results, key)
        if not section:
            rows.append([key, what, target, why, "—", "—"])
            continue
        rows.append(
            [
                key,
                what,
                target,
                _figure(key, section, field),
                f"{cells.number(section.get(size))} {size.split('_')[0]}, "
                f"{_passes(section)} passes a side",
                cells.load(section),
            ]
        )
    return cells.table(["part", "what", "target", "measured", "rests on", "host load"], rows)


@block("scale.summary", "scale")
def summary(results: Results) -> str:
    measured, rests = [], []
    for key, _, field, size, _ in PARTS:
        section, why = _part(results, key)
        if not section:
            measured.append(f"{key}: {why}")
            continue
        measured.append(f"{key}: {_figure(key, section, field)}")
        rests.append(
            f"{key}: {cells.number(section.get(size))} {size.split('_')[0]} × "
            f"{_passes(section)} passes, {cells.load(section)}"
        )
    nlp = results.section("scale", "nlp") or {}
    parity = (nlp.get("parity") or {}).get("identical")
    return cells.row_cells(
        "; ".join(measured),
        "the usual port (one `map_batches` over `pipeline.run`, Ray Data's defaults): see `port`",
        {True: "outputs identical, id for id", False: "**outputs differ**"}.get(parity, "—"),
        "the port's fetch latency is simulated with `time.sleep`; a local cluster shares one "
        "machine",
        "; ".join(rests) or "—",
    )
