"""Which names does a function use only in ``x in NAME`` / ``x not in NAME`` tests?

Read from the function's source with ``ast``: nothing is called. A name that is also
indexed, iterated, measured or assigned is left alone, because a frozenset would change
what those uses do.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from collections.abc import Callable, Iterable
from typing import Any

#: Lists shorter than this are scanned about as fast as they are hashed.
MIN_SIZE = 16


def function_tree(fn: Callable[..., Any]) -> ast.FunctionDef | ast.Lambda | None:
    """The function's own syntax tree, or ``None`` when its source is not available."""
    fn = inspect.unwrap(fn)  # through decorators, to the function that does the work
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    try:
        module = ast.parse(source)
    except SyntaxError:  # a lambda in the middle of an expression
        return None
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == fn.__name__:
            return node  # type: ignore[return-value]
    return None


def membership_only(tree: ast.AST, names: Iterable[str]) -> set[str]:
    """The subset of ``names`` that ``tree`` uses only as the right side of ``in``."""
    names = set(names)
    in_tests: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn) and isinstance(right, ast.Name):
                    in_tests.add(id(right))
    used_otherwise: set[str] = set()
    used_in_tests: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            if id(node) in in_tests:
                used_in_tests.add(node.id)
            else:
                used_otherwise.add(node.id)
    return used_in_tests - used_otherwise


def is_candidate(value: Any) -> bool:
    """A list or tuple long enough to matter, of hashable items."""
    if not isinstance(value, list | tuple) or len(value) < MIN_SIZE:
        return False
    try:
        frozenset(value)
    except TypeError:
        return False
    return True
