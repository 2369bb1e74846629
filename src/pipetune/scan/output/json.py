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
        "findings": [f.to_dict() for f in result.findings],
        "rules": [
            {**loaded.rule.describe(), "plugin": loaded.plugin}
            for _, loaded in sorted(result.rules.items())
        ],
        "skipped": [s.to_dict() for s in result.skipped],
        "problems": [p.to_dict() for p in result.problems],
        "notes": list(result.notes),
    }


def render_json(result: ScanResult) -> str:
    return json.dumps(report_dict(result), indent=2) + "\n"
