"""``pipetune scan``: its speed (``benchmarks/results/scan.json``) and the scan rules'
measured effects (from the other areas' results).

Expected keys, section ``speed`` (``speed_quick`` for a smoke run; a file from before
sections holds them at the top): ``command``, ``codebase``, ``files``, ``rules``,
``repeats``/``samples_per_variant``, ``inputs.{files, lines}``, ``host_load`` (or
``load_average_1min``), ``variants[].{variant, lines, best_s, median_s,
lines_per_s_best, lines_per_s_median, findings}``, ``scan_vs_parse_only``,
``jobs2_speedup``, ``target_lines_per_s``, ``meets_target``.

A rule's measured effect is registered by the area that measures it
(:func:`benchmarks.render.registry.effect`); this module renders them as one table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import EFFECTS, Results, block

COMMAND = "python -m benchmarks.scan.speed"


def _speed(results: Results) -> dict[str, Any] | None:
    found = results.section("scan", "speed", flat=True)
    return dict(cells.headline(found, COMMAND) or {}) or None


def _rests_on(section: dict[str, Any]) -> str:
    lines = (section.get("inputs") or {}).get("lines")
    if lines is None:
        lines = next((v.get("lines") for v in section.get("variants") or []), None)
    samples = section.get("samples_per_variant") or section.get("repeats")
    order = "interleaved" if section.get("samples_per_variant") else "one variant after another"
    return (
        f"{cells.number(section.get('files'))} files, {cells.number(lines)} lines; "
        f"{cells.number(samples)} samples per variant ({order})"
    )


@block("scan.speed", "scan")
def speed(results: Results) -> str:
    section = _speed(results)
    if not section:
        return cells.missing(results.section("scan", "speed_quick"), COMMAND)
    rows = [
        [
            row.get("variant", "–"),
            cells.number(row.get("lines")),
            cells.number(row.get("best_s")),
            cells.number(row.get("median_s")),
            f"**{cells.number(row.get('lines_per_s_best'), 0)}**",
            cells.number(row.get("lines_per_s_median"), 0),
            cells.number(row.get("findings")),
        ]
        for row in section.get("variants") or []
    ]
    met = "met" if section.get("meets_target") else "**not met**"
    return "\n".join(
        [
            cells.table(
                [
                    "variant",
                    "lines",
                    "best s",
                    "median s",
                    "lines/s (best)",
                    "lines/s (median)",
                    "findings",
                ],
                rows,
                "lrrrrrr",
            ),
            "",
            f"Target (≥ {cells.number(section.get('target_lines_per_s'))} lines/s): {met}. "
            f"The scan costs {cells.times(section.get('scan_vs_parse_only'))} a bare `ast.parse` "
            f"of the same files; `--jobs 2` is {cells.times(section.get('jobs2_speedup'))} one "
            f"process. Rests on: {_rests_on(section)}; "
            f"{section.get('rules')} rules. {cells.conditions(section, COMMAND)}",
        ]
    )


@block("scan.summary", "scan")
def summary(results: Results) -> str:
    section = _speed(results)
    if not section:
        missing = cells.missing(results.section("scan", "speed_quick"), COMMAND)
        return cells.row_cells(missing, "—", "—", "—", missing)
    rows = {row.get("variant"): row for row in section.get("variants") or []}
    single = rows.get("scan, 1 process") or {}
    jobs = rows.get("scan, --jobs 2") or {}
    return cells.row_cells(
        f"**{cells.number(single.get('lines_per_s_best'), 0)}** lines/s one process, "
        f"**{cells.number(jobs.get('lines_per_s_best'), 0)}** with `--jobs 2`",
        f"{cells.times(section.get('scan_vs_parse_only'))} the time of a bare `ast.parse`",
        f"{cells.number(single.get('findings'))} findings on the "
        f"`{Path(str(section.get('codebase', '?'))).name}` package's source",
        "a rate on one codebase, best of the samples",
        f"{_rests_on(section)}; {cells.load(section)}",
    )


@block("scan.effects", "loop", "hardware", "nlp", "vision", "recsys", "llm")
def effects(results: Results) -> str:
    """docs/scan.md's measured effects: one row per rule that has a benchmark."""
    rows = [
        [f"[{rule}](#{rule.lower()})", found.what, found.render(results), f"`{found.command}`"]
        for rule, found in sorted(EFFECTS.items())
    ]
    return cells.table(["rule", "measured on", "effect", "command"], rows, "llll")
