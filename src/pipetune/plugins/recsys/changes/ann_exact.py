"""``recsys.ann_exact``: ANN + exact re-rank of k' candidates instead of exact top-k,
tuned to the cheapest operating point, one query at a time, at recall@k >= the target."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import ConfigError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import ann, ann_search, blocks, exact_search, selection, spaces
from pipetune.plugins.recsys.changes.common import (
    MAX_EXACT_TUNE_QUERIES,
    TIMING_REQUESTS,
    AnnIndexParams,
    checked_catalog,
    confirm,
    matrix_digest,
    quality_target,
    safety_margin,
    sample,
    saved_searcher,
    spec_for,
    stage_slots,
)
from pipetune.plugins.recsys.fidelity import rows_of
from pipetune.plugins.recsys.recognize import recognize
from pipetune.plugins.recsys.threads import blas_thread_count, faiss_thread_count

# -- ANN for exact retrieval -------------------------------------------------------------------


def _infer_format(output: Any) -> str:
    if isinstance(output, tuple) and len(output) == 2:
        first, second = (np.asarray(output[0]), np.asarray(output[1]))
        if first.ndim == 2 and second.ndim == 2:
            return "faiss"
        return "scores_ids"
    if isinstance(output, list):
        return "list"
    if isinstance(output, np.ndarray):
        return "array"
    raise Rejected(
        f"unrecognized retrieval output ({type(output).__name__}): expected an array "
        "or list of ids, or a (scores, ids) pair"
    )


def _infer_metric(
    matrix: np.ndarray, queries: np.ndarray, reference: np.ndarray, stage: str
) -> str:
    """Which metric reproduces the stage's own results (plain code does not say)."""
    count = min(len(queries), 16)
    best, best_recall = "ip", -1.0
    k = reference.shape[1]
    for metric in ("ip", "l2", "cosine"):
        vectors = (
            exact_search.normalized(queries[:count]) if metric == "cosine" else queries[:count]
        )
        items = exact_search.normalized(matrix) if metric == "cosine" else matrix
        found = exact_search.top_k_rows(
            exact_search.exact_scores(items, vectors, "ip" if metric == "cosine" else metric), k
        )
        recall = float(exact_search.per_query_recall(reference[:count], found).mean())
        if recall > best_recall:
            best, best_recall = metric, recall
    if best_recall < 0.99:
        raise Rejected(
            f"stage {stage!r}: its results match no metric (inner product, L2, cosine) "
            f"exactly (best: {best} at recall {best_recall:.3f}); declare a `metric` "
            "slot or use the exact_topk block"
        )
    return best


ID = "recsys.ann_exact"


@dataclass(frozen=True)
class AnnExactParams(AnnIndexParams):
    index_kinds: list[str] | None = None
    k_prime: int | None = None
    output_format: str = "array"
    replace: str = "stage"
    slot: str | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Replace exact top-k by ANN + exact re-rank of k' candidates: every admissible index
    kind in every space the norms allow, each at its cheapest point at recall@k >= the
    target, timed one query at a time; the fastest wins, at its best faiss thread count,
    against the exact stage at its best BLAS thread count."""
    stage = pipeline.stage(proposal.stage)
    rec = recognize(stage)
    if rec is None or rec.role != "exact_topk":
        raise Rejected(f"stage {stage.name!r} is not an exact top-k retrieval stage")
    if not rec.transformable:
        raise Rejected(f"stage {stage.name!r}: {rec.why_not}")
    matrix = checked_catalog(stage, rec)
    n = matrix.shape[0]
    inputs, queries, reference, outputs = _references(stage, pipeline, context)
    where = f"stage {stage.name!r}"
    k = rec.k or reference.shape[1]
    reference = reference[:, :k]
    if k > n:
        raise ConfigError(f"{where}: k={k} is larger than the catalog ({n:,} items)")
    metric = rec.metric or _infer_metric(matrix, queries, reference, stage.name)
    output_format = (
        "array"
        if rec.source == "block"
        else ("faiss" if rec.source == "index" else _infer_format(outputs[0]))
    )
    target = quality_target(proposal, context)
    stats = spaces.norm_stats(matrix) if metric == "ip" else None
    candidates, skipped = _candidates(proposal, rec, matrix, metric, stats, context, queries, k)
    winner, chosen = _fastest(candidates, queries, reference, k, target, where)
    timing = _thread_counts(stage, inputs, winner.searcher, chosen, queries, k)
    exact_ms, chosen_ms = timing["exact_ms"], timing["ann_ms"]
    if chosen_ms >= exact_ms:
        raise Rejected(
            f"{where}: at recall@{k} {target:.2f}, {winner.spec.describe()} needs "
            f"{winner.spec.runtime_param}={chosen['runtime']} and {chosen_ms:.2f} ms a query, "
            f"exact search {exact_ms:.2f} ms (at its best thread count, "
            f"{timing['exact_blas_threads']}): ANN does not pay on this catalog"
        )
    params = {
        "index": winner.spec.to_dict(),
        "runtime": chosen["runtime"],
        "runtime_param": winner.spec.runtime_param,
        "k_prime": chosen["k_prime"],
        "k": k,
        "metric": metric,
        "target": target,
        "faiss_threads": timing["faiss_threads"],
        "faiss_batch_threads": None,
        "output_format": output_format,
        "replace": "slot" if rec.source == "index" else "stage",
        "slot": rec.slot,
        "items_digest": matrix_digest(matrix),
    }
    notes = _notes(proposal, winner, chosen, candidates, skipped, target, timing)
    notes.update(
        norms=stats,
        batches=_batch_figures(stage, winner.searcher, inputs, queries, k, context.workload),
        queries=len(queries),
        summary=selection.summary_line(
            winner.spec,
            params,
            winner.info,
            catalog=n,
            extra=f"{chosen_ms:.3f} ms vs exact {exact_ms:.2f} ms a query (BLAS on "
            f"{_threads_told(timing['exact_blas_threads'])}), recall@{k} "
            f"{chosen['recall']:.3f} on the tuning split",
        ),
    )
    tuned = Tuned(
        params=params,
        artifacts={"index": winner.relative},
        notes=notes,
        est_stage_speedup=exact_ms / chosen_ms if chosen_ms > 0 else None,
    )
    confirm(proposal, pipeline, tuned, context, target, materialize)
    context.log(f"recsys: {notes['summary']}")
    return tuned


def _thread_counts(
    stage: Stage,
    inputs: Sequence[Any],
    searcher: ann_search.AnnSearcher,
    chosen: dict[str, Any],
    queries: np.ndarray,
    k: int,
) -> dict[str, Any]:
    """The winner at its fastest faiss thread count and the exact stage at its fastest
    BLAS/faiss count, each measured one query at a time (the searcher keeps its count)."""
    searcher.runtime, searcher.k_prime = chosen["runtime"], chosen["k_prime"]
    threads, thread_ms = selection.best_threads(
        lambda q: searcher.search(q, k),
        list(queries[:TIMING_REQUESTS]),
        lambda count: selection.searcher_threads(searcher, count),
    )
    searcher.threads = threads
    exact_threads, exact_by = selection.best_threads(
        stage, inputs[: min(len(inputs), 30)], _all_threads
    )
    return {
        "faiss_threads": threads,
        "faiss_threads_ms": thread_ms,
        "exact_blas_threads": exact_threads,
        "exact_threads_ms": exact_by,
        "exact_ms": exact_by[str(exact_threads)],
        "ann_ms": thread_ms[str(threads)],
    }


def _notes(
    proposal: Proposal,
    winner: selection.Built,
    chosen: dict[str, Any],
    candidates: Sequence[tuple[selection.Built, list[int]]],
    skipped: dict[str, str],
    target: float,
    timing: dict[str, Any],
) -> dict[str, Any]:
    """What the tune step found, for the report: every candidate and its points, why the
    winner, and the thread counts measured."""
    reachable = sum(1 for built, _ in candidates if built.feasible)
    return {
        "index": winner.spec.describe(),
        "choice_reason": f"fastest at the target of {reachable} measured: {winner.why}",
        "rule_reason": proposal.evidence.get("index_reason", ""),
        "build": winner.info,
        "index_reused": winner.reused,
        "tune_recall": chosen["recall"],
        "margin": chosen["goal"] - target,
        "candidates": [built.describe() for built, _ in candidates],
        "not_tried": skipped,
        "points": [p for built, _ in candidates for p in built.points],
        "single_query_ms": {"exact": timing["exact_ms"], "ann": timing["ann_ms"]},
        "faiss_threads_ms": timing["faiss_threads_ms"],
        "exact_blas_threads": timing["exact_blas_threads"],
        "exact_threads_ms": timing["exact_threads_ms"],
    }


def _threads_told(count: int) -> str:
    return f"{count} thread{'s' if count != 1 else ''}"


def _fastest(
    candidates: Sequence[tuple[selection.Built, list[int]]],
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    target: float,
    where: str,
) -> tuple[selection.Built, dict[str, Any]]:
    """Each candidate's cheapest point at recall@k >= the target (plus its margin), all of
    them timed one query at a time, interleaved: the fastest candidate and its point."""
    for built, depths in candidates:
        selection.scan_points(
            built, queries, reference, k, lambda pq: target + safety_margin(pq), depths
        )
    reachable = [built for built, _ in candidates if built.feasible]
    if not reachable:
        best = max((p for b, _ in candidates for p in b.points), key=lambda p: p["recall"])
        tried = ", ".join(b.spec.describe() for b, _ in candidates)
        raise Rejected(
            f"{where}: no operating point of {tried} reaches recall@{k} {target:.3f} "
            f"(best {best['recall']:.3f}); exact search stays"
        )
    pairs = selection.time_feasible(reachable, list(queries[:TIMING_REQUESTS]), k)
    winner, point = min(pairs, key=lambda pair: pair[1]["ms"])
    for built, _ in candidates:
        if built is not winner:
            built.release()  # only the winner stays in memory; the others stay on disk
    return winner, point


def _references(
    stage: Stage, pipeline: Pipeline, context: TuneContext
) -> tuple[list[Any], np.ndarray, np.ndarray, list[Any]]:
    """The tuning inputs, their query vectors, the exact results (one row per query) and
    the stage's outputs: the original pipeline's when this stage makes them (the host
    computes them once for every change), else the stage run on its inputs."""
    rec = recognize(stage)
    assert rec is not None and rec.dim is not None
    all_inputs = context.stage_inputs(pipeline, stage.name)
    inputs = sample(all_inputs, MAX_EXACT_TUNE_QUERIES)
    if not inputs:
        raise Rejected("the tuning split is empty")
    where = f"stage {stage.name!r}"
    last = pipeline.stages[-1] is stage and pipeline is context.original
    if last and len(inputs) == len(all_inputs):
        outputs = context.baseline_outputs()
    else:
        outputs = [stage(item) for item in inputs]
    query_rows = [exact_search.as_queries(item, rec.dim, where)[0] for item in inputs]
    ref_rows = [rows_of(output) for output in outputs]
    for position, (q, r) in enumerate(zip(query_rows, ref_rows, strict=True)):
        if len(q) != len(r):
            raise Rejected(
                f"{where}: input #{position} holds {len(q)} queries but its output "
                f"{len(r)} rankings"
            )
    ks = {len(row) for rows in ref_rows for row in rows}
    if len(ks) != 1:
        raise Rejected(f"{where}: its outputs have different lengths ({sorted(ks)})")
    k = ks.pop()
    reference = np.stack([row[:k] for rows in ref_rows for row in rows])
    return inputs, np.concatenate(query_rows), reference, outputs


def _candidates(
    proposal: Proposal,
    rec: Any,
    matrix: np.ndarray,
    metric: str,
    stats: dict[str, float] | None,
    context: TuneContext,
    queries: np.ndarray,
    k: int,
) -> tuple[list[tuple[selection.Built, list[int]]], dict[str, str]]:
    """Every (kind, space) pair to measure, built, with the re-rank depths to scan; and the
    spaces not tried, with why."""
    n = matrix.shape[0]
    rule = spec_for(proposal, rec, matrix)
    rule = ann.IndexSpec.from_dict({**rule.to_dict(), "metric": metric, "space": "native"})
    out: list[tuple[selection.Built, list[int]]] = []
    skipped: dict[str, str] = {}
    for space, why in selection.spaces_to_try(proposal, metric, stats):
        floor: int | None = k
        if space == "normalized":
            floor, why_not = _cosine_floor(matrix, queries, k, n, context, proposal)
            if floor is None:
                skipped[space] = why_not
                continue
        for kind in selection.kinds_to_try(proposal, rule):
            spec = selection.spec_in(rule, kind, space, metric, n)
            built = selection.build(context, matrix, spec, why)
            assert floor is not None
            depths = [d for d in ann_search.rerank_depths(spec, k, n) if d >= floor] or [floor]
            out.append((built, depths))
    return out, skipped


def _cosine_floor(
    matrix: np.ndarray,
    queries: np.ndarray,
    k: int,
    n: int,
    context: TuneContext,
    proposal: Proposal,
) -> tuple[int | None, str]:
    """The shallowest re-rank depth at which cosine candidates hold the inner-product
    top-k on the tuning queries (at the target), or why the ranking does not allow them."""
    subset = queries[:64]
    reference = exact_search.top_k_rows(exact_search.exact_scores(matrix, subset, "ip"), k)
    depths = sorted({min(n, k * f) for f in (1, 2, 4, 8, 16)})
    goal = quality_target(proposal, context)
    depth, shares = spaces.cosine_depth(matrix, subset, reference, depths, goal)
    if depth is None:
        shown = ", ".join(f"{share:.3f} at k'={d:,}" for d, share in shares.items())
        return None, (
            f"the ranking does not allow cosine candidates: the cosine top-k' holds {shown} "
            f"of the inner-product top-{k} (target {goal:.3f})"
        )
    return depth, ""


@contextmanager
def _all_threads(count: int) -> Iterator[None]:
    """BLAS (numpy's matrix products) and faiss (a flat index) on ``count`` threads."""
    with blas_thread_count(count), faiss_thread_count(count):
        yield


def _batch_figures(
    stage: Stage,
    searcher: ann_search.AnnSearcher,
    inputs: Sequence[Any],
    queries: np.ndarray,
    k: int,
    workload: Any,
) -> list[dict[str, Any]]:
    """Per-query time of exact and ANN retrieval at the workload's batch sizes (and 16 for
    reference). A batch turns the exact scan into a matrix product that amortizes reading
    the catalog, so it narrows ANN's lead: the operating point is chosen on single queries
    and these figures are reported beside it."""
    sizes = {1, 16}
    sizes |= {
        len(np.atleast_2d(np.asarray(item)))
        for item in inputs[:32]
        if np.ndim(np.asarray(item)) == 2
    }
    sizes |= {c for c in getattr(workload, "concurrency", ()) if c > 1}
    figures = []
    for size in sorted(sizes):
        if size > len(queries):
            continue
        pool = queries[: max(size, 128)]  # the same queries at every size, not a warm few
        batches = [pool[i : i + size] for i in range(0, len(pool) - size + 1, size)]
        exact = (
            ann_search.time_one_at_a_time(
                lambda b: stage.fn(b, **stage_slots(stage)), batches, repeats=1
            )
            if stage.meta.get("block")
            else None
        )
        with faiss_thread_count(None):
            approx = ann_search.time_one_at_a_time(
                lambda b: searcher.search(b, k), batches, repeats=2
            )
        figures.append(
            {
                "batch": size,
                "exact_ms_per_query": None if exact is None else 1000 * exact / size,
                "ann_ms_per_query": 1000 * approx / size,
            }
        )
    return figures


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage, searcher, spec = saved_searcher(
        change, pipeline, artifacts_dir, "exact_topk", "an exact top-k stage"
    )
    notes = {"change": change.proposal, "index": spec.describe()}
    if change.params.get("replace") == "slot":
        slot = change.params["slot"]
        return pipeline.replace(stage.name, stage.with_slots(**{slot: searcher}).noted(**notes))
    new = blocks.ann_topk(
        stage.name,
        searcher,
        change.params["k"],
        output_format=change.params.get("output_format", "array"),
        kind=stage.kind,
        notes=notes,
    )
    return pipeline.replace(stage.name, new)


CHANGE = ChangeType(ID, AnnExactParams, materialize, tune, lossy=True)
