"""What a rule sees of the file being scanned: :class:`FileContext`.

The engine keeps one context per file and updates it during its single walk: the stack of
ancestors of the current node, the import aliases seen so far (``import numpy as np`` makes
``np.argsort`` resolve to ``numpy.argsort``) and each rule's private state. The helpers
here are what most rules need, written once and fast: which call is this, what literal does
a keyword hold, am I in a loop, in ``with torch.inference_mode()``, in the same function as
that earlier assignment?
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.scan.rules import Finding

if TYPE_CHECKING:
    from pipetune.scan.rules import Rule

#: Returned by :meth:`FileContext.keyword_value` when the keyword is absent.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
#: Returned when the keyword is present but its value is not a literal.
DYNAMIC: Any = type("Dynamic", (), {"__repr__": lambda self: "DYNAMIC"})()

FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
LOOPS = (ast.For, ast.AsyncFor, ast.While)
COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp)


class FileContext:
    """One file under scan. Rules read it; only the engine changes it."""

    def __init__(self, path: Path, display_path: str, source: str, tree: ast.Module):
        self.path = path
        self.display_path = display_path
        self.source = source
        self.tree = tree
        #: Ancestors of the node being visited, outermost first (the module first).
        self.ancestors: list[ast.AST] = []
        #: Local name -> dotted origin, from the imports seen so far in the walk.
        self.imports: dict[str, str] = {}
        #: The rule being run (set by the engine before each call).
        self.rule: Rule | None = None
        #: The node being visited (set by the engine).
        self.node: ast.AST | None = None
        self._states: dict[str, dict[str, Any]] = {}
        #: Per-file memo shared by helpers (facts about a loop computed once for all rules).
        self.cache: dict[Any, Any] = {}
        #: Rules that raised on this file: not called again on it.
        self._disabled: set[str] = set()
        self._lines: list[str] | None = None

    # -- state and text --------------------------------------------------------------------
    @property
    def state(self) -> dict[str, Any]:
        """A dict private to the current rule for this file (collect here, report in
        ``finish``)."""
        assert self.rule is not None, "state is available inside a rule only"
        return self._states.setdefault(self.rule.id, {})

    @property
    def lines(self) -> list[str]:
        if self._lines is None:
            self._lines = self.source.splitlines()
        return self._lines

    def line_text(self, lineno: int) -> str:
        """Source line ``lineno`` (1-based), '' outside the file."""
        lines = self.lines
        return lines[lineno - 1] if 0 < lineno <= len(lines) else ""

    def mentions(self, text: str) -> bool:
        """Whether the file's text contains ``text`` anywhere (cheap whole-file facts)."""
        return text in self.source

    # -- findings --------------------------------------------------------------------------
    def finding(
        self,
        node: ast.AST,
        message: str,
        *,
        confidence: float | None = None,
        severity: str | None = None,
        proposal: str | None = None,
        rule: str | None = None,
    ) -> Finding:
        """A finding of the current rule at ``node`` (its first line and column)."""
        rule_id = rule or (self.rule.id if self.rule is not None else "")
        if not rule_id:
            raise ValueError("finding() outside a rule needs rule=")
        line = getattr(node, "lineno", 1) or 1
        end_line = getattr(node, "end_lineno", None)
        return Finding(
            rule=rule_id,
            path=self.display_path,
            line=line,
            col=self._column(line, getattr(node, "col_offset", 0) or 0),
            end_line=end_line,
            end_col=(
                self._column(end_line, node.end_col_offset)  # type: ignore[attr-defined]
                if end_line is not None and getattr(node, "end_col_offset", None) is not None
                else None
            ),
            message=message,
            severity=severity,
            confidence=confidence,
            proposal=proposal,
        )

    def _column(self, lineno: int, byte_offset: int) -> int:
        """ast offsets count UTF-8 bytes; editors and SARIF count characters, from 1."""
        text = self.line_text(lineno)
        if text.isascii():
            return byte_offset + 1
        return len(text.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore")) + 1

    # -- imports and names -----------------------------------------------------------------
    def note_import(self, node: ast.Import | ast.ImportFrom) -> None:
        """Record an import's aliases (called by the engine as the walk meets it)."""
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    self.imports[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    self.imports[top] = top
        else:
            module = ("." * node.level) + (node.module or "")
            for alias in node.names:
                if alias.name != "*":
                    self.imports[alias.asname or alias.name] = f"{module}.{alias.name}"

    @staticmethod
    def dotted(expr: ast.AST | None) -> str | None:
        """``a.b.c`` for a chain of attributes on a name, else ``None``."""
        parts = []
        while isinstance(expr, ast.Attribute):
            parts.append(expr.attr)
            expr = expr.value
        if not isinstance(expr, ast.Name):
            return None
        parts.append(expr.id)
        return ".".join(reversed(parts))

    def resolve(self, expr: ast.AST | None) -> str | None:
        """The dotted name with its first part replaced by what it was imported as:
        ``np.argsort`` -> ``numpy.argsort``, ``AutoTokenizer`` ->
        ``transformers.AutoTokenizer``. Unimported names stay as written."""
        name = self.dotted(expr)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        origin = self.imports.get(head)
        if origin is None:
            return name
        return f"{origin}.{rest}" if rest else origin

    @staticmethod
    def callee(call: ast.Call) -> str:
        """The last name of what is called: ``generate`` in ``self.model.generate(x)``."""
        func = call.func
        if isinstance(func, ast.Attribute):
            return func.attr
        if isinstance(func, ast.Name):
            return func.id
        return ""

    @staticmethod
    def receiver(call: ast.Call) -> ast.expr | None:
        """``self.model`` in ``self.model.generate(x)``; ``None`` for a plain call."""
        return call.func.value if isinstance(call.func, ast.Attribute) else None

    @staticmethod
    def keyword(call: ast.Call, name: str) -> ast.expr | None:
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value
        return None

    @classmethod
    def keyword_value(cls, call: ast.Call, name: str) -> Any:
        """The literal value of keyword ``name``: :data:`MISSING` when absent,
        :data:`DYNAMIC` when not a literal (a variable, a call)."""
        value = cls.keyword(call, name)
        if value is None:
            return MISSING
        return literal(value)

    @staticmethod
    def has_star_kwargs(call: ast.Call) -> bool:
        """``f(**options)``: any keyword may be hidden in there."""
        return any(kw.arg is None for kw in call.keywords)

    # -- where am I ------------------------------------------------------------------------
    def enclosing(self, *types: type[ast.AST]) -> ast.AST | None:
        """The nearest ancestor of one of ``types``."""
        for node in reversed(self.ancestors):
            if isinstance(node, types):
                return node
        return None

    def function(self) -> ast.AST | None:
        """The innermost enclosing function (or lambda); ``None`` at module level."""
        return self.enclosing(*FUNCTIONS)

    def scope_key(self) -> int:
        """An id for the innermost function scope (0 for the module): rule state keyed by
        it keeps facts from leaking between functions."""
        scope = self.function()
        return id(scope) if scope is not None else 0

    def loops(self) -> list[ast.stmt | ast.expr]:
        """Loops (``for``, ``while``, comprehensions) around the current node, innermost
        first, stopping at the enclosing function. A node in a ``for`` loop's ``iter`` (or
        a comprehension's first iterable) runs once, so that loop is not counted."""
        path = [*self.ancestors, self.node] if self.node is not None else list(self.ancestors)
        found: list[ast.stmt | ast.expr] = []
        for depth in range(len(path) - 2, -1, -1):
            node, child = path[depth], path[depth + 1]
            if isinstance(node, FUNCTIONS):
                break
            if isinstance(node, ast.For | ast.AsyncFor):
                if child is not node.iter:
                    found.append(node)
            elif isinstance(node, ast.While):
                found.append(node)
            elif isinstance(node, COMPREHENSIONS):
                first = node.generators[0] if node.generators else None
                once = child is first and depth + 2 < len(path) and path[depth + 2] is first.iter
                if not once:
                    found.append(node)
        return found

    def in_context(self, names: Iterable[str]) -> bool:
        """Whether the current node runs under a context manager or decorator whose
        resolved name is in ``names`` (``torch.inference_mode``, ``torch.no_grad``...),
        called or not, in this function or any enclosing one."""
        wanted = set(names)
        for node in self.ancestors:
            if isinstance(node, ast.With | ast.AsyncWith):
                for item in node.items:
                    if self._names_call(item.context_expr, wanted):
                        return True
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
                self._names_call(dec, wanted) for dec in node.decorator_list
            ):
                return True
        return False

    def _names_call(self, expr: ast.AST, wanted: set[str]) -> bool:
        target = expr.func if isinstance(expr, ast.Call) else expr
        return self.resolve(target) in wanted


def literal(value: ast.AST) -> Any:
    """A constant's value (also ``-1``, tuples of constants); :data:`DYNAMIC` otherwise."""
    if isinstance(value, ast.Constant):
        return value.value
    try:
        return ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return DYNAMIC


def names_in(node: ast.AST) -> set[str]:
    """Every plain name read or written in ``node``'s subtree (small subtrees only)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def target_names(target: ast.AST) -> set[str]:
    """Names bound by an assignment or loop target (``a``, ``a, b``, ``(a, [b, c])``)."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, ast.Tuple | ast.List):
        out: set[str] = set()
        for element in target.elts:
            out |= target_names(element)
        return out
    if isinstance(target, ast.Starred):
        return target_names(target.value)
    return set()


def loop_targets(loop: ast.AST) -> set[str]:
    """The names a loop binds per iteration (empty for ``while``)."""
    if isinstance(loop, ast.For | ast.AsyncFor):
        return target_names(loop.target)
    if isinstance(loop, COMPREHENSIONS):
        out: set[str] = set()
        for generator in loop.generators:
            out |= target_names(generator.target)
        return out
    return set()


def iter_calls(node: ast.AST) -> Iterator[ast.Call]:
    """Calls in ``node``'s subtree (small subtrees only: loop bodies)."""
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            yield child
