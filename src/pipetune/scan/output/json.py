"""The JSON report (schema: ``pipetune/schemas/scan.schema.json``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipetune.scan.engine import ScanResult

SCHEMA_VERSION = "1"


def report_dict(result: ScanResult) -> dict[str, Any]:
    from pipetune import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "pipetune", "version": __version__},
        "summary": {
            "files": result.files,
            "lines": result.lines,
            "seconds": round(result.seconds, 4),
            "lines_per_second": round(result.lines_per_second, 1),
            "jobs": result.jobs,
            "findings": len(result.findings),
            "by_severity": result.counts(),
            "suppressed": result.suppressed,
            "skipped": len(result.skipped),
        },
        "findings": [_printable(f.to_dict()) for f in result.findings],
        "rules": [
            {**loaded.rule.describe(), "plugin": loaded.plugin}
            for _, loaded in sorted(result.rules.items())
        ],
        "skipped": [_printable(s.to_dict()) for s in result.skipped],
        "problems": [_printable(p.to_dict()) for p in result.problems],
        "notes": list(result.notes),
        "warnings": list(result.warnings),
    }


def _printable(entry: dict[str, Any]) -> dict[str, Any]:
    """Paths and messages as valid UTF-8 (a file name that is not UTF-8 is escaped)."""
    from pipetune.scan.files import printable

    return {k: printable(v) if isinstance(v, str) else v for k, v in entry.items()}


def render_json(result: ScanResult) -> str:
    return json.dumps(report_dict(result), indent=2) + "\n"
