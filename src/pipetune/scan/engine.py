"""The scan engine: each file is read once, parsed once with :mod:`ast` and walked once.

Nothing scanned is ever imported or run. Rules come from the plugins' ``scan_rules`` hook
and are indexed by the node types they inspect (and, for calls, by callee name), so the
single walk calls a rule only on nodes it asked for; whole-file findings come from the
``scan_file`` hook with the tree already parsed. ``--jobs N`` scans files in N processes
(spawned; each worker rebuilds the same plugins from their importable modules).

Failures stay local: a file that cannot be read, decoded or parsed is reported and
skipped; a rule that raises is reported with its plugin's name and the rule id, disabled
for that file, and the scan goes on (a strict plugin manager turns both into errors).

This module runs a whole scan; the rules are collected in :mod:`.ruleset`, one file is
scanned by :mod:`.scanner`, and the worker processes live in :mod:`.workers`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pipetune.core.kernel.errors import ConfigError, PluginError
from pipetune.scan.config import ScanOptions
from pipetune.scan.files import Skipped, discover
from pipetune.scan.rules import Finding, RuleProblem, severity_rank
from pipetune.scan.ruleset import LoadedRule, RuleSet, collect_rules
from pipetune.scan.scanner import FileResult, FileScanner
from pipetune.scan.workers import scan_parallel, worker_plan

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager


@dataclass
class ScanResult:
    findings: list[Finding]
    rules: dict[str, LoadedRule]
    files: int
    lines: int
    seconds: float
    skipped: list[Skipped]
    problems: list[RuleProblem]
    suppressed: int = 0
    jobs: int = 1
    notes: list[str] = field(default_factory=list)
    #: Plugin problems of the command (a plugin that failed to load: its rules are missing).
    warnings: list[str] = field(default_factory=list)
    #: The folder paths are shown relative to (SARIF's %SRCROOT%).
    root: Path = field(default_factory=Path.cwd)

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds > 0 else 0.0

    def counts(self) -> dict[str, int]:
        counts = {"error": 0, "warning": 0, "note": 0}
        for finding in self.findings:
            counts[finding.severity or "warning"] += 1
        return counts

    def failing(self, fail_on: str) -> list[Finding]:
        """Findings at or above ``fail_on`` (none for ``never``)."""
        if fail_on == "never":
            return []
        bar = severity_rank(fail_on)
        return [f for f in self.findings if severity_rank(f.severity or "warning") >= bar]

    def exit_code(self, fail_on: str) -> int:
        """0 when nothing reaches ``fail_on``, 1 otherwise (linters' convention)."""
        return 1 if self.failing(fail_on) else 0


# -- a whole scan --------------------------------------------------------------------------


def scan(
    paths: Sequence[str | Path],
    pm: PipetunePluginManager,
    options: ScanOptions | None = None,
    *,
    root: Path | None = None,
    ruleset: RuleSet | None = None,
) -> ScanResult:
    """Scan ``paths`` with the rules of ``pm``'s plugins.

    Raises :class:`ConfigError` for usage errors (a missing path, no Python files, an
    unknown rule in ``select``); everything else is reported in the result.
    """
    started = time.perf_counter()
    options = options or ScanOptions()
    everything = ruleset if ruleset is not None else collect_rules(pm)
    chosen = everything.selected(options.select, options.ignore)
    found = discover(paths, exclude=options.exclude)
    root = root or Path.cwd()
    scanner = FileScanner.from_manager(pm, chosen.rules, options=options, root=root)
    scanner.all_rule_ids = frozenset(everything.rules)
    jobs = options.jobs or os.cpu_count() or 1
    notes: list[str] = []
    files = list(found.files)
    if jobs > 1 and len(files) > 1:
        plan, why_not = worker_plan(pm, chosen, options, root, scanner.all_rule_ids)
        if plan is None:
            notes.append(f"--jobs {jobs}: scanned in one process ({why_not})")
            jobs = 1
    else:
        jobs = 1
    if jobs > 1:
        results: Generator[FileResult, None, None] = scan_parallel(plan, files, jobs)  # type: ignore[arg-type]
    else:
        results = (scanner.scan_path(path) for path in files)
    findings: list[Finding] = []
    skipped = list(found.skipped)
    problems = list(chosen.problems)
    lines = suppressed = scanned = 0
    with contextlib.closing(results):  # Ctrl-C here stops the worker pool, now
        for result in results:
            if result.skipped is not None:
                skipped.append(result.skipped)
            else:
                scanned += 1
                lines += result.lines
            findings.extend(result.findings)
            problems.extend(result.problems)
            suppressed += result.suppressed
    findings.sort(key=lambda f: (f.path, f.line, f.col, f.rule))
    return ScanResult(
        findings=findings,
        rules=chosen.rules,
        files=scanned,
        lines=lines,
        seconds=time.perf_counter() - started,
        skipped=skipped,
        problems=problems,
        suppressed=suppressed,
        jobs=jobs,
        notes=notes,
        root=root,
    )


def scan_source(
    source: str,
    pm: PipetunePluginManager,
    *,
    path: str = "example.py",
    select: Sequence[str] = (),
    ignore: Sequence[str] = (),
    min_confidence: float = 0.0,
) -> list[Finding]:
    """Findings for one piece of source text: for rule authors' tests.

    ``pm`` holds the plugins whose rules run (``pipetune.testing.make_plugin_manager``).
    Raises the rule's own exception if a rule fails under a strict manager.
    """
    everything = collect_rules(pm)
    chosen = everything.selected(select, ignore)
    options = ScanOptions(min_confidence=min_confidence)
    scanner = FileScanner.from_manager(pm, chosen.rules, options=options, root=Path.cwd())
    scanner.all_rule_ids = frozenset(everything.rules)
    result = scanner.scan_text(source, Path(path), path)
    if result.skipped is not None:
        raise ConfigError(f"{path}: {result.skipped.reason}")
    if result.problems and pm.strict:
        raise PluginError(result.problems[0].describe())
    return result.findings
