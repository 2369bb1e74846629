"""``pipetune scan``: the plugins' performance knowledge as a static check for CI.

Source is read with :mod:`ast` only: nothing scanned is imported or run. Rules come from the
plugins (``scan_rules`` for rules dispatched by AST node type, ``scan_file`` for whole-file
findings); each names the proposal that fixes what it finds. See docs/scan.md.
"""

from __future__ import annotations

from pipetune.scan.config import ScanOptions
from pipetune.scan.context import DYNAMIC, MISSING, FileContext
from pipetune.scan.engine import ScanResult, scan, scan_source
from pipetune.scan.rules import SEVERITIES, Finding, Rule, RuleError
from pipetune.scan.ruleset import collect_rules

__all__ = [
    "DYNAMIC",
    "MISSING",
    "SEVERITIES",
    "FileContext",
    "Finding",
    "Rule",
    "RuleError",
    "ScanOptions",
    "ScanResult",
    "collect_rules",
    "scan",
    "scan_source",
]
