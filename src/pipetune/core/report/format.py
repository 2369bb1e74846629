"""Formatting shared by the terminal, Markdown and HTML reports (no rich, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipetune.core.measure.coverage import coverage_text
from pipetune.core.measure.load import describe as describe_load
from pipetune.core.measure.stats import min_samples_for_quantile


def ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:,.0f} ms"
    if value >= 1:
        return f"{value:.2f} ms"
    return f"{value * 1000:.0f} µs"


def rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}/s"


def ratio(value: float | None, ci: Sequence[float] | None = None) -> str:
    if value is None:
        return "-"
    text = f"{value:.2f}x"
    if ci:
        text += f" [{ci[0]:.2f}, {ci[1]:.2f}]"
    return text


def estimate(value: float | None, assumes: str | None = None) -> str:
    """An estimated speedup, with what it assumes (``2.20x, assuming 8 requests in flight
    at once``) when the change needs several inputs in flight."""
    text = ratio(value)
    return f"{text}, assuming {assumes}" if assumes and value is not None else text


def ceiling(value: float | None, informative: bool) -> str:
    """`` (≤ 4.00x)`` beside an estimate, or '' when the planner found the ceiling
    uninformative (the rest of the pipeline too small a share of the time to resolve)."""
    return f" (≤ {value:.2f}x)" if informative and value is not None else ""


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f} %"


def money(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"${value:,.0f}"
    if abs(value) >= 1:
        return f"${value:,.2f}"
    return f"${value:.4f}"


def cost_rows(cost: Mapping[str, Any], *, detailed: bool) -> list[tuple[str, str, str]]:
    """(figure, original, optimized) rows of the cost: per 1,000 predictions and, when a
    monthly volume is known, per month (``detailed``: with the volume, and the cost of
    always-on instances beside that of instances kept busy)."""
    rows = [
        (
            "per 1,000 predictions",
            money(cost["per_1000_before"]),
            money(cost["per_1000_after"]),
        )
    ]
    if cost.get("monthly_before") is None:
        return rows
    if not detailed:
        return [*rows, ("per month", money(cost["monthly_before"]), money(cost["monthly_after"]))]
    return [
        *rows,
        (
            f"per month ({cost['monthly_volume']:,.0f} predictions, instances kept busy)",
            money(cost["monthly_before"]),
            money(cost["monthly_after"]),
        ),
        (
            "per month, always-on instances",
            f"{money(cost.get('provisioned_monthly_before'))} "
            f"({cost.get('instances_before')} instance(s))",
            f"{money(cost.get('provisioned_monthly_after'))} "
            f"({cost.get('instances_after')} instance(s))",
        ),
    ]


def fidelity(data: Mapping[str, Any] | None) -> str:
    """A fidelity figure with its gate's status, never a bound that contradicts it: an
    exact gate (threshold 1.000: every held-out item must agree) is a check of each item,
    so it shows how many agreed rather than an interval whose lower bound is below 1."""
    if not data:
        return "-"
    threshold, gate = data.get("threshold"), data.get("gate")
    if threshold is not None and threshold >= 1.0 and gate != "unproven":
        met = gate == "met" or (gate is None and data["value"] >= 1.0)  # (an older report)
        return f"{data['metric']} {data['value']:.3f} " + _exact_gate(met, data.get("n"))
    text = f"{data['metric']} {data['value']:.3f}"
    ci = data.get("ci")
    if ci:
        text += f" [{ci[0]:.3f}, {ci[1]:.3f}]"
    if threshold is not None:
        status = {"met": ": met", "missed": ": MISSED"}.get(str(gate), "")
        text += f" (gate ≥ {threshold:.3f}{status})"
    if gate == "unproven":
        more = data.get("items_to_prove")
        text += " UNPROVEN: " + (
            f"{more} more items would prove it" if more else "no sample size can prove it"
        )
    return text


def _exact_gate(met: bool, n: Any) -> str:
    on = f"{n} held-out items" if n else "the held-out items"
    if met:
        return f"(exact gate: identical on all {on})"
    return f"(exact gate MISSED: not identical on all {on})"


def fidelity_value(data: Mapping[str, Any] | None) -> str:
    """The compact fidelity cell of a trials table: the value, and the gate when it is
    not met (``1.000 unproven``, ``0.950 missed``)."""
    if not data:
        return "-"
    gate = data.get("gate")
    suffix = f" {gate}" if gate in ("unproven", "missed") else ""
    return f"{data['value']:.3f}{suffix}"


def coverage(comparison: Mapping[str, Any] | None) -> str:
    """``timed on N of M inputs, S latency samples per side`` for a comparison (or the
    ``measured`` entry of a trial), with what kept it short; '' without one."""
    if not comparison or comparison.get("inputs_total") is None:
        return ""
    text = coverage_text(
        int(comparison.get("inputs_timed") or 0),
        int(comparison.get("inputs_total") or 0),
        int(comparison.get("samples_per_side") or 0),
    )
    if comparison.get("coverage_note"):
        text += f" ({comparison['coverage_note']})"
    return text


def host_load(data: Mapping[str, Any] | None) -> str:
    """``host load: run-queue wait 3 %, other processes 0.2 of 2 cores`` (+ noisy)."""
    if not data:
        return ""
    text = f"host load while measuring: {describe_load(data)}"
    if data.get("busy"):
        text += " — BUSY: the figures are noisy"
    return text


def quantile_cell(
    comparison: Mapping[str, Any], key: str, value: str, samples: int | None = None
) -> str:
    """``value``, or ``n/a (N samples)`` when too few latency samples stand behind the
    quantile ``key`` to show it."""
    samples = comparison.get("samples_per_side") if samples is None else samples
    if samples is None:
        return value
    if int(samples) < min_samples_for_quantile(key):
        return f"n/a ({int(samples)} samples)"
    return value


def accuracy_line(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """``accuracy against the labels: 80.0 % → 80.0 % (30 inputs)``, or '' without labels."""
    first = (before or {}).get("accuracy") or {}
    last = (after or {}).get("accuracy") or {}
    if not first:
        return ""
    if first.get("value") is None:
        return f"accuracy: {first.get('reason', 'not measured')}"
    text = f"accuracy against the labels: {first['value']:.1%}"
    if last.get("value") is not None and last is not first:
        text += f" → {last['value']:.1%}"
    return text + f" ({first.get('n', '?')} inputs)"


def metric_label(metric: str) -> str:
    return "throughput" if metric == "throughput" else f"{metric.upper()} latency"


def summary_rows(report: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, before, after, change) rows for the headline table."""
    base, final = report["baseline"], report["final"]
    comparison = report.get("comparison")
    speed = report.get("speedup") or {}
    rows = []
    if comparison:
        a, b = comparison["a"], comparison["b"]
        ci = comparison.get("ci", {})
        s = comparison.get("speedup", {})
        rows.append(
            (
                "throughput",
                rate(a["throughput_rps"]),
                rate(b["throughput_rps"]),
                ratio(s.get("throughput"), ci.get("throughput")),
            )
        )
        for key in ("p50", "p95", "p99"):
            rows.append(
                (
                    f"{key.upper()} latency",
                    quantile_cell(comparison, key, ms(a["latency_ms"][key])),
                    quantile_cell(comparison, key, ms(b["latency_ms"][key])),
                    quantile_cell(comparison, key, ratio(s.get(key), ci.get(key))),
                )
            )
        return rows
    rows.append(
        (
            "throughput",
            rate(base["throughput_rps"]),
            rate(final["throughput_rps"]),
            ratio(speed.get("throughput")),
        )
    )
    samples = min(int(base.get("samples") or 0), int(final.get("samples") or 0))
    for key in ("p50", "p95", "p99"):
        before, after = base["latency_ms"][key], final["latency_ms"][key]
        rows.append(
            (
                f"{key.upper()} latency",
                quantile_cell({}, key, ms(before), samples),
                quantile_cell({}, key, ms(after), samples),
                quantile_cell({}, key, ratio(before / after if after else None), samples),
            )
        )
    return rows


def summary_coverage(report: Mapping[str, Any]) -> str:
    """What the headline table rests on: the side-by-side comparison's coverage, or the
    profiles' sample counts when there is no comparison."""
    comparison = report.get("comparison")
    if comparison:
        where = comparison.get("measured_in")
        return coverage(comparison) + (f", in {where}" if where else "")
    base, final = report["baseline"], report["final"]
    return (
        f"from two profiles, not side by side: {base.get('samples')} and "
        f"{final.get('samples')} latency samples"
    )


def per_input_ms(summary: Mapping[str, Any]) -> float | None:
    """Wall time per input, amortized (1 / throughput): in a batched pipeline an input's own
    latency includes its whole batch, so stage times per input are shares of this."""
    rate = summary.get("throughput_rps")
    if rate:
        return 1000.0 / rate
    latency = summary.get("latency_ms") or {}
    return latency.get("mean") or latency.get("p50")


def stage_rows(report: Mapping[str, Any]) -> list[tuple[str, float | None, float | None, str]]:
    """(stage, share before, share after, amortized time per input before -> after)."""
    before = {s["name"]: s for s in report["baseline"]["stages"]}
    after = {s["name"]: s for s in report["final"]["stages"]}
    unit_before = per_input_ms(report["baseline"]) or 0.0
    unit_after = per_input_ms(report["final"]) or 0.0
    names = list(before)
    names += [n for n in after if n not in before]
    if "other" in names:  # glue last
        names.remove("other")
        names.append("other")
    rows = []
    for name in names:
        b, a = before.get(name), after.get(name)
        note = ""
        if b and a:
            note = f"{ms(b['share'] * unit_before)} → {ms(a['share'] * unit_after)}"
        elif a:
            note = "new stage"
        else:
            note = "removed"
        rows.append((name, b["share"] if b else None, a["share"] if a else None, note))
    return rows


def trial_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    rows = []
    for trial in report["trials"]:
        covered = coverage(trial.get("measured"))
        reason = trial["reason"] + routing(trial)
        if covered and "timed on" not in reason:
            reason += f" ({covered})"
        reason += tune_summary(trial)
        rows.append(
            {
                "proposal": trial["proposal"],
                "stage": trial.get("stage", ""),
                "status": trial["status"],
                "estimated": estimate(trial.get("est_speedup"), _assumes(trial)) + _tuned(trial),
                "measured": quantile_cell(
                    trial.get("measured") or {},
                    trial.get("metric", "throughput"),
                    ratio(trial.get("speedup"), trial.get("speedup_ci")),
                ),
                "fidelity": fidelity(trial.get("fidelity")),
                "reason": reason,
                "coverage": covered,
            }
        )
    return rows


def _tuned(trial: Mapping[str, Any]) -> str:
    """`` (after tuning: 2.43x)`` when the tune step's own figure is known: shown beside
    the planner's estimate, never in its place."""
    value = (trial.get("notes") or {}).get("tuned_estimate")
    return f" (after tuning: {value:.2f}x)" if isinstance(value, int | float) else ""


def untried_rows(report: Mapping[str, Any]) -> list[dict[str, str]]:
    """(proposal, estimated, effort, why) for the ranked proposals the loop did not try,
    with the loop's own reason (``not_tried``). A report written before the loop gave
    reasons falls back to the plan's exclusion or note."""
    tried = {t["proposal"] + "@" + t.get("stage", "") for t in report["trials"]}
    rows = []
    for p in proposal_groups(report)["ranked"]:
        if p["id"] + "@" + p["stage"] in tried:
            continue
        why = p.get("not_tried") or p.get("excluded") or p.get("note") or "not reached"
        rows.append(
            {
                "proposal": f"{p['id']} @ {p['stage']}",
                "estimated": estimate(p.get("est_e2e_speedup"), p.get("assumes")),
                "effort": str(p.get("effort", "")),
                "why": str(why),
            }
        )
    return rows


def _assumes(trial: Mapping[str, Any]) -> str | None:
    in_flight = (trial.get("change") or {}).get("in_flight")
    if not in_flight:
        return None
    from pipetune.core.kernel.results import InFlight

    return InFlight.from_dict(in_flight).describe()


def tune_summary(trial: Mapping[str, Any]) -> str:
    """`` — <summary>`` when the change's tune step left a one-line ``summary`` in its
    notes (what it chose: an index and its parameters, a batch size...), else ``""``."""
    tune = (trial.get("notes") or {}).get("tune")
    text = tune.get("summary") if isinstance(tune, Mapping) else None
    return f" — {text}" if isinstance(text, str) and text.strip() else ""


def routing(trial: Mapping[str, Any]) -> str:
    """`` (routed on the held-out split: 62% small model, 38% large...)`` for a trial whose
    candidate reported routing figures (adaptive computation), else ``""``."""
    notes = trial.get("notes") or {}
    for entry in (notes.get("stats") or {}).values():
        figures = entry.get("adaptive") if isinstance(entry, Mapping) else None
        if isinstance(figures, Mapping) and figures.get("small", 0) + figures.get("large", 0):
            share = float(figures.get("small_share", 0.0))
            return (
                f" (held-out split routed {share:.0%} to the small model, {1 - share:.0%} to "
                f"the large one: {figures.get('small', 0)} / {figures.get('large', 0)} inputs "
                f"at threshold {float(figures.get('threshold', 0.0)):.3f})"
            )
    return ""


def proposal_groups(report: Mapping[str, Any]) -> dict[str, list[Mapping[str, Any]]]:
    """Proposals split into ranked, advice (not applicable), unavailable."""
    groups: dict[str, list[Mapping[str, Any]]] = {"ranked": [], "advice": [], "unavailable": []}
    for proposal in report["proposals"]:
        if proposal["status"] == "unavailable":
            groups["unavailable"].append(proposal)
        elif not proposal.get("applicable", True):
            groups["advice"].append(proposal)
        else:
            groups["ranked"].append(proposal)
    return groups


def context_lines(report: Mapping[str, Any]) -> list[str]:
    """What the figures rest on, below the headline table: coverage, host load, the
    execution context and the split."""
    lines = [summary_coverage(report)]
    load = host_load(report.get("host_load"))
    if load:
        lines.append(load)
    execution = report.get("execution")
    if execution:
        from pipetune.core.kernel.results import ExecutionContext

        context = ExecutionContext.from_dict(execution)
        lines.append(f"measured in: {context.describe()}")
    workload = report.get("workload") or {}
    overlap = workload.get("holdout_overlap")
    if overlap:
        lines.append(
            f"held-out inputs also in the tuning split: {overlap['duplicates']} of "
            f"{overlap['holdout']} ({overlap['share']:.0%})"
        )
    return lines


def requirements_line(report: Mapping[str, Any]) -> str:
    """``requirements met``, or what is missed. A fidelity gate that is unproven or missed
    is never printed beside "requirements met", whatever the report's flag says."""
    gate = (report.get("fidelity") or {}).get("gate")
    if report["requirements_met"] and gate not in ("unproven", "missed"):
        return "requirements met"
    misses = list(report.get("misses") or [])
    if gate in ("unproven", "missed") and not any("fidelity" in m for m in misses):
        misses.append(f"the fidelity gate is {gate}")
    return "requirements NOT met: " + "; ".join(misses)
