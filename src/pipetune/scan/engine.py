"""The scan engine: each file is read once, parsed once with :mod:`ast` and walked once.

Nothing scanned is ever imported or run. Rules come from the plugins' ``scan_rules`` hook
and are indexed by the node types they inspect (and, for calls, by callee name), so the
single walk calls a rule only on nodes it asked for; whole-file findings come from the
``scan_file`` hook with the tree already parsed. ``--jobs N`` scans files in N processes
(spawned; each worker rebuilds the same plugins from their importable modules).

Failures stay local: a file that cannot be read, decoded or parsed is reported and
skipped; a rule that raises is reported with its plugin's name and the rule id, disabled
for that file, and the scan goes on (a strict plugin manager turns both into errors).
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib
import os
import signal
import sys
import time
import types
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import ConfigError, DuplicateError, PluginError
from pipetune.scan.config import ScanOptions
from pipetune.scan.context import FileContext
from pipetune.scan.files import Skipped, Unreadable, discover, read_source
from pipetune.scan.rules import (
    Finding,
    Rule,
    RuleError,
    RuleProblem,
    as_findings,
    coerce_rule,
    severity_rank,
)
from pipetune.scan.suppress import find_suppressions, is_suppressed

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

FINGERPRINT_KEY = "pipetune/v1"


# -- rules from plugins --------------------------------------------------------------------


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


# -- results -------------------------------------------------------------------------------


@dataclass
class FileResult:
    """What scanning one file gave (picklable: it crosses process boundaries)."""

    path: str
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    skipped: Skipped | None = None
    problems: list[RuleProblem] = field(default_factory=list)
    suppressed: int = 0


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


# -- one file ------------------------------------------------------------------------------

#: Fields that never hold child nodes worth visiting (names, flags, ``Load``/``Store``).
_SKIP_FIELDS = frozenset(
    {"ctx", "id", "attr", "arg", "name", "type_comment", "kind", "level", "module"}
    | {"conversion", "is_async", "simple", "n", "s"}
)
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {ast.Constant: ()}


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
        by_type, by_call = dispatch.by_type, dispatch.by_call
        ancestors = ctx.ancestors
        push_ancestor = ancestors.append
        child_fields = _CHILD_FIELDS
        AST, Attribute, Name, Call = ast.AST, ast.Attribute, ast.Name, ast.Call
        Import, ImportFrom = ast.Import, ast.ImportFrom
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
            if cls is Import or cls is ImportFrom:
                ctx.note_import(node)
            rules = by_type.get(cls)
            if cls is Call:
                func = node.func
                fcls = type(func)
                name = func.attr if fcls is Attribute else func.id if fcls is Name else None
                if name is not None:
                    called = by_call.get(name)
                    if called:
                        rules = called if rules is None else [*rules, *called]
            if rules:
                ctx.node = node
                for loaded in rules:
                    self._run(loaded, loaded.rule.check, node, ctx, raw, result)
            names = child_fields.get(cls)
            if names is None:
                names = _child_fields(cls)
            entered = False
            for fname in names:  # reversed field order: the stack pops them in order
                value = getattr(node, fname, None)
                if value is None:
                    continue
                if type(value) is list:
                    for item in reversed(value):
                        if isinstance(item, AST):
                            if not entered:
                                push_ancestor(node)
                                push(None)
                                entered = True
                            push(item)
                elif isinstance(value, AST):
                    if not entered:
                        push_ancestor(node)
                        push(None)
                        entered = True
                    push(value)

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
            completed.append(
                Finding(
                    rule=finding.rule,
                    path=ctx.display_path,
                    line=finding.line,
                    col=finding.col,
                    end_line=finding.end_line,
                    end_col=finding.end_col,
                    message=finding.message,
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
        plan, why_not = _worker_plan(pm, chosen, options, root, scanner.all_rule_ids)
        if plan is None:
            notes.append(f"--jobs {jobs}: scanned in one process ({why_not})")
            jobs = 1
    else:
        jobs = 1
    if jobs > 1:
        results: Generator[FileResult, None, None] = _scan_parallel(plan, files, jobs)  # type: ignore[arg-type]
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


# -- processes -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPlan:
    """What a worker process needs to rebuild the parent's scanner (all picklable)."""

    plugins: tuple[tuple[str, str], ...]
    rule_ids: tuple[str, ...]
    all_rule_ids: tuple[str, ...]
    options: ScanOptions
    root: str
    strict: bool
    sys_path: tuple[str, ...]


def _worker_plan(
    pm: PipetunePluginManager,
    chosen: RuleSet,
    options: ScanOptions,
    root: Path,
    all_rule_ids: frozenset[str],
) -> tuple[WorkerPlan | None, str]:
    plugins: list[tuple[str, str]] = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:
            continue
        hooks = {caller.name for caller in pm.get_hookcallers(plugin) or ()}
        if not hooks & {"scan_rules", "scan_file"}:
            continue
        module = getattr(plugin, "__name__", None)
        if not isinstance(plugin, types.ModuleType) or sys.modules.get(module or "") is not plugin:
            return None, f"plugin {name!r} is not an importable module"
        plugins.append((name, plugin.__name__))
    plan = WorkerPlan(
        plugins=tuple(plugins),
        rule_ids=tuple(chosen.rules),
        all_rule_ids=tuple(sorted(all_rule_ids)),
        options=options,
        root=str(root),
        strict=pm.strict,
        sys_path=tuple(sys.path),
    )
    return plan, ""


_WORKER: FileScanner | None = None


def _init_worker(plan: WorkerPlan) -> None:
    """Runs once in each worker: the same plugins, the same rules, the same options."""
    global _WORKER
    # The parent handles Ctrl-C and stops the pool; a worker must not die with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for entry in plan.sys_path:
        if entry not in sys.path:
            sys.path.append(entry)
    from pipetune.core.kernel.manager import PipetunePluginManager

    pm = PipetunePluginManager(strict=plan.strict)
    for name, module in plan.plugins:
        pm.load_plugin(name, importlib.import_module(module), source="worker")
    everything = collect_rules(pm)
    wanted = set(plan.rule_ids)
    rules = {rule_id: loaded for rule_id, loaded in everything.rules.items() if rule_id in wanted}
    _WORKER = FileScanner.from_manager(pm, rules, options=plan.options, root=Path(plan.root))
    _WORKER.all_rule_ids = frozenset(plan.all_rule_ids)


def _scan_in_worker(path: Path) -> FileResult:
    assert _WORKER is not None, "worker not initialized"
    return _WORKER.scan_path(path)


def _scan_parallel(
    plan: WorkerPlan, files: list[Path], jobs: int
) -> Generator[FileResult, None, None]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Spawned, not forked: workers start clean (no inherited threads or locks) and import
    # only what scanning needs, as every process pipetune starts should.
    context = multiprocessing.get_context("spawn")
    chunksize = max(1, min(64, len(files) // (jobs * 8)))
    pool = ProcessPoolExecutor(
        max_workers=jobs, mp_context=context, initializer=_init_worker, initargs=(plan,)
    )
    try:
        yield from pool.map(_scan_in_worker, files, chunksize=chunksize)
    except BaseException:  # Ctrl-C (or the consumer stopped): do not wait for the queue
        # (the processes first: shutdown() drops the executor's references to them)
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
