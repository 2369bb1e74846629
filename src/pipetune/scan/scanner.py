"""Scanning one file: read once, parsed once with :mod:`ast`, walked once without
recursion, each node handed to the rules that asked for its type (or callee name); then the
``scan_file`` hook, rule defaults, the confidence floor, suppressions, snippets and stable
fingerprints. A :class:`FileScanner` is reused for every file of a scan (and per worker).
"""

from __future__ import annotations

import ast
import hashlib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import PluginError
from pipetune.scan.config import ScanOptions
from pipetune.scan.context import FileContext
from pipetune.scan.files import Skipped, Unreadable, read_source
from pipetune.scan.rules import Finding, RuleProblem, as_findings
from pipetune.scan.ruleset import LoadedRule, enabled
from pipetune.scan.suppress import find_suppressions, is_suppressed

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

FINGERPRINT_KEY = "pipetune/v1"


@dataclass
class FileResult:
    """What scanning one file gave (picklable: it crosses process boundaries)."""

    path: str
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: Skipped | None = None
    problems: list[RuleProblem] = field(default_factory=list)
    suppressed: int = 0


# -- one file ------------------------------------------------------------------------------

#: Fields that never hold child nodes worth visiting (names, flags, ``Load``/``Store``).
_SKIP_FIELDS = frozenset(
    {"ctx", "id", "attr", "arg", "name", "type_comment", "kind", "level", "module"}
    | {"conversion", "is_async", "simple", "n", "s"}
)


class _FieldCache(dict[type, tuple[str, ...]]):
    """The child fields of each node class, worked out the first time the class is seen."""

    def __missing__(self, cls: type) -> tuple[str, ...]:
        return _child_fields(cls)


_CHILD_FIELDS: dict[type, tuple[str, ...]] = _FieldCache({ast.Constant: ()})


def _child_fields(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` that may hold child nodes, last first (for the stack)."""
    fields_ = tuple(f for f in reversed(getattr(cls, "_fields", ())) if f not in _SKIP_FIELDS)
    _CHILD_FIELDS[cls] = fields_
    return fields_


@dataclass
class _Dispatch:
    by_type: dict[type, list[LoadedRule]]
    by_call: dict[str, list[LoadedRule]]
    finishers: list[LoadedRule]

    @classmethod
    def build(cls, rules: Iterable[LoadedRule]) -> _Dispatch:
        by_type: dict[type, list[LoadedRule]] = {}
        by_call: dict[str, list[LoadedRule]] = {}
        finishers = []
        for loaded in rules:
            rule = loaded.rule
            for node_type in rule.node_types:
                if node_type is ast.Call and rule.call_names:
                    for name in rule.call_names:
                        by_call.setdefault(name, []).append(loaded)
                else:
                    # dispatch is by exact class: register subclasses too (ast.expr...)
                    for concrete in _concrete(node_type):
                        by_type.setdefault(concrete, []).append(loaded)
            if rule.finish is not None:
                finishers.append(loaded)
        return cls(by_type, by_call, finishers)


def _concrete(node_type: type) -> list[type]:
    out = [node_type]
    subclasses: list[type] = node_type.__subclasses__()
    for sub in subclasses:
        out.extend(_concrete(sub))
    return out


#: What a node-type handler returns: the rules to run on the node (``None``: none).
_Handler = Callable[[Any], "list[LoadedRule] | None"]


def _special_handlers(ctx: FileContext, dispatch: _Dispatch) -> dict[type, _Handler]:
    """The node types the walk does more for than look up their rules: an import is noted
    in the context, a call also gets the rules that asked for its callee's name."""
    by_type, by_call = dispatch.by_type, dispatch.by_call
    Attribute, Name = ast.Attribute, ast.Name
    call_rules = by_type.get(ast.Call)

    def on_import(node: ast.Import | ast.ImportFrom) -> list[LoadedRule] | None:
        ctx.note_import(node)
        return by_type.get(type(node))

    def on_call(node: Any) -> list[LoadedRule] | None:
        func = node.func
        fcls = type(func)
        name = func.attr if fcls is Attribute else func.id if fcls is Name else None
        if name is not None:
            called = by_call.get(name)
            if called:
                return called if call_rules is None else [*call_rules, *called]
        return call_rules

    return {ast.Import: on_import, ast.ImportFrom: on_import, ast.Call: on_call}


class FileScanner:
    """Scans files with one rule set. Reused for every file of a scan (and per worker)."""

    def __init__(
        self,
        rules: Mapping[str, LoadedRule],
        scan_file_impls: Sequence[tuple[str, Callable[..., Any], tuple[str, ...]]] = (),
        *,
        options: ScanOptions | None = None,
        root: Path | None = None,
        strict: bool = False,
    ):
        self.rules = dict(rules)
        self.scan_file_impls = list(scan_file_impls)
        self.options = options or ScanOptions()
        self.root = root or Path.cwd()
        self.strict = strict
        self._needs = {r.rule.id: r.rule.needs for r in self.rules.values() if r.rule.needs}
        self._full = _Dispatch.build(self.rules.values())
        self._by_inactive: dict[frozenset[str], _Dispatch] = {}

    @classmethod
    def from_manager(
        cls,
        pm: PipetunePluginManager,
        rules: Mapping[str, LoadedRule],
        **kwargs: Any,
    ) -> FileScanner:
        impls = [
            (impl.plugin_name, impl.function, tuple(impl.argnames))
            for impl in reversed(pm.hook.scan_file.get_hookimpls())
            if not (impl.hookwrapper or impl.wrapper)
        ]
        return cls(rules, impls, strict=pm.strict, **kwargs)

    # -- public ----------------------------------------------------------------------------
    def scan_path(self, path: Path) -> FileResult:
        display = display_path(path, self.root)
        try:
            source = read_source(path, self.options.max_file_size)
        except Unreadable as exc:
            return FileResult(display, skipped=Skipped(display, str(exc)))
        return self.scan_text(source, path, display)

    def scan_text(self, source: str, path: Path, display: str | None = None) -> FileResult:
        display = display or display_path(path, self.root)
        lines = source.count("\n") + (0 if source.endswith("\n") or not source else 1)
        try:
            tree = ast.parse(source, filename=str(path))
        except SyntaxError as exc:
            where = f" (line {exc.lineno})" if exc.lineno else ""
            reason = f"syntax error{where}: {exc.msg}"
            return FileResult(display, lines, skipped=Skipped(display, reason))
        except (ValueError, RecursionError, MemoryError) as exc:
            reason = "too deeply nested to parse" if isinstance(exc, RecursionError) else str(exc)
            return FileResult(display, lines, skipped=Skipped(display, f"cannot parse: {reason}"))
        result = FileResult(display, lines)
        ctx = FileContext(path, display, source, tree)
        raw: list[tuple[LoadedRule | None, str, Finding]] = []
        dispatch = self._dispatch_for(source)
        try:
            self._walk(tree, ctx, dispatch, raw, result)
        except RecursionError:
            result.skipped = Skipped(display, "too deeply nested to scan")
            return result
        self._finish(ctx, dispatch, raw, result)
        self._scan_file_hook(path, tree, source, display, raw, result)
        self._complete(ctx, raw, result)
        return result

    # -- the walk --------------------------------------------------------------------------
    def _dispatch_for(self, source: str) -> _Dispatch:
        if not self._needs:
            return self._full
        inactive = frozenset(
            rule_id
            for rule_id, needs in self._needs.items()
            if not any(text in source for text in needs)
        )
        if not inactive:
            return self._full
        dispatch = self._by_inactive.get(inactive)
        if dispatch is None:
            dispatch = _Dispatch.build(r for r in self.rules.values() if r.rule.id not in inactive)
            self._by_inactive[inactive] = dispatch
        return dispatch

    def _walk(
        self,
        tree: ast.Module,
        ctx: FileContext,
        dispatch: _Dispatch,
        raw: list[tuple[LoadedRule | None, str, Finding]],
        result: FileResult,
    ) -> None:
        """Visit every node once, running the rules that asked for its type (or callee)."""
        by_type = dispatch.by_type
        special = _special_handlers(ctx, dispatch)
        ancestors = ctx.ancestors
        child_fields = _CHILD_FIELDS
        AST = ast.AST
        stack: list[Any] = [tree]
        pop, push = stack.pop, stack.append
        # Pre-order, children in source order, without recursion (generated code nests
        # deeper than Python's stack). ``None`` on the stack marks "leave the ancestor".
        while stack:
            node = pop()
            if node is None:
                ancestors.pop()
                continue
            cls = type(node)
            handler = special.get(cls)
            rules = by_type.get(cls) if handler is None else handler(node)
            if rules:
                self._check(node, rules, ctx, raw, result)
            mark = len(stack)
            for fname in child_fields[cls]:  # reversed field order: the stack pops them in order
                value = getattr(node, fname, None)  # None, a list, a node, or a plain value
                if type(value) is list:
                    for item in reversed(value):
                        if isinstance(item, AST):
                            push(item)
                elif isinstance(value, AST):
                    push(value)
            if len(stack) > mark:  # it has children: leave it (pop its ancestor) after them
                ancestors.append(node)
                stack.insert(mark, None)

    def _check(
        self,
        node: ast.AST,
        rules: list[LoadedRule],
        ctx: FileContext,
        raw: list[tuple[LoadedRule | None, str, Finding]],
        result: FileResult,
    ) -> None:
        """Run the ``check`` of each rule that asked for this node, with the node current."""
        ctx.node = node
        for loaded in rules:
            self._run(loaded, loaded.rule.check, node, ctx, raw, result)

    def _run(
        self,
        loaded: LoadedRule,
        fn: Callable[..., Any] | None,
        node: ast.AST | None,
        ctx: FileContext,
        raw: list[tuple[LoadedRule | None, str, Finding]],
        result: FileResult,
    ) -> None:
        rule = loaded.rule
        if fn is None or rule.id in ctx._disabled:
            return
        ctx.rule = rule
        try:
            value = fn(node, ctx) if node is not None else fn(ctx)
            found = as_findings(value)
        except Exception as exc:
            line = getattr(node, "lineno", None)
            problem = RuleProblem(
                loaded.plugin, rule.id, f"{type(exc).__name__}: {exc}", ctx.display_path, line
            )
            if self.strict:
                raise PluginError(problem.describe()) from exc
            result.problems.append(problem)
            ctx._disabled.add(rule.id)  # one report per rule and file, then skip it here
            return
        finally:
            ctx.rule = None
        for finding in found:
            raw.append((loaded, loaded.plugin, finding))

    def _finish(
        self,
        ctx: FileContext,
        dispatch: _Dispatch,
        raw: list[tuple[LoadedRule | None, str, Finding]],
        result: FileResult,
    ) -> None:
        ctx.node = None
        ctx.ancestors.clear()
        for loaded in dispatch.finishers:
            self._run(loaded, loaded.rule.finish, None, ctx, raw, result)

    def _scan_file_hook(
        self,
        path: Path,
        tree: ast.Module,
        source: str,
        display: str,
        raw: list[tuple[LoadedRule | None, str, Finding]],
        result: FileResult,
    ) -> None:
        arguments = {"path": path, "tree": tree, "source": source}
        for plugin, function, argnames in self.scan_file_impls:
            try:
                found = as_findings(function(*[arguments[name] for name in argnames]))
            except Exception as exc:
                error = f"scan_file raised {type(exc).__name__}: {exc}"
                problem = RuleProblem(plugin, "", error, display)
                if self.strict:
                    raise PluginError(problem.describe()) from exc
                result.problems.append(problem)
                continue
            for finding in found:
                raw.append((self.rules.get(finding.rule), plugin, finding))

    def _complete(
        self,
        ctx: FileContext,
        raw: list[tuple[LoadedRule | None, str, Finding]],
        result: FileResult,
    ) -> None:
        """Apply rule defaults, the confidence floor and suppressions; add snippets and
        fingerprints."""
        if not raw:
            return
        suppressions = find_suppressions(ctx.source)
        occurrences: dict[tuple[str, str], int] = {}
        minimum = self.options.min_confidence
        completed = []
        seen: set[tuple[str, int, int]] = set()
        for loaded, plugin, finding in sorted(raw, key=lambda r: (r[2].line, r[2].col, r[2].rule)):
            rule = loaded.rule if loaded is not None else None
            if rule is None and not self._undeclared_enabled(finding.rule):
                continue  # a scan_file finding of a rule that is switched off
            key = (finding.rule, finding.line, finding.col)
            if key in seen:  # the same rule at the same place once, however it got there
                continue
            seen.add(key)
            confidence = (
                finding.confidence
                if finding.confidence is not None
                else (rule.confidence if rule else 1.0)
            )
            if confidence < minimum:
                continue
            if is_suppressed(finding.rule, finding.line, suppressions):
                result.suppressed += 1
                continue
            snippet = ctx.line_text(finding.line).strip()
            normalized = " ".join(snippet.split())
            count = occurrences.get((finding.rule, normalized), 0)
            occurrences[(finding.rule, normalized)] = count + 1
            # the finding as the check placed it (rule, position, message), completed
            completed.append(
                replace(
                    finding,
                    path=ctx.display_path,
                    severity=finding.severity or (rule.severity if rule else "warning"),
                    confidence=round(confidence, 3),
                    proposal=finding.proposal or (rule.proposal if rule else None),
                    plugin=plugin,
                    snippet=snippet[:200],
                    fingerprint=fingerprint(finding.rule, ctx.display_path, normalized, count),
                )
            )
        result.findings.extend(completed)

    #: Ids of every rule registered (enabled or not); set by :func:`scan`.
    all_rule_ids: frozenset[str] = frozenset()

    def _undeclared_enabled(self, rule_id: str) -> bool:
        """A ``scan_file`` finding whose rule is not among the enabled ones: dropped if
        the rule is registered (it was switched off), else kept when ``select``/``ignore``
        allow its id."""
        if rule_id in self.all_rule_ids:
            return False
        return enabled(rule_id, "", self.options.select, self.options.ignore)


def fingerprint(rule: str, path: str, normalized_line: str, occurrence: int) -> str:
    """Stable across runs and line shifts: rule, file and the line's text (whitespace
    collapsed), plus which occurrence of that same text in the file it is."""
    text = "\x00".join((rule, path, normalized_line, str(occurrence)))
    # surrogateescape: a file name that is not UTF-8 still has a stable fingerprint
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def display_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` (POSIX separators) when under it, else absolute."""
    absolute = Path(os.path.abspath(path))
    try:
        return absolute.relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        return absolute.as_posix()
