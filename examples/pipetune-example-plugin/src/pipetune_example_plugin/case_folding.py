"""Does a function read its input only through ``text.lower()``?

Read from the function's source with ``ast``: nothing is called. When every use of the
function's first parameter is ``param.lower()``, two inputs that lower-case alike give the
same output, so the stage's result can be memoized under the lower-cased text. Any other
use (``param.split()``, ``len(param)``, passing it on, assigning to it) leaves the
function alone.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from typing import Any

from pipetune_example_plugin.membership import function_tree


def input_parameter(tree: ast.FunctionDef | ast.Lambda) -> str | None:
    """The name of the first positional parameter (the stage's input), if any."""
    positional = [*tree.args.posonlyargs, *tree.args.args]
    return positional[0].arg if positional else None


def reads_only_lowercased(tree: ast.AST, name: str) -> bool:
    """True when ``tree`` uses ``name`` at least once, and only as ``name.lower()``."""
    lowered: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and not node.args
            and not node.keywords
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "lower"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == name
        ):
            lowered.add(id(node.func.value))
    uses = [node for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == name]
    return bool(uses) and all(id(node) in lowered for node in uses)


def is_case_insensitive(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s source shows that its output depends on its input only through
    ``input.lower()`` (``False`` when the source is not available)."""
    tree = function_tree(fn)
    if tree is None:
        return False
    name = input_parameter(tree)
    return name is not None and reads_only_lowercased(tree, name)
