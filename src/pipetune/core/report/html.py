"""The report as one self-contained HTML page.

Everything is inline — styles, SVG plots — and nothing is loaded from anywhere: no
scripts, no fonts, no CDN, no images by URL. The page opens offline in any browser and
can be attached to a ticket as it is.

Plots: stage time before/after (stacked bars on one scale), the latency distribution
before/after (CDF), throughput against concurrency.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from pipetune.core.report import format as fmt
from pipetune.core.report import svg

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1000px;
color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #eee;vertical-align:top}
th{background:#f6f6f6}td.n{text-align:right;white-space:nowrap}
.accepted{color:#1a7f37;font-weight:600}.rejected{color:#c62828;font-weight:600}
.deferred{color:#a86b00;font-weight:600}.muted{color:#666}.ok{color:#1a7f37}.bad{color:#c62828}
.box{background:#fafafa;border:1px solid #eee;padding:.6rem .9rem;border-radius:4px}
svg{max-width:100%;height:auto}code{background:#f3f3f3;padding:0 .25rem}
"""


def render(report: Mapping[str, Any]) -> str:
    """The page for ``report`` (the dict of :meth:`Report.to_dict`)."""
    metric = report.get("metric", "throughput")
    machine = report["machine"]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>pipetune: {escape(report['pipeline'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>pipetune report: {escape(report['pipeline'])}</h1>",
        "<p class='muted'>",
        escape(
            f"optimizing {fmt.metric_label(metric)} · {machine['cpu']}, {machine['cores']} cores"
            + (f", {machine['gpu']}" if machine.get("gpu") else "")
            + (f" · run {report['run_id']}" if report.get("run_id") else "")
            + (f" · {report['created']}" if report.get("created") else "")
        ),
        "</p>",
    ]
    met = report["requirements_met"]
    parts.append(
        f"<p class='box'><b class='{'ok' if met else 'bad'}'>"
        f"{escape(fmt.requirements_line(report))}</b> — {escape(str(report.get('stopped', '')))}"
    )
    fid = report.get("fidelity")
    if fid:
        parts.append(
            f"<br>cumulative fidelity against the original pipeline: {escape(fmt.fidelity(fid))}"
        )
    parts.append("</p>")

    parts.append("<h2>Original and optimized, measured side by side</h2>")
    parts.append(
        _table(("", "original", "optimized", "speedup [95 % CI]"), fmt.summary_rows(report))
    )
    parts.append(
        "<p class='muted'>"
        + "<br>".join(
            f"<b class='bad'>{escape(line)}</b>" if "BUSY" in line else escape(line)
            for line in fmt.context_lines(report)
        )
        + "</p>"
    )

    parts.append("<h2>Where the time goes</h2>")
    parts.append(svg.stage_bars(_stage_bars(report)))
    parts.append(
        _table(
            ("stage", "share before", "share after", "time per input (1 / throughput)"),
            [(n, fmt.pct(b), fmt.pct(a), note) for n, b, a, note in fmt.stage_rows(report)],
        )
    )

    parts.append("<h2>Latency distribution</h2>")
    parts.append(svg.cdf(_cdf_curves(report)))

    parts.append("<h2>Throughput against concurrency</h2>")
    series = {
        "original": _points(report["baseline"].get("concurrency")),
        "optimized": _points(report["final"].get("concurrency")),
    }
    parts.append(svg.throughput_curve(series))
    levels = {c for points in series.values() for c, _ in points}
    if len(levels) <= 1:
        parts.append(
            "<p class='muted'>Only one concurrency level was measured: give the workload "
            "several (<code>concurrency=(1, 2, 4, 8)</code>) to see where throughput levels "
            "off.</p>"
        )

    parts.append("<h2>Trials</h2>")
    if report["trials"]:
        trial_rows = []
        for row in fmt.trial_rows(report):
            trial_rows.append(
                (
                    f"{row['proposal']} @ {row['stage']}",
                    _Raw(f"<span class='{row['status']}'>{row['status']}</span>"),
                    row["estimated"],
                    row["measured"],
                    row["fidelity"],
                    row["reason"],
                )
            )
        parts.append(
            _table(
                ("change", "status", "estimated", "measured [CI]", "fidelity", "reason"), trial_rows
            )
        )
        for trial in report["trials"]:
            if trial["status"] == "deferred" and trial.get("command"):
                parts.append(
                    f"<p>Deferred <code>{escape(trial['proposal'])}</code>: artifact "
                    f"<code>{escape(str(trial.get('artifact') or '-'))}</code>; finish with "
                    f"<code>{escape(trial['command'])}</code></p>"
                )
    else:
        parts.append("<p class='muted'>No change was tried.</p>")

    groups = fmt.proposal_groups(report)
    untried = fmt.untried_rows(report)
    if untried:
        parts.append("<h2>Not tried</h2>")
        parts.append(
            _table(
                ("proposal", "estimated end to end", "effort", "why"),
                [(r["proposal"], r["estimated"], r["effort"], r["why"]) for r in untried],
            )
        )
    parts.append("<h2>Proposals</h2>")
    parts.append(
        _table(
            ("proposal", "title", "estimated end to end", "effort", "risk", "note"),
            [
                (
                    f"{p['id']} @ {p['stage']}",
                    p["title"],
                    fmt.estimate(p.get("est_e2e_speedup"), p.get("assumes")),
                    p["effort"],
                    p["accuracy_risk"],
                    p.get("note") or p.get("rationale", ""),
                )
                for p in groups["ranked"]
            ],
        )
    )
    if groups["advice"]:
        parts.append("<h3>Advice (never applied automatically)</h3>")
        parts.append(
            _table(
                ("proposal", "title", "estimated", "effort", "why"),
                [
                    (
                        f"{p['id']} @ {p['stage']}",
                        p["title"],
                        fmt.ratio(p.get("est_e2e_speedup")),
                        p["effort"],
                        p.get("reason") or p.get("rationale", ""),
                    )
                    for p in groups["advice"]
                ],
            )
        )
    if groups["unavailable"]:
        parts.append("<h3>Unavailable on this machine</h3>")
        parts.append(
            _table(
                ("proposal", "reason", "install"),
                [
                    (f"{p['id']} @ {p['stage']}", p["reason"], p.get("install") or "-")
                    for p in groups["unavailable"]
                ],
            )
        )

    cost = report.get("cost")
    if cost:
        parts.append("<h2>Cost</h2>")
        rows: list[tuple[str, str, str]] = [
            (
                "per 1,000 predictions",
                fmt.money(cost["per_1000_before"]),
                fmt.money(cost["per_1000_after"]),
            )
        ]
        if cost.get("monthly_before") is not None:
            rows.append(
                (
                    f"per month ({cost['monthly_volume']:,.0f} predictions, instances kept busy)",
                    fmt.money(cost["monthly_before"]),
                    fmt.money(cost["monthly_after"]),
                )
            )
            rows.append(
                (
                    "per month, always-on instances",
                    f"{fmt.money(cost.get('provisioned_monthly_before'))} "
                    f"({cost.get('instances_before')} instance(s))",
                    f"{fmt.money(cost.get('provisioned_monthly_after'))} "
                    f"({cost.get('instances_after')} instance(s))",
                )
            )
        parts.append(_table(("", "original", "optimized"), rows))
        parts.append(
            f"<p class='muted'>{escape(cost.get('basis', ''))}, at "
            f"{fmt.money(cost['cost_per_hour'])} per instance-hour.</p>"
        )

    warnings = list(report.get("warnings") or [])
    warnings += list(report["baseline"].get("warnings") or [])
    if warnings:
        parts.append("<h2>Warnings</h2><ul>")
        parts += [f"<li>{escape(w)}</li>" for w in dict.fromkeys(warnings)]
        parts.append("</ul>")
    parts.append(
        "<p class='muted'>Speedups are measured in paired, interleaved ABBA rounds on the "
        "held-out part of the workload; intervals are bootstrapped over rounds. Fidelity is "
        "measured against the original pipeline's outputs.</p></body></html>"
    )
    return "".join(parts)


def write(report: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render(report), encoding="utf-8")
    return path


class _Raw(str):
    """Cell content that is already HTML."""


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["<table><thead><tr>"]
    out += [f"<th>{escape(h)}</th>" for h in header]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>")
        for cell in row:
            if isinstance(cell, _Raw):
                out.append(f"<td>{cell}</td>")
            else:
                text = "-" if cell is None else str(cell)
                numeric = text[:1].isdigit() or text.startswith(("$", "-"))
                out.append(
                    f"<td class='n'>{escape(text)}</td>" if numeric else f"<td>{escape(text)}</td>"
                )
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _stage_bars(report: Mapping[str, Any]) -> list[tuple[str, list[tuple[str, float]]]]:
    bars = []
    for label, key in (("original", "baseline"), ("optimized", "final")):
        summary = report[key]
        unit = fmt.per_input_ms(summary) or 0.0
        segments = [(s["name"], s["share"] * unit) for s in summary["stages"]]
        bars.append((label, segments))
    return bars


def _cdf_curves(report: Mapping[str, Any]) -> dict[str, Sequence[float]]:
    comparison = report.get("comparison")
    if comparison and comparison.get("cdf_ms"):
        return {
            "original": comparison["cdf_ms"]["before"],
            "optimized": comparison["cdf_ms"]["after"],
        }
    return {
        "original": report["baseline"].get("cdf_ms") or [],
        "optimized": report["final"].get("cdf_ms") or [],
    }


def _points(concurrency: Sequence[Mapping[str, Any]] | None) -> list[tuple[int, float]]:
    return [(int(p["concurrency"]), float(p["throughput_rps"])) for p in concurrency or []]
