"""Shared static heuristics for rules: what looks like a model call, a loop over items.

Static analysis cannot know what a name holds at run time. These helpers read names the way
a reviewer would (``model``, ``self.encoder``, ``ranker``), and rules that use them say so
with a confidence below 1.
"""

from __future__ import annotations

import ast
import re

from pipetune.scan.context import FileContext, loop_targets, names_in, target_names

#: The last part of a dotted name that reads as a model: ``model``, ``self.text_encoder``,
#: ``clf``, ``ranker``, ``net``, ``bert``. Matched on ``_``-separated words.
MODEL_WORDS = frozenset(
    {
        "model",
        "models",
        "net",
        "network",
        "encoder",
        "classifier",
        "clf",
        "ranker",
        "reranker",
        "scorer",
        "backbone",
        "detector",
        "embedder",
        "bert",
        "llm",
        "lm",
        "transformer",
        "pipe",
    }
)
#: Methods that run a model on their argument.
INFERENCE_METHODS = frozenset({"forward", "predict", "predict_proba", "encode", "embed", "infer"})
_WORD = re.compile(r"[a-z0-9]+")
#: Memo: last name -> reads as a model (names repeat across a codebase).
_MODEL_NAMES: dict[str, bool] = {}


def looks_like_model(expr: ast.AST | None) -> bool:
    """``model``, ``self.model``, ``self.text_encoder``, ``clf``: a name that reads as a
    model (by its last part)."""
    if isinstance(expr, ast.Attribute):
        last = expr.attr
        base = expr.value
        while isinstance(base, ast.Attribute):
            base = base.value
        if not isinstance(base, ast.Name):
            return False
    elif isinstance(expr, ast.Name):
        last = expr.id
    else:
        return False
    known = _MODEL_NAMES.get(last)
    if known is None:
        words = _WORD.findall(last.lower().replace("_", " "))
        known = _MODEL_NAMES[last] = any(word in MODEL_WORDS for word in words)
    return known


def model_call(call: ast.Call) -> ast.AST | None:
    """The model in ``model(x)``, ``self.model(x)``, ``model.predict(x)``,
    ``model.forward(x)``; ``None`` when the call does not read as running a model."""
    func = call.func
    if looks_like_model(func):
        return func
    if (
        isinstance(func, ast.Attribute)
        and func.attr in INFERENCE_METHODS
        and looks_like_model(func.value)
    ):
        return func.value
    return None


def argument_names(call: ast.Call) -> set[str]:
    """Names read by a call's arguments (positional and keyword)."""
    names: set[str] = set()
    for arg in call.args:
        names |= names_in(arg)
    for kw in call.keywords:
        names |= names_in(kw.value)
    return names


def per_item_loop(ctx: FileContext, call: ast.Call) -> ast.stmt | ast.expr | None:
    """The innermost loop around ``call`` whose loop variable feeds the call's arguments:
    the call runs once per item. Loops over ``batches``/``chunks`` do not count."""
    used = argument_names(call)
    if not used:
        return None
    for loop in ctx.loops():
        targets = per_iteration_names(ctx, loop)
        if not targets & used:
            continue
        if _iterates_batches(loop):
            return None
        return loop
    return None


def _iterates_batches(loop: ast.AST) -> bool:
    iterables: list[ast.AST] = []
    if isinstance(loop, ast.For | ast.AsyncFor):
        iterables = [loop.iter]
        targets = loop_targets(loop)
    else:
        iterables = [g.iter for g in getattr(loop, "generators", [])]
        targets = loop_targets(loop)
    words = " ".join(
        [ast.unparse(it) for it in iterables if isinstance(it, ast.Name | ast.Attribute | ast.Call)]
        + sorted(targets)
    ).lower()
    return "batch" in words or "chunk" in words


def per_iteration_names(ctx: FileContext, loop: ast.AST) -> set[str]:
    """The loop's own variables plus names assigned in its body from them
    (``ids = tokenizer(q)`` in ``for q in questions``): what changes per iteration."""
    key = ("per_iteration", id(loop))
    cached = ctx.cache.get(key)
    if cached is not None:
        return cached
    names = set(loop_targets(loop))
    assigns = _body_assignments(loop)
    for _ in range(2):  # two hops: q -> text -> ids
        for targets, value in assigns:
            if names_in(value) & names:
                for target in targets:
                    names |= target_names(target)
    ctx.cache[key] = names
    return names


def _body_assignments(loop: ast.AST) -> list[tuple[list[ast.expr], ast.expr]]:
    """``(targets, value)`` of every assignment anywhere in the loop's body (a comprehension
    has no body: none)."""
    body = getattr(loop, "body", None)
    assigns: list[tuple[list[ast.expr], ast.expr]] = []
    if isinstance(body, list):
        for statement in body:
            for node in ast.walk(statement):
                if isinstance(node, ast.Assign):
                    assigns.append((node.targets, node.value))
                elif isinstance(node, ast.AnnAssign | ast.AugAssign) and node.value is not None:
                    assigns.append(([node.target], node.value))
    return assigns
