"""Tune and materialize the recsys changes.

Each change is split the DESIGN §3 way: *tune* searches the operating point on the tuning
split and builds the index as an artifact; *materialize* rebuilds the transformed pipeline
from the parameters and the saved index file (``faiss.read_index``), with no search and no
build, and never touches the user's matrix, ranker or model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.artifacts import ArtifactStore
from pipetune.core.context import TuneContext
from pipetune.core.errors import ConfigError, PipelineError, Rejected
from pipetune.core.model import Pipeline, Stage
from pipetune.core.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import ann, blocks
from pipetune.plugins.recsys.cache import TTLCache
from pipetune.plugins.recsys.features import batch_method
from pipetune.plugins.recsys.fidelity import rows_of
from pipetune.plugins.recsys.recognize import Recognized, catalog_of, recognize
from pipetune.plugins.recsys.threads import faiss_thread_count

#: Default quality target: the two-stage top-k keeps this share of the full ranking's
#: top-k; ANN retrieval keeps this recall@k against exact retrieval.
DEFAULT_TARGET = 0.95
#: At most this many tuning requests are used (the search cost grows with them).
MAX_TUNE_REQUESTS = 200
#: Requests timed one at a time per operating point.
TIMING_REQUESTS = 60
#: Default user-embedding cache settings.
DEFAULT_TTL_S = 300.0
MAX_CACHE_ENTRIES = 1_000_000


# -- shared helpers -----------------------------------------------------------------------


def matrix_digest(matrix: np.ndarray) -> str:
    """A content hash of the item matrix (guards a saved index against a changed catalog)."""
    array = np.ascontiguousarray(matrix)
    digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()[:24]


def quality_target(proposal: Proposal, context: TuneContext) -> float:
    """The proposal's target, raised to the fidelity floor when the user asked for more
    (a 1 % accuracy budget means 0.99, not 0.95)."""
    target = float(proposal.params.get("target", DEFAULT_TARGET))
    return max(target, float(context.fidelity_floor))


def _margin(per_request: np.ndarray) -> float:
    """A safety margin so the held-out split meets the target too: two standard errors of
    the per-request mean (about a 2 % chance that a held-out split of the same size falls
    below), between 0.003 and 0.03. Requests differ a lot (a user whose ranker top-k sits
    far from the retrieval neighbourhood keeps half of it), so the margin is measured, not
    fixed."""
    if len(per_request) < 2:
        return 0.03
    stderr = float(np.std(per_request, ddof=1) / math.sqrt(len(per_request)))
    return float(min(0.03, max(0.003, 2.0 * stderr)))


def _sample(values: Sequence[Any], limit: int) -> list[Any]:
    values = list(values)
    if len(values) <= limit:
        return values
    picks = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in picks]


def index_artifact(
    store: ArtifactStore, matrix: np.ndarray, spec: ann.IndexSpec, log: Callable[[str], None]
) -> tuple[Any, dict[str, Any], str, bool]:
    """Load the index for (matrix, spec, faiss version) from the artifact store, or build and
    save it. Returns (index, build info, relative path, reused)."""
    key = store.key(
        "recsys.ann_index",
        matrix,
        json.dumps(spec.to_dict(), sort_keys=True),
        f"faiss={ann.faiss_version()}",
    )
    path = store.path(key, "index.faiss")
    if path.is_file():
        log(f"recsys: reusing the saved {spec.describe()} index {store.relative(path)}")
        return ann.load_index(path), ann.load_build_info(path), store.relative(path), True
    log(f"recsys: building {spec.describe()} over {matrix.shape[0]:,} x {matrix.shape[1]}")
    index, info = ann.build_index(matrix, spec)
    ann.save_index(index, info, path)
    log(f"recsys: built in {info.seconds:.1f} s, {info.index_bytes / 2**20:.1f} MiB")
    return index, info.to_dict(), store.relative(path), False


def _load_for_change(
    change: Change, artifacts_dir: Path, matrix: np.ndarray
) -> tuple[Any, ann.IndexSpec]:
    if "index" not in change.artifacts:
        raise ConfigError(f"change {change.proposal} on stage {change.stage!r} has no saved index")
    spec = ann.IndexSpec.from_dict(change.params["index"])
    index = ann.load_index(Path(artifacts_dir) / change.artifacts["index"])
    if int(index.ntotal) != matrix.shape[0] or int(index.d) != matrix.shape[1]:
        raise ConfigError(
            f"stage {change.stage!r}: the saved index holds {index.ntotal:,} x {index.d} vectors "
            f"but the catalog is {matrix.shape[0]:,} x {matrix.shape[1]}: re-run the tune step"
        )
    expected = change.params.get("items_digest")
    if expected and matrix_digest(matrix) != expected:
        raise ConfigError(
            f"stage {change.stage!r}: the item matrix changed since the index was built "
            "(content hash differs): re-run the tune step to rebuild it"
        )
    return index, spec


def _searcher(
    index: Any, matrix: np.ndarray, spec: ann.IndexSpec, params: dict[str, Any]
) -> ann.AnnSearcher:
    return ann.AnnSearcher(
        index,
        matrix,
        spec,
        params["runtime"],
        k_prime=params.get("k_prime"),
        threads=params.get("faiss_threads", 1),
        batch_threads=params.get("faiss_batch_threads"),
    )


def _catalog(stage: Stage, rec: Recognized) -> np.ndarray:
    if rec.slot is None:
        raise Rejected(f"stage {stage.name!r}: no item matrix found in its slots")
    matrix = catalog_of(stage, rec.slot)
    ann.check_finite(matrix, f"stage {stage.name!r}, slot {rec.slot!r}")
    return matrix


def _spec_for(proposal: Proposal, rec: Recognized, matrix: np.ndarray) -> ann.IndexSpec:
    if "index" in proposal.params:
        return ann.IndexSpec.from_dict(proposal.params["index"])
    choice = ann.choose_index(
        matrix.shape[0], matrix.shape[1], rec.metric or "ip", kind=proposal.params.get("index_kind")
    )
    if choice.spec is None:
        raise Rejected(choice.reason)
    return choice.spec


def _choose_threads(
    fn: Callable[[Any], Any], inputs: Sequence[Any], searcher: ann.AnnSearcher
) -> tuple[int, dict[str, float]]:
    """Single-query latency with faiss on 1 thread and on as many as the host allows now
    (its pinned setting; all cores by default); the faster wins."""
    most = ann.faiss_threads_now() or os.cpu_count() or 1
    timings: dict[str, float] = {}
    for threads in sorted({1, most}):
        searcher.threads = threads
        timings[str(threads)] = ann.time_one_at_a_time(fn, inputs, repeats=3)
    # One thread unless more are clearly faster (10 %): a single query has nothing to split,
    # and a core left free serves the next request.
    best = "1" if timings[str(most)] > 0.9 * timings["1"] else str(most)
    searcher.threads = int(best)
    return int(best), timings


def _time_points(
    points: list[dict[str, Any]],
    make: Callable[[dict[str, Any]], Callable[[Any], Any]],
    inputs: Sequence[Any],
    rounds: int = 3,
) -> None:
    """Time each operating point one input at a time, interleaving the points round by
    round so that a burst of load on a shared machine hits them alike; sets ``point["ms"]``
    to the best round."""
    best = [math.inf] * len(points)
    for _ in range(rounds):
        for position, point in enumerate(points):
            seconds = ann.time_one_at_a_time(make(point), inputs, repeats=1)
            best[position] = min(best[position], seconds)
    for point, seconds in zip(points, best, strict=True):
        point["ms"] = 1000 * seconds


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
    sample = min(len(queries), 16)
    best, best_recall = "ip", -1.0
    k = reference.shape[1]
    for metric in ("ip", "l2", "cosine"):
        vectors = ann.normalized(queries[:sample]) if metric == "cosine" else queries[:sample]
        items = ann.normalized(matrix) if metric == "cosine" else matrix
        found = ann.top_k_rows(
            ann.exact_scores(items, vectors, "ip" if metric == "cosine" else metric), k
        )
        recall = float(ann.per_query_recall(reference[:sample], found).mean())
        if recall > best_recall:
            best, best_recall = metric, recall
    if best_recall < 0.99:
        raise Rejected(
            f"stage {stage!r}: its results match no metric (inner product, L2, cosine) "
            f"exactly (best: {best} at recall {best_recall:.3f}); declare a `metric` "
            "slot or use the exact_topk block"
        )
    return best


def tune_ann_exact(
    proposal: Proposal, pipeline: Pipeline, workload: Any, context: TuneContext
) -> Tuned:
    """Replace exact top-k by ANN + exact re-rank of k' candidates: the cheapest operating
    point, one query at a time, at recall@k >= the target."""
    stage = pipeline.stage(proposal.stage)
    rec = recognize(stage)
    if rec is None or rec.role != "exact_topk":
        raise Rejected(f"stage {stage.name!r} is not an exact top-k retrieval stage")
    if not rec.transformable:
        raise Rejected(f"stage {stage.name!r}: {rec.why_not}")
    matrix = _catalog(stage, rec)
    n, dim = matrix.shape
    inputs = _sample(context.stage_inputs(pipeline, stage.name), MAX_TUNE_REQUESTS)
    if not inputs:
        raise Rejected("the tuning split is empty")
    where = f"stage {stage.name!r}"
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
    spec = _spec_for(proposal, rec, matrix)
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
            margin = _margin(per_query)
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

    _time_points(feasible, searching, singles)
    chosen = min(feasible, key=lambda p: p["ms"])
    searcher.runtime, searcher.k_prime = chosen["runtime"], chosen["k_prime"]
    threads, thread_ms = _choose_threads(lambda q: searcher.search(q, k), singles, searcher)
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
    _confirm(proposal, pipeline, tuned, context, target)
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
            ann.time_one_at_a_time(lambda b: stage.fn(b, **_stage_slots(stage)), batches, repeats=1)
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


def _stage_slots(stage: Stage) -> dict[str, Any]:
    return {name: stage.slots[name] for name in stage._fn_slots}  # type: ignore[attr-defined]


def materialize_ann_exact(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    rec = recognize(stage)
    if rec is None or rec.role != "exact_topk" or rec.slot is None:
        raise ConfigError(
            f"stage {change.stage!r} is no longer an exact top-k stage; the "
            "recipe does not fit this pipeline"
        )
    matrix = catalog_of(stage, rec.slot)
    index, spec = _load_for_change(change, artifacts_dir, matrix)
    searcher = _searcher(index, matrix, spec, dict(change.params))
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


# -- the two-stage architecture -----------------------------------------------------------------


@dataclass
class _TwoStageEval:
    """Evaluates two-stage recall at (N, runtime) on the tuning requests."""

    stage: Stage
    requests: list[Any]
    queries: np.ndarray
    reference: list[np.ndarray]
    searcher: ann.AnnSearcher
    k: int

    def rank(self, request: Any, ids: np.ndarray) -> np.ndarray:
        result = self.stage.fn(request, candidates=ids, **_stage_slots(self.stage))
        return rows_of(result)[0]

    def recall_with(self, candidates: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty(len(self.requests))
        for i, (request, ids) in enumerate(zip(self.requests, candidates, strict=True)):
            got = self.rank(request, ids)
            ref = self.reference[i]
            out[i] = len(set(ref.tolist()) & set(got[: len(ref)].tolist())) / len(ref)
        return out

    def ann_candidates(self, n: int, runtime: int) -> list[np.ndarray]:
        _, ids = self.searcher.candidates(self.queries, n, runtime)
        return [row[row >= 0] for row in ids]


def tune_two_stage(
    proposal: Proposal, pipeline: Pipeline, workload: Any, context: TuneContext
) -> Tuned:
    """Insert ANN retrieval of N candidates before a ranker that scores every item; tune N
    and the index's runtime parameter to the cheapest point keeping the target share of the
    full ranking's top-k."""
    stage = pipeline.stage(proposal.stage)
    rec = recognize(stage)
    if rec is None or rec.role != "full_ranking":
        raise Rejected(f"stage {stage.name!r} is not a full-catalog ranking stage")
    if not rec.transformable:
        raise Rejected(f"stage {stage.name!r}: {rec.why_not}")
    matrix = _catalog(stage, rec)
    n, dim = matrix.shape
    where = f"stage {stage.name!r}"
    query_fn = stage.slots.get("query") or blocks.default_query
    all_inputs = context.stage_inputs(pipeline, stage.name)
    picks = set(_sample(range(len(all_inputs)), MAX_TUNE_REQUESTS))
    requests = [all_inputs[i] for i in sorted(picks)]
    if not requests:
        raise Rejected("the tuning split is empty")
    try:
        query_rows = [ann.as_queries(query_fn(r), dim, where) for r in requests]
    except PipelineError as exc:
        raise Rejected(
            f"{exc}; declare a `query` slot: a function returning the request's retrieval vector"
        ) from None
    if any(not single for _, single in query_rows):
        raise Rejected(f"{where}: one retrieval vector per request is needed")
    queries = np.concatenate([q for q, _ in query_rows])

    # The full ranking's top-k: reuse the original pipeline's outputs when this stage makes
    # them (the ranker over the whole catalog is the expensive part of tuning).
    last = pipeline.stages[-1] is stage and pipeline is context.original
    started = time.perf_counter()
    if last and len(requests) == len(all_inputs):
        reference = [rows_of(o)[0] for o in context.baseline_outputs()]
        full_ms = 1000 * ann.time_one_at_a_time(stage, requests[:3], repeats=1)
    else:
        reference = [rows_of(stage(r))[0] for r in requests]
        full_ms = 1000 * (time.perf_counter() - started) / len(requests)
    k = rec.k or len(reference[0])
    if any(len(r) != k for r in reference):
        raise Rejected(f"{where}: its rankings have different lengths")
    metric = rec.metric or "ip"
    spec = _spec_for(proposal, rec, matrix)
    if spec.metric != metric:
        spec = ann.IndexSpec.from_dict({**spec.to_dict(), "metric": metric})
    target = quality_target(proposal, context)
    index, info, relative, reused = index_artifact(context.artifacts, matrix, spec, context.log)
    searcher = ann.AnnSearcher(index, matrix, spec, ann.runtime_values(spec, k)[0], threads=1)
    evaluate = _TwoStageEval(stage, requests, queries, reference, searcher, k)

    # 1. The smallest N that meets the target with *exact* retrieval: the floor any ANN
    #    operating point starts from.
    n_max = min(n, max(32 * k, 32768))
    exact_top = _exact_top(matrix, queries, n_max, metric)
    curve: list[dict[str, Any]] = []
    margin = 0.01

    def exact_recall(size: int) -> float:
        nonlocal margin
        per_request = evaluate.recall_with([row[:size] for row in exact_top])
        margin = _margin(per_request)
        value = float(per_request.mean())
        curve.append({"n_candidates": size, "retrieval": "exact", "recall": value})
        return value

    size = min(n_max, 2 * k)
    while exact_recall(size) < target + margin and size < n_max:
        size = min(n_max, size * 2)
    if curve[-1]["recall"] < target + margin:
        raise Rejected(
            f"{where}: even {size:,} exact candidates keep only "
            f"{curve[-1]['recall']:.3f} of the full ranking's top-{k} "
            f"(target {target:.3f}): the ranker and the retrieval embeddings "
            "disagree too much for a two-stage architecture"
        )
    low, high = max(k, size // 2), size
    while high - low > max(8, high // 16):
        middle = (low + high) // 2
        if exact_recall(middle) >= target + margin:
            high = middle
        else:
            low = middle
    n_floor = high

    # 2. For a few N at and above the floor, the smallest runtime value meeting the target.
    values = ann.runtime_values(spec, k)
    feasible: list[dict[str, Any]] = []
    for factor in (1.0, 1.25, 1.5, 2.0):
        size = min(n, math.ceil(n_floor * factor))
        # HNSW searches at least N deep (faiss uses max(efSearch, k)): its options start at N.
        options = (
            [v for v in ann.runtime_values(spec, size) if v <= 4 * size]
            if spec.kind == "hnsw"
            else values
        )
        found = _lowest_meeting(
            options, lambda v, s=size: _ann_recall(evaluate, s, v, curve), target + margin
        )
        if found is not None:
            feasible.append({"n_candidates": size, "runtime": found[0], "recall": found[1]})
    if not feasible:
        raise Rejected(
            f"{where}: no operating point of {spec.describe()} reaches "
            f"{target:.3f} of the full ranking's top-{k}"
        )

    # 3. Time each feasible point one request at a time (ANN + ranking) and keep the cheapest.
    def serving(point: dict[str, Any]) -> Callable[[Any], Any]:
        def serve(request: Any) -> np.ndarray:
            searcher.runtime = point["runtime"]
            ids = _one_candidates(searcher, query_fn(request), point["n_candidates"])
            return evaluate.rank(request, ids)

        return serve

    _time_points(feasible, serving, requests[:TIMING_REQUESTS])
    chosen = min(feasible, key=lambda p: p["ms"])
    if chosen["ms"] >= full_ms:
        raise Rejected(
            f"{where}: the cheapest two-stage point (N={chosen['n_candidates']:,}) takes "
            f"{chosen['ms']:.2f} ms a request, the full ranking {full_ms:.2f} ms: no gain"
        )
    searcher.runtime = chosen["runtime"]
    single_queries = [queries[i : i + 1] for i in range(min(len(queries), TIMING_REQUESTS))]
    threads, thread_ms = _choose_threads(
        lambda q: searcher.candidates(q, chosen["n_candidates"]), single_queries, searcher
    )
    params = {
        "index": spec.to_dict(),
        "runtime": chosen["runtime"],
        "runtime_param": spec.runtime_param,
        "n_candidates": chosen["n_candidates"],
        "k": k,
        "metric": metric,
        "target": target,
        "faiss_threads": threads,
        "faiss_batch_threads": None,
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
            "n_floor_exact_retrieval": n_floor,
            "curve": curve,
            "feasible": feasible,
            "per_request_ms": {"full_ranking": full_ms, "two_stage": chosen["ms"]},
            "faiss_threads_ms": {t: 1000 * v for t, v in thread_ms.items()},
            "requests": len(requests),
        },
        est_stage_speedup=full_ms / chosen["ms"] if chosen["ms"] > 0 else None,
    )
    _confirm(proposal, pipeline, tuned, context, target)
    context.log(
        f"recsys: two-stage N={chosen['n_candidates']} {spec.runtime_param}="
        f"{chosen['runtime']}: keeps {chosen['recall']:.3f} of the top-{k}, "
        f"{chosen['ms']:.2f} ms vs {full_ms:.1f} ms per request"
    )
    return tuned


def _one_candidates(searcher: ann.AnnSearcher, query: Any, size: int) -> np.ndarray:
    queries, _ = ann.as_queries(query, searcher.d, "two-stage tuning")
    _, ids = searcher.candidates(queries, size)
    return ids[0][ids[0] >= 0]


def _ann_recall(
    evaluate: _TwoStageEval, size: int, runtime: int, curve: list[dict[str, Any]]
) -> float:
    value = float(evaluate.recall_with(evaluate.ann_candidates(size, runtime)).mean())
    curve.append({"n_candidates": size, "retrieval": "ann", "runtime": runtime, "recall": value})
    return value


def _lowest_meeting(
    options: Sequence[int], recall: Callable[[int], float], goal: float
) -> tuple[int, float] | None:
    """The smallest option whose recall meets ``goal`` (recall grows with the option):
    binary search over the sorted options."""
    low, high = 0, len(options) - 1
    top = recall(options[high])
    if top < goal:
        return None
    best = (options[high], top)
    while low < high:
        middle = (low + high) // 2
        value = recall(options[middle])
        if value >= goal:
            best = (options[middle], value)
            high = middle
        else:
            low = middle + 1
    return best


def _exact_top(matrix: np.ndarray, queries: np.ndarray, size: int, metric: str) -> np.ndarray:
    rows = []
    for start in range(0, len(queries), 16):
        chunk = queries[start : start + 16]
        if metric == "cosine":
            scores = ann.exact_scores(ann.normalized(matrix), ann.normalized(chunk), "ip")
        else:
            scores = ann.exact_scores(matrix, chunk, metric)
        rows.append(ann.top_k_rows(scores, size))
    return np.concatenate(rows)


def materialize_two_stage(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage = pipeline.stage(change.stage)
    rec = recognize(stage)
    if rec is None or rec.role != "full_ranking" or rec.slot is None:
        raise ConfigError(
            f"stage {change.stage!r} is no longer a full-catalog ranking stage; the "
            "recipe does not fit this pipeline"
        )
    matrix = catalog_of(stage, rec.slot)
    index, spec = _load_for_change(change, artifacts_dir, matrix)
    searcher = _searcher(index, matrix, spec, dict(change.params))
    notes = {"change": change.proposal}
    retrieve = blocks.ann_candidates(
        f"{stage.name}.retrieve",
        searcher,
        stage.slots.get("query") or blocks.default_query,
        change.params["n_candidates"],
        notes={**notes, "index": spec.describe()},
    )
    return pipeline.replace(stage.name, [retrieve, blocks.candidate_ranking(stage, notes=notes)])


# -- shared confirmation --------------------------------------------------------------------------


def _confirm(
    proposal: Proposal, pipeline: Pipeline, tuned: Tuned, context: TuneContext, target: float
) -> None:
    """Check the tuned change end to end on the tuning split against the original pipeline,
    through the host's fidelity (the validator confirms on the held-out split)."""
    change = Change.from_proposal(proposal, tuned)
    candidate = materialize(change, pipeline, context.artifacts.root)
    fidelity = context.fidelity(context.outputs(candidate))
    if fidelity.value < target:
        raise Rejected(
            f"the tuned change keeps {fidelity.metric} {fidelity.value:.3f} on the "
            f"tuning split, under the target {target:.3f}"
        )


# -- user-embedding cache ----------------------------------------------------------------------


def tune_embedding_cache(
    proposal: Proposal, pipeline: Pipeline, workload: Any, context: TuneContext
) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    if stage.meta.get("block") != blocks.EMBEDDING:
        raise Rejected(f"stage {stage.name!r} is not an embedding block with a declared key")
    inputs = context.stage_inputs(pipeline, stage.name)
    keys = [stage.slots["key"](item) for item in inputs]
    distinct = len(set(keys))
    repeat = 1 - distinct / len(keys) if keys else 0.0
    if repeat < 0.05:
        raise Rejected(
            f"only {repeat:.1%} of the tuning requests repeat a user: a cache would not pay"
        )
    ttl_s = float(proposal.params.get("ttl_s", DEFAULT_TTL_S))
    maxsize = int(
        proposal.params.get("maxsize") or min(MAX_CACHE_ENTRIES, max(10_000, 4 * distinct))
    )
    entry_bytes = _entry_bytes(stage, inputs[0]) if inputs else None
    tuned = Tuned(
        params={"ttl_s": ttl_s, "maxsize": maxsize},
        notes={
            "repeat_share": repeat,
            "distinct_users": distinct,
            "requests": len(keys),
            "entry_bytes": entry_bytes,
            "max_memory_bytes": None if entry_bytes is None else entry_bytes * maxsize,
        },
        est_stage_speedup=1 / max(1 - repeat, 1e-3),
    )
    change = Change.from_proposal(proposal, tuned)
    candidate = materialize(change, pipeline, context.artifacts.root)
    # A cached embedding is stale when the request carries more than the user (a history
    # that moved on): measure what that costs, and refuse if it exceeds the budget.
    fidelity = context.fidelity(context.outputs(candidate))
    if fidelity.value < context.fidelity_floor:
        raise Rejected(
            f"with the cache, {fidelity.metric} falls to {fidelity.value:.3f} (floor "
            f"{context.fidelity_floor:.3f}): the embedding depends on more than the user key"
        )
    return tuned.evolve(notes={**tuned.notes, "tune_fidelity": fidelity.to_dict()})


def _entry_bytes(stage: Stage, item: Any) -> int | None:
    try:
        vector = stage.slots["encode"](item, stage.slots["model"])
    except Exception:
        return None
    nbytes = getattr(vector, "nbytes", None)
    if nbytes is None and hasattr(vector, "element_size"):
        nbytes = vector.element_size() * vector.nelement()
    return int(nbytes) if nbytes is not None else None


def materialize_embedding_cache(change: Change, pipeline: Pipeline) -> Pipeline:
    stage = pipeline.stage(change.stage)
    cache = TTLCache(int(change.params["maxsize"]), float(change.params["ttl_s"]))
    return pipeline.replace(
        stage.name,
        stage.with_slots(cache=cache).noted(
            change=change.proposal, cache={"maxsize": cache.maxsize, "ttl_s": cache.ttl_s}
        ),
    )


# -- batched feature reads ----------------------------------------------------------------------


def tune_batched_reads(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    stage = pipeline.stage(proposal.stage)
    if stage.meta.get("block") != blocks.FEATURE_LOOKUP:
        raise Rejected(f"stage {stage.name!r} is not a feature_lookup block")
    store = stage.slots["store"]
    method = batch_method(store)
    if method is None:
        raise Rejected(
            f"the store in stage {stage.name!r} ({type(store).__name__}) has no batch read method"
        )
    inputs = _sample(context.stage_inputs(pipeline, stage.name), 16)
    batched = stage.with_slots(batched=True)
    for position, item in enumerate(inputs):
        one, many = stage(item), batched(item)
        if not _same_features(one, many):
            raise Rejected(
                f"stage {stage.name!r}: {type(store).__name__}.{method} returns "
                f"different values than get() on tuning input #{position}"
            )
    return Tuned(
        params={"batched": True, "method": method}, est_stage_speedup=proposal.est_stage_speedup
    )


def _same_features(a: Any, b: Any) -> bool:
    from pipetune.plugins.generic.fidelity import same

    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_features(a[key], b[key]) for key in a)
    return same(a, b)


def materialize_batched_reads(change: Change, pipeline: Pipeline) -> Pipeline:
    stage = pipeline.stage(change.stage)
    return pipeline.replace(
        stage.name, stage.with_slots(batched=True).noted(change=change.proposal)
    )


# -- dispatch ----------------------------------------------------------------------------

TUNERS = {
    "recsys.ann_two_stage": "two_stage",
    "recsys.ann_exact": "ann_exact",
    "recsys.user_embedding_cache": "cache",
    "recsys.batched_feature_reads": "batched",
}


def tune(proposal: Proposal, pipeline: Pipeline, workload: Any, context: TuneContext) -> Tuned:
    kind = TUNERS.get(proposal.id)
    if kind == "two_stage":
        return tune_two_stage(proposal, pipeline, workload, context)
    if kind == "ann_exact":
        return tune_ann_exact(proposal, pipeline, workload, context)
    if kind == "cache":
        return tune_embedding_cache(proposal, pipeline, workload, context)
    if kind == "batched":
        return tune_batched_reads(proposal, pipeline, context)
    raise Rejected(f"the recsys plugin does not know proposal {proposal.id!r}")


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    kind = TUNERS.get(change.proposal)
    if kind == "two_stage":
        return materialize_two_stage(change, pipeline, artifacts_dir)
    if kind == "ann_exact":
        return materialize_ann_exact(change, pipeline, artifacts_dir)
    if kind == "cache":
        return materialize_embedding_cache(change, pipeline)
    if kind == "batched":
        return materialize_batched_reads(change, pipeline)
    raise ConfigError(f"the recsys plugin does not know change {change.proposal!r}")
