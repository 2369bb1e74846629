"""Shared helper for the per-domain rule tests: a true positive and a near miss per rule."""

from __future__ import annotations

import textwrap
from types import ModuleType
from typing import Any

from pipetune import hookimpl
from pipetune.scan import Finding, scan_source
from pipetune.testing import make_plugin_manager


class RulesOf:
    """A plugin serving a ``scan_rules`` module's ``RULES`` (and its ``scan_file``, when it
    has one), as the owning plugin's hooks do."""

    def __init__(self, module: ModuleType):
        self.module = module

    @hookimpl
    def scan_rules(self) -> Any:
        return self.module.RULES

    @hookimpl
    def scan_file(self, path: Any, tree: Any, source: str) -> Any:
        whole_file = getattr(self.module, "scan_file", None)
        return whole_file(path, tree, source) if whole_file else None


def findings(module: ModuleType, plugin: str, code: str, rule: str) -> list[Finding]:
    """Findings of ``rule`` when ``module``'s scan hooks (as plugin ``plugin``) scan
    ``code``. The manager is strict: a rule that raises fails the test."""
    pm = make_plugin_manager((plugin, RulesOf(module)))
    found = scan_source(textwrap.dedent(code), pm, select=[rule])
    assert all(f.rule == rule for f in found)
    return found


def assert_case(module: ModuleType, plugin: str, rule: str, hit: str, miss: str) -> Finding:
    hits = findings(module, plugin, hit, rule)
    assert hits, f"{rule} did not fire on its true positive:\n{hit}"
    misses = findings(module, plugin, miss, rule)
    assert not misses, f"{rule} fired on its near miss: {misses}"
    first = hits[0]
    rule_obj = next(r for r in module.RULES if r.id == rule)
    assert first.proposal == rule_obj.proposal and first.plugin == plugin
    assert first.message and first.fingerprint and first.snippet
    return first
