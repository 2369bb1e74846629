"""The scan rules the plugins register (``scan_rules``): collected and checked once per
scan, indexed by id, and narrowed by ``select`` / ``ignore``. A rule that cannot be used is
kept as a reported problem instead of stopping the scan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipetune.core.kernel.errors import ConfigError, DuplicateError
from pipetune.scan.rules import Rule, RuleError, RuleProblem, coerce_rule

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager


@dataclass(frozen=True)
class LoadedRule:
    plugin: str
    rule: Rule


@dataclass
class RuleSet:
    """The rules every plugin registered, by id, and the ones that could not be used."""

    rules: dict[str, LoadedRule] = field(default_factory=dict)
    problems: list[RuleProblem] = field(default_factory=list)

    def selected(self, select: Sequence[str] = (), ignore: Sequence[str] = ()) -> RuleSet:
        """The rules ``select`` names (ids, prefixes or names; empty or ``ALL``: every
        rule) minus those ``ignore`` names. An unknown code in ``select`` is a usage error
        (exit 2) that lists what is known; unknown ``ignore`` codes are reported."""
        for code in select:
            if code != "ALL" and not self._matching(code):
                raise ConfigError(
                    f"unknown rule id or prefix {code!r} in --select / select; known rules: "
                    f"{', '.join(sorted(self.rules)) or 'none'}"
                )
        problems = list(self.problems)
        for code in ignore:
            if not self._matching(code):
                problems.append(RuleProblem("", code, "unknown rule id or prefix in ignore"))
        kept = {
            rule_id: loaded
            for rule_id, loaded in self.rules.items()
            if enabled(rule_id, loaded.rule.name, select, ignore)
        }
        return RuleSet(kept, problems)

    def _matching(self, code: str) -> list[str]:
        return [
            rule_id
            for rule_id, loaded in self.rules.items()
            if _matches(rule_id, loaded.rule.name, code)
        ]


def _matches(rule_id: str, name: str, code: str) -> bool:
    code = code.upper()
    return rule_id.startswith(code) or name.upper() == code


def enabled(rule_id: str, name: str, select: Sequence[str], ignore: Sequence[str]) -> bool:
    """Whether a rule is on: selected (or no selection) and not ignored; ignore wins."""
    if (
        select
        and "ALL" not in (c.upper() for c in select)
        and not any(_matches(rule_id, name, c) for c in select)
    ):
        return False
    return not any(_matches(rule_id, name, c) for c in ignore)


def collect_rules(pm: PipetunePluginManager) -> RuleSet:
    """Every plugin's rules from ``scan_rules``, checked: a malformed rule or one built
    for a newer plugin API is reported with its plugin and skipped; the same id from two
    plugins raises :class:`DuplicateError` naming both (as for proposal ids)."""
    result = RuleSet()
    failures_before = len(pm.hook_failures)
    for plugin, returned in pm.call_each("scan_rules"):
        if isinstance(returned, str | bytes | Mapping) or not isinstance(returned, Iterable):
            result.problems.append(
                RuleProblem(
                    plugin, "", f"scan_rules returned {type(returned).__name__}, not a list"
                )
            )
            continue
        for obj in returned:
            try:
                rule = coerce_rule(obj, plugin)
            except RuleError as exc:
                if pm.strict:
                    raise
                result.problems.append(RuleProblem(plugin, getattr(obj, "id", "") or "", str(exc)))
                continue
            if rule.id in result.rules:
                other = result.rules[rule.id].plugin
                raise DuplicateError(
                    f"scan rule {rule.id!r} is registered by both {other!r} and {plugin!r}"
                )
            result.rules[rule.id] = LoadedRule(plugin, rule)
    for failure in pm.hook_failures[failures_before:]:
        result.problems.append(RuleProblem(failure.plugin, "", f"scan_rules: {failure.error}"))
    return result
