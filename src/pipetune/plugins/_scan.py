"""What the built-in plugins' scan rules share: the finding for a call made once per item
of a loop, the most common shape of a rule (a model, a request, a store read per item)."""

from __future__ import annotations

import ast
from collections.abc import Callable

from pipetune.scan.context import FileContext
from pipetune.scan.heuristics import per_item_loop
from pipetune.scan.rules import Finding


def per_item_finding(
    ctx: FileContext, node: ast.Call, message: Callable[[int], str]
) -> Finding | None:
    """A finding at ``node`` when it runs once per item of a loop
    (:func:`~pipetune.scan.heuristics.per_item_loop`), its text ``message(line of the
    loop)``; ``None`` when it does not."""
    loop = per_item_loop(ctx, node)
    if loop is None:
        return None
    return ctx.finding(node, message(loop.lineno))
