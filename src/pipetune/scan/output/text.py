"""The text report: one line per finding, ``path:line:col: ID message``, as linters print."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipetune.scan.files import printable
from pipetune.scan.rules import confidence_label

if TYPE_CHECKING:
    from pipetune.scan.engine import ScanResult


def render_text(result: ScanResult) -> str:
    lines = []
    for f in result.findings:
        label = confidence_label(f.confidence if f.confidence is not None else 1.0)
        lines.append(
            f"{printable(f.path)}:{f.line}:{f.col}: {f.rule} [{f.severity}, {label} confidence] "
            f"{f.message} (fix: {f.proposal})"
        )
        if f.snippet:
            lines.append(f"    {f.snippet}")
    lines.append(summary_line(result))
    return "\n".join(lines) + "\n"


def summary_line(result: ScanResult) -> str:
    counts = result.counts()
    total = len(result.findings)
    parts = [f"{n} {sev}{'s' if n != 1 else ''}" for sev, n in counts.items() if n]
    head = f"Found {total} finding{'s' if total != 1 else ''}" + (
        f" ({', '.join(parts)})" if parts else ""
    )
    speed = f"{result.lines_per_second:,.0f} lines/s" if result.seconds > 0 else ""
    jobs = f", {result.jobs} processes" if result.jobs > 1 else ""
    tail = []
    if result.suppressed:
        tail.append(f"{result.suppressed} suppressed")
    if result.skipped:
        tail.append(f"{len(result.skipped)} skipped")
    if result.problems:
        tail.append(f"{len(result.problems)} plugin problem(s)")
    return (
        f"{head} in {result.files} file{'s' if result.files != 1 else ''} "
        f"({result.lines:,} lines, {result.seconds:.2f} s, {speed}{jobs}), "
        f"{len(result.rules)} rules" + (f"; {', '.join(tail)}" if tail else "") + "."
    )


def render_diagnostics(result: ScanResult) -> list[str]:
    """What could not be scanned or run, for stderr: skipped files, plugin problems."""
    out = [printable(f"skipped {s.path}: {s.reason}") for s in result.skipped]
    out.extend(printable(f"warning: {p.describe()}") for p in result.problems)
    out.extend(f"note: {n}" for n in result.notes)
    return out
