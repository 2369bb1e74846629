"""Static rules of the llm plugin for ``pipetune scan`` (docs/scan.md has the entries).

Read with ``ast`` only: nothing from the scanned code or from transformers is imported.
"""

from __future__ import annotations

import ast
import re

from pipetune.plugins._scan import per_item_finding
from pipetune.scan.context import FileContext
from pipetune.scan.heuristics import model_call
from pipetune.scan.rules import Finding, Rule


def check_use_cache_off(node: ast.Call, ctx: FileContext) -> Finding | None:
    if ctx.keyword_value(node, "use_cache") is not False:
        return None
    return ctx.finding(
        node,
        "generate(use_cache=False) recomputes attention over the whole sequence for every "
        "new token (quadratic in the output length); the KV cache makes each step "
        "constant-size",
        confidence=0.95,
    )


USE_CACHE_OFF = Rule(
    id="PT-LLM001",
    name="generate-without-kv-cache",
    summary="generate(..., use_cache=False)",
    proposal="llm.kv_cache",
    node_types=(ast.Call,),
    call_names=frozenset({"generate"}),
    check=check_use_cache_off,
    confidence=0.95,
    needs=("use_cache",),
    description=(
        "Without the KV cache, step t of decoding re-runs the model over all t previous "
        "tokens. With it, each step processes one token against cached keys and values: "
        "the same tokens, a fraction of the work on long outputs."
    ),
    fix="drop use_cache=False (the default is True).",
    tags=("generation",),
)


def check_manual_decode(node: ast.AST, ctx: FileContext) -> Finding | None:
    assert isinstance(node, ast.For | ast.While)
    grown: set[str] = set()
    model: ast.Call | None = None
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            if ctx.callee(child) == "cat" and child.args:
                first = child.args[0]
                if isinstance(first, ast.List | ast.Tuple):
                    grown |= {e.id for e in first.elts if isinstance(e, ast.Name)}
            elif model is None and model_call(child) is not None:
                model = child
        elif (isinstance(child, ast.keyword) and child.arg in {"past_key_values", "past"}) or (
            isinstance(child, ast.Name | ast.Attribute)
            and "past" in (child.id if isinstance(child, ast.Name) else child.attr)
        ):
            return None
    if model is None or not grown:
        return None
    fed = {a.id for a in model.args if isinstance(a, ast.Name)} | {
        kw.value.id for kw in model.keywords if isinstance(kw.value, ast.Name)
    }
    if not fed & grown:
        return None
    return ctx.finding(
        model,
        f"a hand-written decode loop (line {node.lineno}) feeds the whole, growing sequence "
        f"to {ast.unparse(model.func)} each step without past_key_values: every step "
        "recomputes all previous tokens",
    )


MANUAL_DECODE = Rule(
    id="PT-LLM002",
    name="decode-loop-without-kv-cache",
    summary="A hand-written decoding loop that re-feeds the full sequence each step",
    proposal="llm.kv_cache_loop",
    node_types=(ast.For, ast.While),
    check=check_manual_decode,
    confidence=0.7,
    needs=("cat([", "cat(("),
    description=(
        "A greedy loop that appends the next token and calls the model on the whole "
        "sequence again does O(n^2) work for n tokens; passing past_key_values makes each "
        "step O(n)."
    ),
    fix="keep outputs.past_key_values and feed only the new token, or call generate().",
    tags=("generation",),
)


def check_generate_per_request(node: ast.Call, ctx: FileContext) -> Finding | None:
    return per_item_finding(
        ctx,
        node,
        lambda line: (
            f"generate() runs one request at a time in a loop (line {line}): "
            "decoding is memory-bound, so a batch of sequences costs little more per step than "
            "one; continuous batching lets requests join and leave the running batch"
        ),
    )


GENERATE_PER_REQUEST = Rule(
    id="PT-LLM003",
    name="generate-per-request",
    summary="generate() called once per prompt inside a loop",
    proposal="llm.continuous_batching",
    node_types=(ast.Call,),
    call_names=frozenset({"generate"}),
    check=check_generate_per_request,
    confidence=0.5,
    description=(
        "Each decoding step reads all the model's weights from memory; one sequence per "
        "step wastes that read on a single token. Batching many sequences shares it."
    ),
    fix="batch prompts (padding left) or serve with continuous batching; pipetune "
    "measures throughput and latency both ways on your request stream.",
    tags=("generation", "batching"),
)

_CONSTANT = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: A literal prefix at least this long is worth caching.
PREFIX_CHARS = 40


def _shared_prefix(expr: ast.AST) -> bool:
    """``SYSTEM_PROMPT + q``, ``f"{SYSTEM}{q}"`` or a long literal in front of a variable."""
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.Add):
        left = expr.left
        while isinstance(left, ast.BinOp) and isinstance(left.op, ast.Add):
            left = left.left
        return _constant_text(left) and not _constant_text(expr.right)
    if isinstance(expr, ast.JoinedStr) and len(expr.values) >= 2:
        first = expr.values[0]
        if isinstance(first, ast.FormattedValue):
            return _constant_text(first.value)
        return isinstance(first, ast.Constant) and len(str(first.value)) >= PREFIX_CHARS
    return False


def _constant_text(expr: ast.AST) -> bool:
    if isinstance(expr, ast.Name):
        return bool(_CONSTANT.match(expr.id))
    return (
        isinstance(expr, ast.Constant)
        and isinstance(expr.value, str)
        and (len(expr.value) >= PREFIX_CHARS)
    )


def check_shared_prefix(node: ast.Call, ctx: FileContext) -> Finding | None:
    loops = ctx.loops()
    if not loops:
        return None
    loop = loops[-1]  # the outermost loop in this function
    prefixed = next(
        (child for child in ast.walk(loop) if _shared_prefix(child)),
        None,
    )
    if prefixed is None:
        return None
    return ctx.finding(
        node,
        f"every prompt in this loop starts with the same text ({ast.unparse(prefixed)[:60]}"
        "): its KV cache is recomputed for each request; compute the shared prefix once and "
        "reuse it",
    )


SHARED_PREFIX = Rule(
    id="PT-LLM004",
    name="shared-prompt-prefix",
    summary="Prompts with a shared constant prefix prefilled again for every request",
    proposal="llm.prefix_cache",
    node_types=(ast.Call,),
    call_names=frozenset({"generate"}),
    check=check_shared_prefix,
    confidence=0.5,
    description=(
        "Prefill of a long system prompt or few-shot template costs the same for every "
        "request. Its keys and values depend only on the prefix: computed once, they can be "
        "copied into each request's cache."
    ),
    fix="prefix caching (pipetune's llm.prefix_cache, or your server's prefix cache).",
    tags=("generation", "caching"),
)

RULES: tuple[Rule, ...] = (USE_CACHE_OFF, MANUAL_DECODE, GENERATE_PER_REQUEST, SHARED_PREFIX)
