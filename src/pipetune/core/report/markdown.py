"""The report as Markdown (a pull-request comment, a wiki page)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipetune.core.report import format as fmt


def render(report: Mapping[str, Any]) -> str:
    metric = report.get("metric", "throughput")
    machine = report["machine"]
    lines = [
        f"# pipetune report: {report['pipeline']}",
        "",
        f"Optimizing **{fmt.metric_label(metric)}** on {machine['cpu']} "
        f"({machine['cores']} cores{', ' + machine['gpu'] if machine.get('gpu') else ''})"
        + (f", run `{report['run_id']}`" if report.get("run_id") else "")
        + ".",
        "",
        f"**{fmt.requirements_line(report)}** ({report.get('stopped', '')}).",
    ]
    fid = report.get("fidelity")
    if fid:
        lines += ["", f"Cumulative fidelity against the original: {fmt.fidelity(fid)}."]
    lines += ["", "## Original and optimized, side by side", ""]
    lines += _table(("", "original", "optimized", "speedup [95 % CI]"), fmt.summary_rows(report))
    lines += [""] + [f"_{line}_  " for line in fmt.context_lines(report)]
    lines += ["", "## Where the time goes", ""]
    lines += _table(
        ("stage", "share before", "share after", "time per input"),
        [(n, fmt.pct(b), fmt.pct(a), note) for n, b, a, note in fmt.stage_rows(report)],
    )
    lines += _trials(report)
    lines += _proposals(report)
    lines += _cost(report)
    warnings = report.get("warnings") or []
    if warnings:
        lines += ["", "## Warnings", ""]
        lines += [f"- {w}" for w in warnings]
    return "\n".join(lines) + "\n"


def _trials(report: Mapping[str, Any]) -> list[str]:
    lines = ["", "## Trials", ""]
    if not report["trials"]:
        return [*lines, "No change was tried."]
    return lines + _table(
        ("change", "status", "estimated", "measured [CI]", "fidelity", "reason"),
        [
            (
                f"`{r['proposal']}` @ {r['stage']}",
                r["status"],
                r["estimated"],
                r["measured"],
                r["fidelity"],
                r["reason"],
            )
            for r in fmt.trial_rows(report)
        ],
    )


def _proposals(report: Mapping[str, Any]) -> list[str]:
    """The proposals not tried, advice, and what is unavailable on this machine."""
    lines: list[str] = []
    untried = fmt.untried_rows(report)
    if untried:
        lines += ["", "## Not tried", ""]
        lines += _table(
            ("proposal", "estimated", "effort", "why"),
            [(f"`{r['proposal']}`", r["estimated"], r["effort"], r["why"]) for r in untried],
        )
    groups = fmt.proposal_groups(report)
    if groups["advice"]:
        lines += ["", "## Advice (not applied automatically)", ""]
        lines += [
            f"- `{p['id']}` @ {p['stage']}: {p['title']} — est. "
            f"{fmt.ratio(p.get('est_e2e_speedup'))}, effort {p['effort']}"
            for p in groups["advice"]
        ]
    if groups["unavailable"]:
        lines += ["", "## Unavailable on this machine", ""]
        lines += [
            f"- `{p['id']}` @ {p['stage']}: {p['reason']}"
            + (f" — `{p['install']}`" if p.get("install") else "")
            for p in groups["unavailable"]
        ]
    return lines


def _cost(report: Mapping[str, Any]) -> list[str]:
    cost = report.get("cost")
    if not cost:
        return []
    rows = fmt.cost_rows(cost, detailed=False)
    return ["", "## Cost", "", *_table(("", "original", "optimized"), rows)]


def write(report: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(render(report), encoding="utf-8")
    return path


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(value: Any) -> str:
        return str("-" if value is None else value).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(cell(h) for h in header) + " |"]
    out.append("|" + "|".join("---" for _ in header) + "|")
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return out
