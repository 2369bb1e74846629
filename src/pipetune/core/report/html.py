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
    sections = (
        _head,
        _verdict,
        _summary,
        _stages,
        _latency,
        _concurrency,
        _trials,
        _proposals,
        _cost,
        _warnings,
    )
    parts = [part for section in sections for part in section(report)]
    parts.append(
        "<p class='muted'>Speedups are measured in paired, interleaved ABBA rounds on the "
        "held-out part of the workload; intervals are bootstrapped over rounds. Fidelity is "
        "measured against the original pipeline's outputs.</p></body></html>"
    )
    return "".join(parts)


def _head(report: Mapping[str, Any]) -> list[str]:
    """The document head, the title and what was optimized on which machine."""
    metric = report.get("metric", "throughput")
    machine = report["machine"]
    return [
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


def _verdict(report: Mapping[str, Any]) -> list[str]:
    """Whether the requirements are met, why the loop stopped, the cumulative fidelity."""
    met = report["requirements_met"]
    parts = [
        f"<p class='box'><b class='{'ok' if met else 'bad'}'>"
        f"{escape(fmt.requirements_line(report))}</b> — {escape(str(report.get('stopped', '')))}"
    ]
    fid = report.get("fidelity")
    if fid:
        parts.append(
            f"<br>cumulative fidelity against the original pipeline: {escape(fmt.fidelity(fid))}"
        )
    parts.append("</p>")
    return parts


def _summary(report: Mapping[str, Any]) -> list[str]:
    """The headline table and what its figures rest on."""
    return [
        "<h2>Original and optimized, measured side by side</h2>",
        _table(("", "original", "optimized", "speedup [95 % CI]"), fmt.summary_rows(report)),
        "<p class='muted'>"
        + "<br>".join(
            f"<b class='bad'>{escape(line)}</b>" if "BUSY" in line else escape(line)
            for line in fmt.context_lines(report)
        )
        + "</p>",
    ]


def _stages(report: Mapping[str, Any]) -> list[str]:
    return [
        "<h2>Where the time goes</h2>",
        svg.stage_bars(_stage_bars(report)),
        _table(
            ("stage", "share before", "share after", "time per input (1 / throughput)"),
            [(n, fmt.pct(b), fmt.pct(a), note) for n, b, a, note in fmt.stage_rows(report)],
        ),
    ]


def _latency(report: Mapping[str, Any]) -> list[str]:
    return ["<h2>Latency distribution</h2>", svg.cdf(_cdf_curves(report))]


def _concurrency(report: Mapping[str, Any]) -> list[str]:
    series = {
        "original": _points(report["baseline"].get("concurrency")),
        "optimized": _points(report["final"].get("concurrency")),
    }
    parts = ["<h2>Throughput against concurrency</h2>", svg.throughput_curve(series)]
    levels = {c for points in series.values() for c, _ in points}
    if len(levels) <= 1:
        parts.append(
            "<p class='muted'>Only one concurrency level was measured: give the workload "
            "several (<code>concurrency=(1, 2, 4, 8)</code>) to see where throughput levels "
            "off.</p>"
        )
    return parts


def _trials(report: Mapping[str, Any]) -> list[str]:
    """The trials table, and how to finish each deferred change."""
    if not report["trials"]:
        return ["<h2>Trials</h2>", "<p class='muted'>No change was tried.</p>"]
    rows = [
        (
            f"{row['proposal']} @ {row['stage']}",
            _Raw(f"<span class='{row['status']}'>{row['status']}</span>"),
            row["estimated"],
            row["measured"],
            row["fidelity"],
            row["reason"],
        )
        for row in fmt.trial_rows(report)
    ]
    parts = [
        "<h2>Trials</h2>",
        _table(("change", "status", "estimated", "measured [CI]", "fidelity", "reason"), rows),
    ]
    for trial in report["trials"]:
        if trial["status"] == "deferred" and trial.get("command"):
            parts.append(
                f"<p>Deferred <code>{escape(trial['proposal'])}</code>: artifact "
                f"<code>{escape(str(trial.get('artifact') or '-'))}</code>; finish with "
                f"<code>{escape(trial['command'])}</code></p>"
            )
    return parts


def _proposals(report: Mapping[str, Any]) -> list[str]:
    """What was not tried, and every proposal: ranked, advice and unavailable."""
    groups = fmt.proposal_groups(report)
    untried = fmt.untried_rows(report)
    parts = _titled_table(
        "<h2>Not tried</h2>",
        ("proposal", "estimated end to end", "effort", "why"),
        [(r["proposal"], r["estimated"], r["effort"], r["why"]) for r in untried],
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
    return parts + _advice(groups["advice"]) + _unavailable(groups["unavailable"])


def _advice(advice: Sequence[Mapping[str, Any]]) -> list[str]:
    return _titled_table(
        "<h3>Advice (never applied automatically)</h3>",
        ("proposal", "title", "estimated", "effort", "why"),
        [
            (
                f"{p['id']} @ {p['stage']}",
                p["title"],
                fmt.ratio(p.get("est_e2e_speedup")),
                p["effort"],
                p.get("reason") or p.get("rationale", ""),
            )
            for p in advice
        ],
    )


def _unavailable(unavailable: Sequence[Mapping[str, Any]]) -> list[str]:
    return _titled_table(
        "<h3>Unavailable on this machine</h3>",
        ("proposal", "reason", "install"),
        [(f"{p['id']} @ {p['stage']}", p["reason"], p.get("install") or "-") for p in unavailable],
    )


def _titled_table(heading: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """``heading`` (HTML) over a table of ``rows``, or nothing when there are no rows: a
    report leaves out the sections it has nothing for."""
    return [heading, _table(header, rows)] if rows else []


def _cost(report: Mapping[str, Any]) -> list[str]:
    cost = report.get("cost")
    if not cost:
        return []
    return [
        "<h2>Cost</h2>",
        _table(("", "original", "optimized"), fmt.cost_rows(cost, detailed=True)),
        f"<p class='muted'>{escape(cost.get('basis', ''))}, at "
        f"{fmt.money(cost['cost_per_hour'])} per instance-hour.</p>",
    ]


def _warnings(report: Mapping[str, Any]) -> list[str]:
    warnings = list(report.get("warnings") or [])
    warnings += list(report["baseline"].get("warnings") or [])
    if not warnings:
        return []
    return [
        "<h2>Warnings</h2><ul>",
        *(f"<li>{escape(w)}</li>" for w in dict.fromkeys(warnings)),
        "</ul>",
    ]


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
