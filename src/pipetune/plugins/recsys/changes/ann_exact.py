"""``recsys.ann_exact``: ANN + exact re-rank of k' candidates instead of exact top-k,
tuned to the cheapest operating point, one query at a time, at recall@k >= the target."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import ConfigError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import ann, blocks
from pipetune.plugins.recsys.changes.common import (
    DEFAULT_TARGET,
    MAX_TUNE_REQUESTS,
    TIMING_REQUESTS,
    checked_catalog,
    choose_threads,
    confirm,
    index_artifact,
    load_for_change,
    matrix_digest,
    quality_target,
    safety_margin,
    sample,
    searcher_for,
    spec_for,
    stage_slots,
    time_points,
)
from pipetune.plugins.recsys.fidelity import rows_of
from pipetune.plugins.recsys.recognize import catalog_of, recognize
from pipetune.plugins.recsys.threads import faiss_thread_count

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
        vectors = ann.normalized(queries[:count]) if metric == "cosine" else queries[:count]
        items = ann.normalized(matrix) if metric == "cosine" else matrix
        found = ann.top_k_rows(
            ann.exact_scores(items, vectors, "ip" if metric == "cosine" else metric), k
        )
        recall = float(ann.per_query_recall(reference[:count], found).mean())
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
class AnnExactParams(ChangeParams):
    index: dict[str, Any] | None = None
    index_kind: str | None = None
    target: float = DEFAULT_TARGET
    runtime: Any = None
    runtime_param: str | None = None
    k_prime: int | None = None
    k: int | None = None
    metric: str | None = None
    faiss_threads: int = 1
    faiss_batch_threads: int | None = None
    output_format: str = "array"
    replace: str = "stage"
    slot: str | None = None
    items_digest: str | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    workload = context.workload
    """Replace exact top-k by ANN + exact re-rank of k' candidates: the cheapest operating
    point, one query at a time, at recall@k >= the target."""
    stage = pipeline.stage(proposal.stage)
    rec = recognize(stage)
    if rec is None or rec.role != "exact_topk":
        raise Rejected(f"stage {stage.name!r} is not an exact top-k retrieval stage")
    if not rec.transformable:
        raise Rejected(f"stage {stage.name!r}: {rec.why_not}")
    matrix = checked_catalog(stage, rec)
    n, dim = matrix.shape
    all_inputs = context.stage_inputs(pipeline, stage.name)
    inputs = sample(all_inputs, MAX_TUNE_REQUESTS)
    if not inputs:
        raise Rejected("the tuning split is empty")
    where = f"stage {stage.name!r}"
    # The exact results: the original pipeline's outputs when this stage makes them (the
    # host computes them once for every change), else the stage run on its inputs.
    last = pipeline.stages[-1] is stage and pipeline is context.original
    if last and len(inputs) == len(all_inputs):
        outputs = context.baseline_outputs()
    else:
        outputs = [stage(item) for item in inputs]
    query_rows = [ann.as_queries(item, dim, where)[0] for item in inputs]
    ref_rows = [rows_of(output) for output in outputs]
    for position, (q, r) in enumerate(zip(query_rows, ref_rows, strict=True)):
        if len(q) != len(r):
            raise Rejected(
                f"{where}: input #{position} holds {len(q)} queries but its output "
                f"{len(r)} rankings"
            )
    queries = np.concatenate(query_rows)
    ks = {len(row) for rows in ref_rows for row in rows}
    if len(ks) != 1:
        raise Rejected(f"{where}: its outputs have different lengths ({sorted(ks)})")
    k = rec.k or ks.pop()
    reference = np.stack([row[:k] for rows in ref_rows for row in rows])
    if k > n:
        raise ConfigError(f"{where}: k={k} is larger than the catalog ({n:,} items)")
    metric = rec.metric or _infer_metric(matrix, queries, reference, stage.name)
    spec = spec_for(proposal, rec, matrix)
    if spec.metric != metric:
        spec = ann.IndexSpec.from_dict({**spec.to_dict(), "metric": metric})
    output_format = (
        "array"
        if rec.source == "block"
        else ("faiss" if rec.source == "index" else _infer_format(outputs[0]))
    )
    target = quality_target(proposal, context)

    index, info, relative, reused = index_artifact(context.artifacts, matrix, spec, context.log)
    searcher = ann.AnnSearcher(index, matrix, spec, ann.runtime_values(spec, k)[0], threads=1)

    # 1. Recall of every (k', runtime) point needed, measured in batch (recall does not
    #    depend on batching), stopping at the first runtime value that meets the target.
    points: list[dict[str, Any]] = []
    feasible: list[dict[str, Any]] = []
    margin = 0.003
    for depth in ann.rerank_depths(spec, k, n):
        for value in ann.runtime_values(spec, k):
            if spec.kind == "hnsw" and value < depth:
                continue
            _, found = searcher.search(queries, k, runtime=value, k_prime=depth)
            per_query = ann.per_query_recall(reference, found)
            recall = float(per_query.mean())
            point = {"k_prime": depth, "runtime": value, "recall": recall}
            points.append(point)
            margin = safety_margin(per_query)
            if recall >= target + margin:
                feasible.append(point)
                break
    if not feasible:
        best = max(points, key=lambda p: p["recall"])
        raise Rejected(
            f"{where}: no operating point of {spec.describe()} reaches recall@{k} "
            f"{target:.3f} (best {best['recall']:.3f}); exact search stays"
        )

    # 2. Time the feasible points one query at a time (serving mode) and keep the cheapest.
    singles = list(queries[:TIMING_REQUESTS])

    def searching(point: dict[str, Any]) -> Callable[[Any], Any]:
        def search(query: np.ndarray) -> Any:
            return searcher.search(query, k, runtime=point["runtime"], k_prime=point["k_prime"])

        return search

    time_points(feasible, searching, singles)
    chosen = min(feasible, key=lambda p: p["ms"])
    searcher.runtime, searcher.k_prime = chosen["runtime"], chosen["k_prime"]
    threads, thread_ms = choose_threads(lambda q: searcher.search(q, k), singles, searcher)
    exact_ms = 1000 * ann.time_one_at_a_time(stage, inputs[: min(len(inputs), 30)], repeats=2)
    chosen_ms = 1000 * thread_ms[str(threads)]
    if chosen_ms >= exact_ms:
        raise Rejected(
            f"{where}: at recall@{k} {target:.2f}, {spec.describe()} needs "
            f"{spec.runtime_param}={chosen['runtime']} and {chosen_ms:.2f} ms a query, exact "
            f"search {exact_ms:.2f} ms: ANN does not pay on this catalog"
        )
    batches = _batch_figures(stage, searcher, inputs, queries, k, workload)

    params = {
        "index": spec.to_dict(),
        "runtime": chosen["runtime"],
        "runtime_param": spec.runtime_param,
        "k_prime": chosen["k_prime"],
        "k": k,
        "metric": metric,
        "target": target,
        "faiss_threads": threads,
        "faiss_batch_threads": None,
        "output_format": output_format,
        "replace": "slot" if rec.source == "index" else "stage",
        "slot": rec.slot,
        "items_digest": matrix_digest(matrix),
    }
    tuned = Tuned(
        params=params,
        artifacts={"index": relative},
        notes={
            "index": spec.describe(),
            "choice_reason": proposal.evidence.get("index_reason", ""),
            "build": info,
            "index_reused": reused,
            "tune_recall": chosen["recall"],
            "margin": margin,
            "points": points,
            "single_query_ms": {"exact": exact_ms, "ann": chosen_ms},
            "faiss_threads_ms": {t: 1000 * v for t, v in thread_ms.items()},
            "batches": batches,
            "queries": len(queries),
        },
        est_stage_speedup=exact_ms / chosen_ms if chosen_ms > 0 else None,
    )
    confirm(proposal, pipeline, tuned, context, target, materialize)
    context.log(
        f"recsys: {spec.describe()} {spec.runtime_param}={chosen['runtime']} "
        f"k'={chosen['k_prime']}: recall@{k} {chosen['recall']:.3f}, "
        f"{chosen_ms:.3f} ms vs exact {exact_ms:.2f} ms per query"
    )
    return tuned


def _batch_figures(
    stage: Stage,
    searcher: ann.AnnSearcher,
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
            ann.time_one_at_a_time(lambda b: stage.fn(b, **stage_slots(stage)), batches, repeats=1)
            if stage.meta.get("block")
            else None
        )
        with faiss_thread_count(None):
            approx = ann.time_one_at_a_time(lambda b: searcher.search(b, k), batches, repeats=2)
        figures.append(
            {
                "batch": size,
                "exact_ms_per_query": None if exact is None else 1000 * exact / size,
                "ann_ms_per_query": 1000 * approx / size,
            }
        )
    return figures


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    rec = recognize(stage)
    if rec is None or rec.role != "exact_topk" or rec.slot is None:
        raise ConfigError(
            f"stage {change.stage!r} is no longer an exact top-k stage; the "
            "recipe does not fit this pipeline"
        )
    matrix = catalog_of(stage, rec.slot)
    index, spec = load_for_change(change, artifacts_dir, matrix)
    searcher = searcher_for(index, matrix, spec, dict(change.params))
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
