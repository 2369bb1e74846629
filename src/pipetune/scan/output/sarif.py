"""SARIF 2.1.0 for code scanning (GitHub, Azure DevOps, any SARIF viewer).

What code scanning relies on, and how this file provides it:

* stable rule ids (``ruleId`` = the rule's id) with a descriptor each in
  ``tool.driver.rules`` (name, short and full description, help in Markdown naming the
  fixing proposal, default level, tags and ``precision`` from the rule's confidence);
* ``partialFingerprints`` (``pipetune/v1``: rule + file + whitespace-normalized source line
  + occurrence), so the same finding is recognized across runs even when lines move;
* locations relative to ``%SRCROOT%`` (the folder the scan ran from), which is where code
  scanning expects repository paths;
* files that could not be scanned and plugin rules that failed, as
  ``toolExecutionNotifications`` of the invocation.

Columns count Unicode code points (``columnKind``), as the findings do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from pipetune.scan.files import path_bytes, printable
from pipetune.scan.rules import confidence_label
from pipetune.scan.scanner import FINGERPRINT_KEY

if TYPE_CHECKING:
    from pipetune.scan.engine import ScanResult
    from pipetune.scan.rules import Finding
    from pipetune.scan.ruleset import LoadedRule

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SRCROOT = "%SRCROOT%"
#: GitHub code scanning's ``precision`` property, from the rule's confidence.
_PRECISION = {"high": "high", "medium": "medium", "low": "low"}


def render_sarif(result: ScanResult, root: Path | None = None) -> str:
    return json.dumps(sarif_log(result, root), indent=2) + "\n"


def sarif_log(result: ScanResult, root: Path | None = None) -> dict[str, Any]:
    from pipetune import __version__

    root = Path(root or result.root).resolve()
    ordered = sorted(result.rules.items())
    index = {rule_id: i for i, (rule_id, _) in enumerate(ordered)}
    extra_rules = sorted({f.rule for f in result.findings if f.rule not in index})
    descriptors = [_descriptor(loaded) for _, loaded in ordered]
    for rule_id in extra_rules:  # a scan_file finding of a rule no plugin declared
        index[rule_id] = len(descriptors)
        descriptors.append({"id": rule_id, "shortDescription": {"text": rule_id}})
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "pipetune",
                "version": __version__,
                "semanticVersion": __version__,
                "rules": descriptors,
            }
        },
        "originalUriBaseIds": {SRCROOT: {"uri": root.as_uri().rstrip("/") + "/"}},
        "columnKind": "unicodeCodePoints",
        "results": [_result(f, index[f.rule]) for f in result.findings],
        "invocations": [
            {
                "executionSuccessful": True,
                "toolExecutionNotifications": _notifications(result),
            }
        ],
        "properties": {
            "files": result.files,
            "lines": result.lines,
            "suppressed": result.suppressed,
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}


def _descriptor(loaded: LoadedRule) -> dict[str, Any]:
    rule = loaded.rule
    help_text = rule.description or rule.summary
    fix = f" Fix: {rule.fix}" if rule.fix else ""
    markdown = (
        f"**{rule.summary}**\n\n{help_text}\n\n"
        + (f"**Fix:** {rule.fix}\n\n" if rule.fix else "")
        + f"Proposal that fixes it: `{rule.proposal}` — run `pipetune propose` / "
        f"`pipetune optimize` to measure it on your workload. Rule from plugin "
        f"`{loaded.plugin}`; reference: docs/scan.md#{rule.id.lower()}."
    )
    return {
        "id": rule.id,
        "name": _pascal(rule.name),
        "shortDescription": {"text": rule.summary},
        "fullDescription": {"text": help_text},
        "help": {
            "text": f"{help_text}{fix} Proposal that fixes it: {rule.proposal}.",
            "markdown": markdown,
        },
        "defaultConfiguration": {"level": rule.severity, "rank": _rank(rule.confidence)},
        "properties": {
            "tags": ["performance", loaded.plugin, *rule.tags],
            "precision": _PRECISION[confidence_label(rule.confidence)],
            "proposal": rule.proposal,
            "confidence": rule.confidence,
            "plugin": loaded.plugin,
        },
    }


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    region: dict[str, Any] = {"startLine": finding.line, "startColumn": max(1, finding.col)}
    if finding.end_line is not None and finding.end_line >= finding.line:
        region["endLine"] = finding.end_line
        if finding.end_col is not None and (
            finding.end_line > finding.line or finding.end_col > region["startColumn"]
        ):
            region["endColumn"] = finding.end_col
    if finding.snippet:
        region["snippet"] = {"text": finding.snippet}
    confidence = finding.confidence if finding.confidence is not None else 1.0
    return {
        "ruleId": finding.rule,
        "ruleIndex": rule_index,
        "level": finding.severity or "warning",
        "message": {"text": f"{finding.message} Fix: proposal {finding.proposal}."},
        "locations": [{"physicalLocation": _physical(finding.path, region)}],
        "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
        "rank": _rank(confidence),
        "properties": {
            "proposal": finding.proposal,
            "confidence": confidence,
            "plugin": finding.plugin,
        },
    }


def _notifications(result: ScanResult) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = [
        {"level": "warning", "message": {"text": printable(warning)}} for warning in result.warnings
    ]
    for skipped in result.skipped:
        notes.append(
            {
                "level": "warning",
                "message": {"text": f"not scanned: {skipped.reason}"},
                "locations": [{"physicalLocation": _physical(skipped.path, None)}],
            }
        )
    for problem in result.problems:
        note: dict[str, Any] = {
            "level": "error",
            "message": {"text": printable(problem.describe())},
        }
        if problem.path:
            region = {"startLine": problem.line} if problem.line else None
            note["locations"] = [{"physicalLocation": _physical(problem.path, region)}]
        notes.append(note)
    return notes


def _physical(path: str, region: dict[str, Any] | None) -> dict[str, Any]:
    # URIs from the file name's own bytes: a name that is not UTF-8 is percent-encoded
    if Path(path).is_absolute():
        location: dict[str, Any] = {"artifactLocation": {"uri": Path(path).as_uri()}}
    else:
        location = {"artifactLocation": {"uri": quote(path_bytes(path)), "uriBaseId": SRCROOT}}
    if region:
        location["region"] = region
    return location


def _rank(confidence: float) -> float:
    return round(max(0.0, min(1.0, confidence)) * 100, 1)


def _pascal(name: str) -> str:
    """``slow-tokenizer`` -> ``SlowTokenizer`` (SARIF rule names are identifiers)."""
    return "".join(part[:1].upper() + part[1:] for part in name.replace("_", "-").split("-"))
