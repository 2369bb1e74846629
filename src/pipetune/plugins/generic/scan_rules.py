"""Static rules of the generic plugin (batching, caching, parallelism) for ``pipetune scan``.

Read with ``ast`` only; docs/scan.md has each rule's entry.
"""

from __future__ import annotations

import ast

from pipetune.plugins._scan import per_item_finding
from pipetune.scan.context import FileContext, loop_targets, names_in
from pipetune.scan.heuristics import argument_names, model_call
from pipetune.scan.rules import Finding, Rule

ENCODE_METHODS = frozenset(
    {
        "encode",
        "embed",
        "embed_query",
        "embed_documents",
        "get_embedding",
        "get_embeddings",
        "encode_text",
        "encode_image",
    }
)
BLOCKING_IO = frozenset(
    {
        "requests.get",
        "requests.post",
        "requests.put",
        "requests.request",
        "urllib.request.urlopen",
        "httpx.get",
        "httpx.post",
    }
)


def check_model_in_loop(node: ast.Call, ctx: FileContext) -> Finding | None:
    model = model_call(node)
    if model is None or (ctx.callee(node) in ENCODE_METHODS and _nested_encode(ctx, node)):
        return None  # re-encoding in nested loops is PT-GEN002's finding
    return per_item_finding(
        ctx,
        node,
        lambda line: (
            f"{ast.unparse(model)} is called once per item in a loop (line {line}); a "
            "batched call amortizes the per-call overhead and uses the hardware's parallelism"
        ),
    )


def _nested_encode(ctx: FileContext, node: ast.Call) -> bool:
    return _repeated_inner_loop(ctx, node) is not None


MODEL_IN_LOOP = Rule(
    id="PT-GEN001",
    name="model-call-per-item",
    summary="A model called once per item inside a loop",
    proposal="generic.dynamic_batching",
    node_types=(ast.Call,),
    check=check_model_in_loop,
    confidence=0.6,
    description=(
        "Each model call pays fixed costs (Python dispatch, kernel launches, small matrix "
        "shapes that leave SIMD lanes or GPU SMs idle). One call on a batch of items pays "
        "them once."
    ),
    fix="collect items and call the model on a batch (pipetune's dynamic batching tunes "
    "the batch size and maximum delay on your workload).",
    tags=("batching",),
)


def _repeated_inner_loop(ctx: FileContext, node: ast.Call) -> ast.stmt | ast.expr | None:
    """The inner loop when ``node`` encodes the inner loop's items and an outer loop
    repeats the inner one over the same collection."""
    loops = ctx.loops()
    if len(loops) < 2:
        return None
    inner, outer = loops[0], loops[1]
    used = argument_names(node)
    inner_targets = loop_targets(inner)
    outer_targets = loop_targets(outer)
    if not inner_targets & used or outer_targets & used:
        return None
    iterables = (
        [inner.iter]
        if isinstance(inner, ast.For | ast.AsyncFor)
        else [g.iter for g in getattr(inner, "generators", [])]
    )
    if any(names_in(it) & outer_targets for it in iterables):
        return None  # a different collection on each outer iteration
    return inner


def check_reencode(node: ast.Call, ctx: FileContext) -> Finding | None:
    inner = _repeated_inner_loop(ctx, node)
    if inner is None:
        return None
    return ctx.finding(
        node,
        f"{ast.unparse(node.func)} encodes the items of the inner loop (line "
        f"{inner.lineno}) again on every pass of the outer loop: the same inputs are "
        "re-encoded; encode them once (or cache results by content hash)",
    )


REENCODE = Rule(
    id="PT-GEN002",
    name="reencode-unchanged-inputs",
    summary="The same inputs encoded again on every pass of an outer loop",
    proposal="generic.result_cache",
    node_types=(ast.Call,),
    call_names=ENCODE_METHODS,
    check=check_reencode,
    confidence=0.7,
    description=(
        "An encoder is deterministic: encoding a document on every query (or every epoch) "
        "repeats work whose result is already known. Encoding each input once, or caching "
        "results keyed by a hash of the input, removes the repeats."
    ),
    fix="hoist the encoding out of the outer loop, or let pipetune's result cache key "
    "outputs by content hash.",
    tags=("caching",),
)


def check_blocking_io(node: ast.Call, ctx: FileContext) -> Finding | None:
    resolved = ctx.resolve(node.func)
    if resolved not in BLOCKING_IO:
        return None
    return per_item_finding(
        ctx,
        node,
        lambda line: (
            f"{resolved} blocks once per item in a loop (line {line}): the loop "
            "waits on the network serially; issue the requests concurrently (a thread pool)"
        ),
    )


BLOCKING_IO_IN_LOOP = Rule(
    id="PT-GEN003",
    name="blocking-io-per-item",
    summary="A blocking network call per item inside a loop",
    proposal="generic.parallel_threads",
    node_types=(ast.Call,),
    call_names=frozenset(name.rsplit(".", 1)[-1] for name in BLOCKING_IO),
    check=check_blocking_io,
    confidence=0.6,
    needs=("requests", "urllib", "httpx"),
    description=(
        "Waiting on I/O releases the GIL, so threads overlap waits almost perfectly; a "
        "serial loop adds every round trip to the total."
    ),
    fix="concurrent.futures.ThreadPoolExecutor().map(fetch, items) (pipetune's parallel "
    "stage tunes the worker count).",
    tags=("parallelism", "io"),
)

RULES: tuple[Rule, ...] = (MODEL_IN_LOOP, REENCODE, BLOCKING_IO_IN_LOOP)
