"""Static rules of the recsys plugin for ``pipetune scan`` (docs/scan.md has the entries).

Read with ``ast`` only. A matrix's size is unknown statically, so these rules carry a
medium confidence: an exhaustive scan over 500 items is fine, over 5 million it is not.
"""

from __future__ import annotations

import ast
import re

from pipetune.plugins._scan import per_item_finding
from pipetune.scan.context import FileContext, target_names
from pipetune.scan.rules import Finding, Rule

SORTS = frozenset({"argsort", "argpartition", "topk", "sort", "top_k"})
MATMUL_CALLS = frozenset({"dot", "matmul", "mm", "bmm", "einsum", "inner"})
FLAT_INDEXES = frozenset({"IndexFlatIP", "IndexFlatL2", "IndexFlat"})
#: Index types whose first argument is a *quantizer*: a flat index passed here is fine.
QUANTIZED_INDEXES = frozenset(
    {"IndexIVFFlat", "IndexIVFPQ", "IndexIVFScalarQuantizer", "IndexIVFPQFastScan", "IndexIVF"}
)


def _is_matmul(expr: ast.AST, ctx: FileContext, scores: set[str]) -> bool:
    while isinstance(expr, ast.UnaryOp):  # -scores
        expr = expr.operand
    if isinstance(expr, ast.BinOp) and isinstance(expr.op, ast.MatMult):
        return True
    if isinstance(expr, ast.Call) and ctx.callee(expr) in MATMUL_CALLS:
        return True
    if isinstance(expr, ast.Call) and ctx.callee(expr) in {"squeeze", "ravel", "flatten"}:
        receiver = ctx.receiver(expr)
        return receiver is not None and _is_matmul(receiver, ctx, scores)
    return isinstance(expr, ast.Name) and expr.id in scores


def _scores(ctx: FileContext) -> set[str]:
    return ctx.state.setdefault("scores", {}).setdefault(ctx.scope_key(), set())


def check_exhaustive_topk(node: ast.AST, ctx: FileContext) -> Finding | None:
    if isinstance(node, ast.Assign):
        if _is_matmul(node.value, ctx, _scores(ctx)):
            for target in node.targets:
                _scores(ctx).update(target_names(target))
        return None
    assert isinstance(node, ast.Call)
    subject = node.args[0] if node.args else ctx.receiver(node)
    if subject is None or not _is_matmul(subject, ctx, _scores(ctx)):
        return None
    return ctx.finding(
        node,
        f"{ctx.callee(node)} over a full matrix product scores every catalog item for each "
        "query; over a large catalog an ANN index returns the top candidates for a "
        "fraction of the work (re-rank them exactly to keep recall)",
    )


EXHAUSTIVE_TOPK = Rule(
    id="PT-REC001",
    name="exhaustive-topk",
    summary="Top-k by sorting a full items @ query product",
    proposal="recsys.ann_exact",
    node_types=(ast.Assign, ast.Call),
    call_names=SORTS,
    check=check_exhaustive_topk,
    confidence=0.5,
    needs=("@", "dot", "matmul", "mm("),
    description=(
        "Exact top-k costs O(catalog x dim) per query plus a sort of the whole score "
        "vector. An HNSW or IVF index visits a small fraction of the catalog at a tuned "
        "recall; re-ranking its candidates exactly keeps the final order exact."
    ),
    fix="a faiss HNSW/IVF index for candidates, exact re-rank of k' >= k; pipetune tunes "
    "k' and efSearch/nprobe to the recall you require.",
    tags=("retrieval",),
)


def check_flat_index(node: ast.Call, ctx: FileContext) -> None:
    callee = ctx.callee(node)
    if callee in QUANTIZED_INDEXES:
        first = node.args[0] if node.args else ctx.keyword(node, "quantizer")
        if isinstance(first, ast.Name):
            ctx.state.setdefault("quantizers", set()).add(first.id)
        return
    resolved = ctx.resolve(node.func) or ""
    if not resolved.startswith("faiss."):
        return
    parent = ctx.ancestors[-1] if ctx.ancestors else None
    if isinstance(parent, ast.Call) and ctx.callee(parent) in QUANTIZED_INDEXES:
        return  # built inline as a quantizer
    names: set[str] = set()
    if isinstance(parent, ast.Assign):
        for target in parent.targets:
            names |= target_names(target)
    ctx.state.setdefault("flat", []).append((node, names))


def finish_flat_index(ctx: FileContext) -> list[Finding]:
    quantizers = ctx.state.get("quantizers", set())
    return [
        ctx.finding(
            node,
            f"faiss.{ctx.callee(node)} searches the whole catalog exhaustively on every query; "
            "over a large catalog an HNSW or IVF index answers at a tuned recall in a "
            "fraction of the time",
        )
        for node, names in ctx.state.get("flat", [])
        if not names & quantizers
    ]


FLAT_INDEX = Rule(
    id="PT-REC002",
    name="flat-faiss-index",
    summary="A flat (exhaustive) faiss index used for search",
    proposal="recsys.ann_exact",
    node_types=(ast.Call,),
    call_names=FLAT_INDEXES | QUANTIZED_INDEXES,
    check=check_flat_index,
    finish=finish_flat_index,
    confidence=0.5,
    needs=("faiss",),
    description=(
        "IndexFlat* compares the query with every vector: exact, and linear in the catalog. "
        "Past ~100k vectors an ANN index is usually far faster at recall@k >= 0.95 (this "
        "repository's measured figure: docs/scan.md, measured effects)."
    ),
    fix="faiss.IndexHNSWFlat or IndexIVFFlat (with the flat index as quantizer), tuned by "
    "pipetune to your recall target.",
    tags=("retrieval", "faiss"),
)

_STORE = re.compile(r"(redis|store|feast|kv|client|db)", re.IGNORECASE)
READ_METHODS = frozenset({"get", "hget", "hgetall", "get_online_features", "read", "fetch"})


def check_feature_read(node: ast.Call, ctx: FileContext) -> Finding | None:
    receiver = ctx.dotted(ctx.receiver(node))
    if receiver is None or not _STORE.search(receiver.rsplit(".", 1)[-1]):
        return None
    return per_item_finding(
        ctx,
        node,
        lambda line: (
            f"{receiver}.{ctx.callee(node)} reads one key per item in a loop "
            f"(line {line}): one round trip each; a batched read (mget, pipeline, "
            "get_online_features on all entities) pays one"
        ),
    )


FEATURE_READ = Rule(
    id="PT-REC003",
    name="per-item-feature-read",
    summary="A feature-store or key-value read per item inside a loop",
    proposal="recsys.batched_feature_reads",
    node_types=(ast.Call,),
    call_names=READ_METHODS,
    check=check_feature_read,
    confidence=0.5,
    description=(
        "Each read from a remote store costs a network round trip; ranking 500 candidates "
        "with one read each spends most of the request waiting."
    ),
    fix="read all keys in one batched call (redis MGET / pipeline, a feature store's "
    "multi-entity read).",
    tags=("features", "io"),
)

RULES: tuple[Rule, ...] = (EXHAUSTIVE_TOPK, FLAT_INDEX, FEATURE_READ)
