"""The optimize loop: the validator's calibration, the ``queries`` demo, and the speedup a
plain script sees (``benchmarks/results/loop.json``).

Expected keys:

* ``validator_calibration`` (``_smoke`` for fewer than 20 repetitions): ``command``,
  ``settings.{rounds, holdout_items}``, ``host_load`` or ``loadavg_at_end``,
  ``summary[scenario].{work_ratio, work_ratio_measured, accepted, repetitions,
  median_speedup, median_ci, min_gain, target_met, fidelity, min_inputs_timed,
  min_samples_per_side, max_run_queue_wait}``, ``outcomes[scenario][].rounds``;
* ``demo_queries``: ``trials[].{proposal, status, reason, estimated, measured}``,
  ``fidelity.{value, n, ci}``, ``against[original|competent (batch 32)]`` (a
  ``Comparison.to_dict()``: ``speedup``, ``ci``, ``inputs_timed``, ``inputs_total``,
  ``samples_per_side``, ``host_load``, ``a``/``b``), ``load_average``;
* ``execution_context`` (``_quick`` for a smoke run): ``optimize.{speedup, ci,
  inputs_timed, inputs_total, samples_per_side, host_load}``, ``plain_script.{speedup,
  requests, samples_per_side, host_load}``, ``relative_difference``, ``target_met``.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

VALIDATOR = "python -m benchmarks.loop.validator_calibration"
QUERIES = "python -m benchmarks.loop.demo_queries"
CONTEXT = "python -m benchmarks.loop.execution_context"
SCENARIOS = (
    ("null", "null (the same pipeline, a fresh copy)", "≤ 1/20"),
    ("faster", "1.15x less work", "≥ 18/20"),
    ("slower", "0.9x (more work)", "0/20"),
    ("lossy", "1.15x, 2 % of labels changed", "0/20"),
)


def _validator(results: Results) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    return (
        results.section("loop", "validator_calibration"),
        results.section("loop", "validator_calibration_smoke"),
    )


def _second_looks(section: dict[str, Any], name: str) -> str:
    first = (section.get("settings") or {}).get("rounds") or 8
    rows = (section.get("outcomes") or {}).get(name) or []
    timed = [r for r in rows if r.get("rounds")]
    if not timed:
        return "—"
    return f"{sum(r['rounds'] > first for r in timed)}/{len(rows)}"


def _validator_rests_on(found: dict[str, Any], section: dict[str, Any]) -> str:
    inputs, samples = found.get("min_inputs_timed"), found.get("min_samples_per_side")
    if not inputs:
        holdout = (section.get("settings") or {}).get("holdout_items")
        return f"{cells.number(holdout)} held-out inputs; inputs timed and samples: {cells.PENDING}"
    wait = found.get("max_run_queue_wait")
    return (
        f"at least {cells.number(inputs)} inputs and {cells.number(samples)} samples per side "
        f"a trial; run-queue wait up to {cells.percent(wait, 0)}"
    )


@block("loop.validator", "loop")
def validator(results: Results) -> str:
    section, smoke = _validator(results)
    if not section:
        return cells.missing(smoke, VALIDATOR)
    rows = []
    for name, label, target in SCENARIOS:
        found = (section.get("summary") or {}).get(name) or {}
        measured = found.get("work_ratio_measured") or {}
        speed = (
            cells.ratio(found.get("median_speedup"), found.get("median_ci"))
            if found.get("median_speedup") is not None
            else f"fidelity {cells.number(found.get('fidelity'), 3)} < 0.990"
        )
        accepted = f"**{found.get('accepted')}/{found.get('repetitions')}**"
        met = "met" if found.get("target_met") else "**not met**"
        rows.append(
            [
                label,
                cells.ratio(found.get("work_ratio"), measured.get("ci"), 3),
                cells.number(found.get("min_gain")),
                accepted,
                _second_looks(section, name),
                speed,
                f"{target} — {met}",
                _validator_rests_on(found, section),
            ]
        )
    header = [
        "scenario",
        "work ratio (direct)",
        "min_gain",
        "accepted",
        "second looks",
        "median measured [median interval]",
        "target",
        "rests on",
    ]
    text = cells.table(header, rows, "lrrrrrll")
    note = f"\n\n{cells.conditions(section, VALIDATOR)}"
    if smoke:
        note += (
            f" A smoke run is also recorded (`{smoke.get('command')}`, "
            f"`validator_calibration_smoke`); its figures are not quoted."
        )
    return text + note


@block("loop.summary.validator", "loop")
def validator_summary(results: Results) -> str:
    section, smoke = _validator(results)
    if not section:
        missing = cells.missing(smoke, VALIDATOR)
        return cells.row_cells(missing, "—", "—", "—", missing)
    summary = section.get("summary") or {}
    counts = [summary.get(name) or {} for name, _, _ in SCENARIOS]
    accepted = ", ".join(f"{c.get('accepted')}/{c.get('repetitions')}" for c in counts)
    met = all((summary.get(name) or {}).get("target_met") for name, _, _ in SCENARIOS)
    faster = summary.get("faster") or {}
    lossy = summary.get("lossy") or {}
    return cells.row_cells(
        f"**{accepted}** accepted (null, 1.15x, 0.9x, lossy) — {'met' if met else 'not met'}",
        "—",
        f"the lossy candidate rejected on fidelity ({cells.number(lossy.get('fidelity'), 3)})",
        f"1.15x less work measures {cells.ratio(faster.get('work_ratio'), digits=3)} end to end",
        f"{_validator_rests_on(faster, section)}; {cells.load(section)}",
    )


def _queries(results: Results) -> dict[str, Any] | None:
    found = results.section("loop", "demo_queries")
    return dict(cells.headline(found, QUERIES) or {}) or None


def _comparison(data: dict[str, Any] | None) -> dict[str, Any]:
    """A ``Comparison.to_dict()`` as a row the cells read (P99 only with 100 samples)."""
    data = data or {}
    samples = data.get("samples_per_side") or (data.get("a") or {}).get("items")
    shown = (data.get("quantiles_shown") or {}).get("p99", (samples or 0) >= 100)
    p99 = (data.get("speedup") or {}).get("p99")
    return {
        "speedup": (data.get("speedup") or {}).get("throughput"),
        "ci": (data.get("ci") or {}).get("throughput"),
        "inputs_timed": data.get("inputs_timed"),
        "inputs_total": data.get("inputs_total"),
        "samples_per_side": samples,
        "p99_speedup": p99 if shown else None,
        "p99_note": None if shown else f"n/a ({samples} samples)",
        "p99_ci": (data.get("ci") or {}).get("p99"),
        "host_load": data.get("host_load"),
        "throughput_rps": {
            "a": (data.get("a") or {}).get("throughput_rps"),
            "b": (data.get("b") or {}).get("throughput_rps"),
        },
    }


@block("loop.queries", "loop")
def queries(results: Results) -> str:
    section = _queries(results)
    if not section:
        return cells.missing(results.section("loop", "demo_queries_quick"), QUERIES)
    trials = [
        [
            f"`{t.get('proposal')}`",
            cells.times(t.get("estimated")),
            cells.times(t.get("measured")),
            f"{t.get('status')}: {t.get('reason')}",
        ]
        for t in section.get("trials") or []
    ]
    rows = []
    for name, label in (
        ("original", "the original"),
        ("competent (batch 32)", "library defaults: batches of 32 through `batch_fn`"),
    ):
        row = _comparison((section.get("against") or {}).get(name))
        rows.append(
            [
                f"{label} ({cells.number(row['throughput_rps']['a'], 0)} queries/s)",
                cells.ratio(row["speedup"], row["ci"], bold=True),
                cells.p99(row),
                cells.rests_on(row),
                cells.load(row) if row.get("host_load") else cells.load(section),
            ]
        )
    fidelity = section.get("fidelity") or {}
    return "\n".join(
        [
            cells.table(["trial", "estimated", "measured", "verdict"], trials, "lrrl"),
            "",
            f"Fidelity: label agreement {cells.number(fidelity.get('value'), 3)} "
            f"{cells.interval(fidelity.get('ci'), 3)} on {cells.number(fidelity.get('n'))} "
            "held-out queries.",
            "",
            cells.table(
                ["optimized against", "throughput", "P99 change", "rests on", "host load"],
                rows,
                "lrrll",
            ),
            "",
            cells.conditions(section, QUERIES),
        ]
    )


@block("loop.summary.queries", "loop")
def queries_summary(results: Results) -> str:
    section = _queries(results)
    if not section:
        missing = cells.missing(results.section("loop", "demo_queries_quick"), QUERIES)
        return cells.row_cells(missing, missing, "—", "—", missing)
    against = section.get("against") or {}
    original = _comparison(against.get("original"))
    library = _comparison(against.get("competent (batch 32)"))
    fidelity = section.get("fidelity") or {}
    kept = ", ".join(
        f"{t.get('proposal')} {cells.times(t.get('measured'))}"
        for t in section.get("trials") or []
        if t.get("status") == "accepted"
    )
    return cells.row_cells(
        f"{cells.ratio(original['speedup'], original['ci'], bold=True)} throughput ({kept})",
        f"{cells.ratio(library['speedup'], library['ci'], bold=True)} against batches of 32 "
        "through `batch_fn`",
        f"label agreement {cells.number(fidelity.get('value'), 3)} on "
        f"{cells.number(fidelity.get('n'))} held-out queries",
        f"{cells.p99(original)} against the original, {cells.p99(library)} against the "
        "batched baseline (offline batches make single queries wait)",
        f"{cells.rests_on(original)}; {cells.load(original if original['host_load'] else section)}",
    )


def _context(results: Results) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    return (
        results.section("loop", "execution_context"),
        results.section("loop", "execution_context_quick"),
    )


@block("loop.execution_context", "loop")
def execution_context(results: Results) -> str:
    section, smoke = _context(results)
    if not section:
        return cells.missing(smoke, CONTEXT) + "."
    loop, script = section.get("optimize") or {}, section.get("plain_script") or {}
    fresh = (loop.get("measured_in") or "").startswith("a fresh process")
    rows = [
        [
            "`optimize` (its final re-measure"
            + (", in a fresh process)" if fresh else ", in the loop's process)"),
            cells.ratio(loop.get("speedup"), loop.get("ci")),
            cells.rests_on(loop),
            cells.load(loop),
        ],
        [
            "a plain script after `load_recipe` (main thread, library defaults)",
            cells.times(script.get("speedup")),
            cells.rests_on(script, inputs=script.get("requests"), total=script.get("requests")),
            cells.load(script),
        ],
    ]
    met = "met" if section.get("target_met") else "**not met**"
    return "\n".join(
        [
            cells.table(["measured by", "speedup", "rests on", "host load"], rows, "lrll"),
            "",
            f"Apart by {cells.percent(section.get('relative_difference'), 0)}; target "
            f"{section.get('target', 'within 15%')}: {met}. {cells.conditions(section, CONTEXT)}",
        ]
    )


@block("loop.summary.execution_context", "loop")
def execution_context_summary(results: Results) -> str:
    section, smoke = _context(results)
    if not section:
        missing = cells.missing(smoke, CONTEXT)
        return cells.row_cells(missing, "—", "—", "—", missing)
    loop, script = section.get("optimize") or {}, section.get("plain_script") or {}
    met = "met" if section.get("target_met") else "not met"
    return cells.row_cells(
        f"`optimize` {cells.ratio(loop.get('speedup'), loop.get('ci'))}, a plain script "
        f"{cells.times(script.get('speedup'))}: "
        f"{cells.percent(section.get('relative_difference'), 0)} apart — {met}",
        "—",
        "—",
        "the plain script runs with library-default thread settings",
        f"{cells.rests_on(loop)}; {cells.load(loop)}",
    )


@block("readme.generic", "loop")
def readme_generic(results: Results) -> str:
    """README's plugin table: the ``generic`` row's measured figure."""
    section = _queries(results)
    if not section:
        return cells.missing(results.section("loop", "demo_queries_quick"), QUERIES)
    against = section.get("against") or {}
    original = _comparison(against.get("original"))
    library = _comparison(against.get("competent (batch 32)"))
    return (
        f"`queries` demo {cells.ratio(original['speedup'], original['ci'])} "
        f"({cells.times(library['speedup'])} against library defaults: batches of 32), "
        f"{cells.p99(original)}; {cells.rests_on(original)}; "
        f"{cells.load(original if original['host_load'] else section)}"
    )


def _trial(results: Results, proposal: str) -> dict[str, Any] | None:
    section = _queries(results)
    trials = [t for t in (section or {}).get("trials") or [] if t.get("proposal") == proposal]
    return trials[0] if trials else None


def _trial_cell(results: Results, proposal: str, what: str) -> str:
    trial = _trial(results, proposal)
    if not trial:
        return cells.missing(results.section("loop", "demo_queries_quick"), QUERIES)
    coverage = cells.rests_on(trial)
    return (
        f"{what}: **{cells.times(trial.get('measured'))}** end to end ({trial.get('status')}: "
        f"{trial.get('reason')}); {coverage}"
    )


@effect("PT-GEN001", "the `queries` demo's classify stage, called once per query", QUERIES, "loop")
def gen001(results: Results) -> str:
    return _trial_cell(results, "generic.dynamic_batching", "batched by the loop")


@effect("PT-GEN002", "the same demo's classify stage after batching", QUERIES, "loop")
def gen002(results: Results) -> str:
    return _trial_cell(
        results, "generic.result_cache", "a result cache at the workload's own repeat rate"
    )


ESTIMATES = "python -m benchmarks.loop.estimates"


@block("loop.estimates", "loop")
def estimates(results: Results) -> str:
    """The planner's estimate per proposal across successive profiles of each demo."""
    found = results.section("loop", "estimates")
    if not cells.headline(found, ESTIMATES):
        return cells.missing(found, ESTIMATES) + "."
    rows = []
    for demo, data in (found.get("demos") or {}).items():
        for key, figures in (data.get("proposals") or {}).items():
            rows.append(
                [
                    demo,
                    f"`{key}`",
                    f"{figures.get('proposed_on')} of {data.get('profiles')}",
                    cells.times(figures.get("min")),
                    cells.times(figures.get("median")),
                    cells.times(figures.get("max")),
                    cells.number(figures.get("max_over_min")),
                ]
            )
    same = {
        demo: data.get("same_plan_on_one_profile")
        for demo, data in (found.get("demos") or {}).items()
    }
    samples = {
        demo: ", ".join(cells.number(n) for n in data.get("latency_samples_per_profile") or [])
        for demo, data in (found.get("demos") or {}).items()
    }
    header = ["demo", "proposal", "proposed on", "min", "median", "max", "max / min"]
    return "\n".join(
        [
            cells.table(header, rows, "lllrrrr"),
            "",
            "Two plans on one profile identical: "
            + ", ".join(f"{demo} {value}" for demo, value in same.items())
            + ". Latency samples behind each profile: "
            + "; ".join(f"{demo} {text}" for demo, text in samples.items())
            + f". {cells.conditions(found, ESTIMATES)}",
        ]
    )
