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
