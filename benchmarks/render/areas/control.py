"""The control plane: Ctrl-C during ``optimize`` and the config fuzz
(``benchmarks/results/control.json``).

Expected keys: section ``sigint_optimize`` (``python -m benchmarks.control.sigint_optimize``):
``passed``, ``of``, ``max_exit_after_s``, ``points[].{phase, exit, exit_after_s,
stored_status}``, ``host_load_1_5_15.{before, after}``; section ``fuzz_config``
(``python -m benchmarks.control.fuzz_config``): ``internal_errors``, ``exit_codes``
(exit code -> count), ``seconds``, ``host_load_1_5_15``. A ``_quick`` section is a smoke
run (pending).
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block

SIGINT = "python -m benchmarks.control.sigint_optimize"
FUZZ = "python -m benchmarks.control.fuzz_config"


def _load(section: dict[str, Any]) -> str:
    averages = section.get("host_load_1_5_15") or {}
    before, after = averages.get("before"), averages.get("after")
    values = [v[0] for v in (before, after) if v]
    if not values:
        return cells.load(section)
    return (
        f"load average {'→'.join(cells.number(v, 1) for v in values)}, run-queue wait not recorded"
    )


@block("control.summary.sigint", "control")
def sigint_summary(results: Results) -> str:
    section = cells.headline(results.section("control", "sigint_optimize"), SIGINT)
    if not section:
        missing = cells.missing(results.section("control", "sigint_optimize_quick"), SIGINT)
        return cells.row_cells(missing, "—", "—", "—", missing)
    passed, of = section.get("passed"), section.get("of")
    phases = sorted({p.get("phase", "?").split(":")[0] for p in section.get("points") or []})
    verdict = "met" if passed == of else "not met"
    return cells.row_cells(
        f"**{passed} of {of}** exited 130 recorded as interrupted (slowest exit "
        f"{cells.number(section.get('max_exit_after_s'))} s after the signal) — {verdict}",
        "—",
        "—",
        f"phases hit: {'; '.join(phases)}",
        f"{of} signals at random offsets of one `optimize` run; {_load(dict(section))}",
    )


@block("control.summary.fuzz", "control")
def fuzz_summary(results: Results) -> str:
    section = cells.headline(results.section("control", "fuzz_config"), FUZZ)
    if not section:
        missing = cells.missing(results.section("control", "fuzz_config_quick"), FUZZ)
        return cells.row_cells(missing, "—", "—", "—", missing)
    codes = section.get("exit_codes") or {}
    total = sum(int(v) for v in codes.values())
    errors = section.get("internal_errors")
    shown = ", ".join(f"exit {code}: {cells.number(n)}" for code, n in sorted(codes.items()))
    return cells.row_cells(
        f"**{cells.number(errors)}** internal errors in {cells.number(total)} generated "
        f"configs and workloads ({shown}) — {'met' if errors == 0 else 'not met'}",
        "—",
        "—",
        "each example runs `pipetune profile` in a subprocess",
        f"{cells.number(total)} examples in {cells.number(section.get('seconds'), 0)} s; "
        f"{_load(dict(section))}",
    )


#: A recorded phase's first words -> its short name on the page.
PHASES = (
    ("profiling", "baseline profile"),
    ("validating", "speed validation"),
    ("re-profiling", "re-profile"),
    ("re-measuring", "final side-by-side"),
)


def _phase(label: str) -> str:
    return next((short for start, short in PHASES if label.startswith(start)), label)


def _phases(points: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for point in points:
        name = _phase(str(point.get("phase", "?")))
        counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{name} {n}" for name, n in counts.items()) or "–"


@block("control.sigint", "control")
def sigint(results: Results) -> str:
    """The page's SIGINT table: one row per recorded run."""
    header = ["run", "points", "met", "slowest exit after the signal", "phases hit", "host load"]
    section = cells.headline(results.section("control", "sigint_optimize"), SIGINT)
    if not section:
        missing = cells.missing(results.section("control", "sigint_optimize_quick"), SIGINT)
        return cells.table(header, [[missing, "–", "–", "–", "–", "–"]], "lrrrll")
    points = sorted(section.get("points") or [], key=lambda p: p.get("offset_s") or 0)
    seed = section.get("seed")
    return cells.table(
        header,
        [
            [
                f"{section.get('of')} points{f', seed {seed}' if seed is not None else ''} "
                f"(reference run {cells.number(section.get('reference_run_s'))} s)",
                cells.number(section.get("of")),
                f"**{section.get('passed')} of {section.get('of')}**",
                f"{cells.number(section.get('max_exit_after_s'))} s",
                _phases(points),
                _load(dict(section)),
            ]
        ],
        "lrrrll",
    )


@block("control.fuzz", "control")
def fuzz(results: Results) -> str:
    """The page's fuzz table: exit codes and internal errors of the recorded run."""
    header = ["run", "examples", "exit 0", "exit 2 (a clear error)", "internal errors", "host load"]
    section = cells.headline(results.section("control", "fuzz_config"), FUZZ)
    if not section:
        missing = cells.missing(results.section("control", "fuzz_config_quick"), FUZZ)
        return cells.table(header, [[missing, "–", "–", "–", "–", "–"]], "lrrrrl")
    codes = {str(k): int(v) for k, v in (section.get("exit_codes") or {}).items()}
    other = {k: v for k, v in codes.items() if k not in ("0", "2")}
    errors = section.get("internal_errors")
    examples = section.get("internal_error_examples") or []
    shown = f"**{cells.number(errors)}**"
    if examples:
        shown += f" (first: {examples[0]})"
    if other:
        shown += "; other exits: " + ", ".join(f"{k}: {cells.number(v)}" for k, v in other.items())
    seed = section.get("seed")
    return cells.table(
        header,
        [
            [
                f"seed {seed}, {cells.number(section.get('seconds'), 0)} s"
                if seed is not None
                else f"{cells.number(section.get('seconds'), 0)} s",
                cells.number(section.get("examples") or sum(codes.values())),
                cells.number(codes.get("0", 0)),
                cells.number(codes.get("2", 0)),
                shown,
                _load(dict(section)),
            ]
        ],
        "lrrrrl",
    )
