"""Inline suppressions: ``# pipetune: ignore[PT-NLP001]`` and bare ``# pipetune: ignore``.

A comment on the line a finding reports silences it: with rule ids (or prefixes:
``ignore[PT-NLP]``), only those rules; bare, every rule on that line. Comments are found
with :mod:`tokenize`, so the same text inside a string literal does not count, and only in
files whose text contains the marker at all (the common case costs one substring test).
"""

from __future__ import annotations

import io
import re
import tokenize

MARKER = "pipetune:"
_COMMENT = re.compile(r"#\s*pipetune:\s*ignore(?:\[(?P<rules>[^\]]*)\])?", re.IGNORECASE)

#: Suppressions by line: ``None`` means every rule, else the ids or prefixes given.
Suppressions = dict[int, frozenset[str] | None]


def find_suppressions(source: str) -> Suppressions:
    """The ``# pipetune: ignore`` comments of ``source``, by line number."""
    if MARKER not in source:
        return {}
    found: Suppressions = {}
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return _fallback(source)
    for token in tokens:
        if token.type == tokenize.COMMENT:
            _add(found, token.start[0], token.string)
    return found


def _fallback(source: str) -> Suppressions:
    """Line by line, for text tokenize gives up on (it parsed, so this is rare)."""
    found: Suppressions = {}
    for number, line in enumerate(source.splitlines(), start=1):
        if "#" in line:
            _add(found, number, line[line.index("#") :])
    return found


def _add(found: Suppressions, line: int, comment: str) -> None:
    match = _COMMENT.search(comment)
    if match is None:
        return
    rules = match.group("rules")
    if rules is None or not rules.strip():
        found[line] = None
        return
    ids = frozenset(part.strip().upper() for part in rules.split(",") if part.strip())
    previous = found.get(line, frozenset())
    found[line] = None if previous is None and line in found else ids | (previous or frozenset())


def is_suppressed(rule: str, line: int, suppressions: Suppressions) -> bool:
    if line not in suppressions:
        return False
    ids = suppressions[line]
    return ids is None or any(rule == s or rule.startswith(s) for s in ids)
