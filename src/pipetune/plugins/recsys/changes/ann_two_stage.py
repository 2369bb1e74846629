"""``recsys.ann_two_stage``: ANN retrieval of N candidates in front of a ranker that scored
every catalog item; N and the index's runtime parameter tuned to the cheapest point keeping
the target share of the full ranking's top-k."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import ann, ann_search, blocks, exact_search, selection, spaces
from pipetune.plugins.recsys.changes import common
from pipetune.plugins.recsys.fidelity import rows_of
from pipetune.plugins.recsys.recognize import Recognized, recognize

# -- the two-stage architecture -----------------------------------------------------------------


@dataclass
class _TwoStageEval:
    """Evaluates two-stage recall at (N, runtime) on the tuning requests."""

    stage: Stage
    requests: list[Any]
    queries: np.ndarray
    reference: list[np.ndarray]
    k: int
    searcher: ann_search.AnnSearcher | None = None

    def rank(self, request: Any, ids: np.ndarray) -> np.ndarray:
        result = self.stage.fn(request, candidates=ids, **common.stage_slots(self.stage))
        return rows_of(result)[0]

    def recall_with(self, candidates: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty(len(self.requests))
        for i, (request, ids) in enumerate(zip(self.requests, candidates, strict=True)):
            got = self.rank(request, ids)
            ref = self.reference[i]
            out[i] = len(set(ref.tolist()) & set(got[: len(ref)].tolist())) / len(ref)
        return out

    def ann_candidates(self, n: int, runtime: int) -> list[np.ndarray]:
        assert self.searcher is not None
        _, ids = self.searcher.candidates(self.queries, n, runtime)
        return [row[row >= 0] for row in ids]


ID = "recsys.ann_two_stage"


@dataclass(frozen=True)
class AnnTwoStageParams(common.AnnIndexParams):
    n_candidates: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Insert ANN retrieval of N candidates before a ranker that scores every item; tune N
    and the index's runtime parameter to the cheapest point keeping the target share of the
    full ranking's top-k."""
    stage = pipeline.stage(proposal.stage)
    rec = _full_ranking(stage)
    matrix = common.checked_catalog(stage, rec)
    where = f"stage {stage.name!r}"
    query_fn = stage.slots.get("query") or blocks.default_query
    requests, queries, reference, full_ms = _tuning_requests(
        stage, pipeline, context, matrix.shape[1]
    )
    k = _ranking_depth(rec, reference, where)
    metric = rec.metric or "ip"
    target = common.quality_target(proposal, context)
    evaluate = _TwoStageEval(stage, requests, queries, reference, k)
    # 1-2. The floor for N under exact retrieval, then the index and its feasible points.
    found = _search(proposal, context, rec, matrix, evaluate, metric, target, where)
    # 3. Time each feasible point one request at a time (ANN + ranking), keep the cheapest.
    chosen = _cheapest(found.feasible, evaluate, query_fn, requests)
    if chosen["ms"] >= full_ms:
        raise Rejected(
            f"{where}: the cheapest two-stage point (N={chosen['n_candidates']:,}) takes "
            f"{chosen['ms']:.2f} ms a request, the full ranking {full_ms:.2f} ms: no gain"
        )
    searcher = found.built.searcher
    searcher.runtime = chosen["runtime"]
    threads, thread_ms = _best_threads(searcher, chosen["n_candidates"], queries)
    searcher.threads = threads
    params = {
        "index": found.built.spec.to_dict(),
        "runtime": chosen["runtime"],
        "runtime_param": found.built.spec.runtime_param,
        "n_candidates": chosen["n_candidates"],
        "k": k,
        "metric": metric,
        "target": target,
        "faiss_threads": threads,
        "faiss_batch_threads": None,
        "items_digest": common.matrix_digest(matrix),
    }
    tuned = _tuned(proposal, found, chosen, params, matrix.shape[0], full_ms, thread_ms)
    common.confirm(proposal, pipeline, tuned, context, target, materialize)
    context.log(f"recsys: two-stage {tuned.notes['summary']}")
    return tuned


def _full_ranking(stage: Stage) -> Recognized:
    """The stage's recognition, when it is a full-catalog ranking stage the change can
    transform (Rejected, with the reason, otherwise)."""
    rec = recognize(stage)
    if rec is None or rec.role != "full_ranking":
        raise Rejected(f"stage {stage.name!r} is not a full-catalog ranking stage")
    if not rec.transformable:
        raise Rejected(f"stage {stage.name!r}: {rec.why_not}")
    return rec


def _ranking_depth(rec: Recognized, reference: list[np.ndarray], where: str) -> int:
    """The k of the full ranking's top-k: the recognized one, else the length of the
    reference rankings (which must all have the same length)."""
    k = rec.k or len(reference[0])
    if any(len(r) != k for r in reference):
        raise Rejected(f"{where}: its rankings have different lengths")
    return k


@dataclass
class _Search:
    """What the search for two-stage operating points found: the kept index and its
    feasible (N, runtime) points, with the record of how it got there and over how many
    tuning requests (for the notes)."""

    built: selection.Built
    feasible: list[dict[str, Any]]
    curve: list[dict[str, Any]]
    n_floor: int
    margin: float
    switched: str
    space_notes: dict[str, Any]
    requests: int


def _search(
    proposal: Proposal,
    context: TuneContext,
    rec: Recognized,
    matrix: np.ndarray,
    evaluate: _TwoStageEval,
    metric: str,
    target: float,
    where: str,
) -> _Search:
    """Steps 1 and 2 of tuning: the smallest N meeting the target with exact retrieval,
    the index chosen for that depth (one per space, fastest first), and the first index
    whose (N, runtime) points reach the target; Rejected when none does."""
    n, k = matrix.shape[0], evaluate.k
    # 1. The smallest N that meets the target with *exact* retrieval: the floor any ANN
    #    operating point starts from (and what the index is chosen for).
    exact_top = _exact_top(matrix, evaluate.queries, min(n, max(32 * k, 32768)), metric)
    curve: list[dict[str, Any]] = []
    n_floor, margin = _n_floor(evaluate, exact_top, target, curve, where)

    spec, switched = _spec_for_depth(proposal, rec, matrix, n_floor)
    spec = ann.IndexSpec.from_dict({**spec.to_dict(), "metric": metric})
    ordered, space_notes = _rank_spaces(
        proposal, context, matrix, spec, evaluate.queries, exact_top[:, :n_floor], target
    )
    # 2. For a few N at and above the floor, the smallest runtime value meeting the target,
    #    on the fastest space's index (the next one when it cannot reach the target).
    built, feasible = _first_reaching(ordered, evaluate, n_floor, n, target + margin, curve)
    if built is None:
        raise Rejected(
            f"{where}: no operating point of {', '.join(b.spec.describe() for b in ordered)} "
            f"reaches {target:.3f} of the full ranking's top-{k}"
        )
    return _Search(
        built, feasible, curve, n_floor, margin, switched, space_notes, len(evaluate.requests)
    )


def _best_threads(
    searcher: ann_search.AnnSearcher, n_candidates: int, queries: np.ndarray
) -> tuple[int, dict[str, float]]:
    """The faiss thread count retrieving ``n_candidates`` fastest one query at a time, and
    the time measured at each count."""
    return selection.best_threads(
        lambda q: searcher.candidates(q, n_candidates),
        [queries[i : i + 1] for i in range(min(len(queries), common.TIMING_REQUESTS))],
        lambda count: selection.searcher_threads(searcher, count),
    )


def _tuned(
    proposal: Proposal,
    found: _Search,
    chosen: dict[str, Any],
    params: dict[str, Any],
    catalog: int,
    full_ms: float,
    thread_ms: dict[str, float],
) -> Tuned:
    """The tune result: the chosen point's parameters, the kept index as the artifact, and
    notes recording the search (curve, feasible points, timings) and its summary line."""
    spec, built, k = found.built.spec, found.built, params["k"]
    summary = selection.summary_line(
        spec,
        params,
        built.info,
        catalog=catalog,
        extra=f"{chosen['ms']:.2f} ms vs {full_ms:.1f} ms a request (full ranking), keeps "
        f"{chosen['recall']:.3f} of the top-{k} on tuning",
    )
    return Tuned(
        params=params,
        artifacts={"index": built.relative},
        notes={
            "summary": summary,
            "index": spec.describe(),
            "choice_reason": found.switched or proposal.evidence.get("index_reason", ""),
            **found.space_notes,
            "build": built.info,
            "index_reused": built.reused,
            "tune_recall": chosen["recall"],
            "margin": found.margin,
            "n_floor_exact_retrieval": found.n_floor,
            "curve": found.curve,
            "feasible": found.feasible,
            "per_request_ms": {"full_ranking": full_ms, "two_stage": chosen["ms"]},
            "faiss_threads_ms": thread_ms,
            "requests": found.requests,
        },
        est_stage_speedup=full_ms / chosen["ms"] if chosen["ms"] > 0 else None,
    )


def _first_reaching(
    ordered: Sequence[selection.Built],
    evaluate: _TwoStageEval,
    n_floor: int,
    n: int,
    goal: float,
    curve: list[dict[str, Any]],
) -> tuple[selection.Built | None, list[dict[str, Any]]]:
    """The first index (fastest space first) with operating points reaching ``goal``, and
    those points; the others are dropped from memory."""
    for built in ordered:
        evaluate.searcher = built.searcher
        feasible = _feasible(evaluate, built.spec, n_floor, n, goal, curve)
        if feasible:
            for other in ordered:
                if other is not built:
                    other.release()  # only the index kept stays in memory
            return built, feasible
    return None, []


def _cheapest(
    feasible: list[dict[str, Any]],
    evaluate: _TwoStageEval,
    query_fn: Callable[[Any], Any],
    requests: Sequence[Any],
) -> dict[str, Any]:
    """Each feasible (N, runtime) point timed one request at a time (ANN + ranking over
    N), interleaved; the cheapest."""
    searcher = evaluate.searcher
    assert searcher is not None

    def serving(point: dict[str, Any]) -> Callable[[Any], Any]:
        def serve(request: Any) -> np.ndarray:
            searcher.runtime = point["runtime"]
            ids = _one_candidates(searcher, query_fn(request), point["n_candidates"])
            return evaluate.rank(request, ids)

        return serve

    common.time_points(feasible, serving, requests[: common.TIMING_REQUESTS])
    return min(feasible, key=lambda p: p["ms"])


def _tuning_requests(
    stage: Stage, pipeline: Pipeline, context: TuneContext, dim: int
) -> tuple[list[Any], np.ndarray, list[np.ndarray], float]:
    """The tuning requests, their retrieval vectors, the full ranking's top-k of each and
    its time per request. The original pipeline's outputs are reused when this stage makes
    them (the ranker over the whole catalog is the expensive part of tuning)."""
    where = f"stage {stage.name!r}"
    query_fn = stage.slots.get("query") or blocks.default_query
    all_inputs = context.stage_inputs(pipeline, stage.name)
    picks = set(common.sample(range(len(all_inputs)), common.MAX_TUNE_REQUESTS))
    requests = [all_inputs[i] for i in sorted(picks)]
    if not requests:
        raise Rejected("the tuning split is empty")
    try:
        query_rows = [exact_search.as_queries(query_fn(r), dim, where) for r in requests]
    except PipelineError as exc:
        raise Rejected(
            f"{exc}; declare a `query` slot: a function returning the request's retrieval vector"
        ) from None
    if any(not single for _, single in query_rows):
        raise Rejected(f"{where}: one retrieval vector per request is needed")
    queries = np.concatenate([q for q, _ in query_rows])
    last = pipeline.stages[-1] is stage and pipeline is context.original
    started = time.perf_counter()
    if last and len(requests) == len(all_inputs):
        reference = [rows_of(o)[0] for o in context.baseline_outputs()]
        full_ms = 1000 * ann_search.time_one_at_a_time(stage, requests[:3], repeats=1)
    else:
        reference = [rows_of(stage(r))[0] for r in requests]
        full_ms = 1000 * (time.perf_counter() - started) / len(requests)
    return requests, queries, reference, full_ms


def _n_floor(
    evaluate: _TwoStageEval,
    exact_top: np.ndarray,
    target: float,
    curve: list[dict[str, Any]],
    where: str,
) -> tuple[int, float]:
    """The smallest N whose exact top-N, ranked by the ranker, keeps the target share of
    the full ranking's top-k on the tuning requests (doubling, then bisection), and the
    safety margin measured there."""
    k, n_max = evaluate.k, exact_top.shape[1]
    margin = 0.01

    def exact_recall(size: int) -> float:
        nonlocal margin
        per_request = evaluate.recall_with([row[:size] for row in exact_top])
        margin = common.safety_margin(per_request)
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
    return high, margin


def _feasible(
    evaluate: _TwoStageEval,
    spec: ann.IndexSpec,
    n_floor: int,
    n: int,
    goal: float,
    curve: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """For N at 1, 1.25, 1.5 and 2 times the floor, the smallest runtime value whose
    two-stage top-k keeps ``goal`` of the full ranking's on the tuning requests."""
    feasible = []
    for factor in (1.0, 1.25, 1.5, 2.0):
        size = min(n, math.ceil(n_floor * factor))
        # HNSW searches at least N deep (faiss uses max(efSearch, k)): its options start at N.
        options = (
            [v for v in ann_search.runtime_values(spec, size) if v <= 4 * size]
            if spec.kind == "hnsw"
            else ann_search.runtime_values(spec, evaluate.k)
        )
        found = _lowest_meeting(options, functools.partial(_recall_at, evaluate, size, curve), goal)
        if found is not None:
            feasible.append({"n_candidates": size, "runtime": found[0], "recall": found[1]})
    return feasible


def _rank_spaces(
    proposal: Proposal,
    context: TuneContext,
    matrix: np.ndarray,
    spec: ann.IndexSpec,
    queries: np.ndarray,
    reference: np.ndarray,
    goal: float,
) -> tuple[list[selection.Built], dict[str, Any]]:
    """Indexes of ``spec``'s kind, one per space, fastest first at retrieving the exact
    top-N (recall@N >= ``goal``, one query at a time): with uneven norms under inner
    product, the plain index and the MIPS→L2 reduction are both built and measured. N and
    the runtime value are then tuned through the ranker on the first that reaches the
    target."""
    n, metric = matrix.shape[0], spec.metric
    stats = spaces.norm_stats(matrix) if metric == "ip" else None
    options = [
        (space, why)
        for space, why in selection.spaces_to_try(proposal, metric, stats)
        if space != "normalized"  # the ranker orders the candidates: no re-rank depth here
    ]
    builds = [
        selection.build(context, matrix, selection.spec_in(spec, spec.kind, space, metric, n), why)
        for space, why in options
    ]
    notes: dict[str, Any] = {"norms": stats}
    if len(builds) == 1:
        return builds, notes
    depth = reference.shape[1]
    for built in builds:
        selection.scan_points(built, queries, reference, depth, lambda _: goal, [depth])
    reachable = [built for built in builds if built.feasible]
    if reachable:
        singles = [queries[i : i + 1] for i in range(min(len(queries), common.TIMING_REQUESTS))]
        selection.time_feasible(reachable, singles, depth)
    notes["spaces"] = [built.describe() for built in builds]
    return sorted(builds, key=lambda b: b.feasible[0]["ms"] if b.feasible else math.inf), notes


#: From this many candidates on, the two-stage change prefers IVF-Flat to HNSW: HNSW must
#: search at least N deep (efSearch >= N), and its graph walk costs about 2.3 µs per unit
#: of depth on the demo catalog (1.25 ms at 500, 3.4 ms at 1,450, one thread), while
#: IVF-Flat's cost is the lists it scans (0.56 ms at N = 500 and 0.74 ms at N = 1,450 with
#: 64 of 2,048 lists); HNSW still wins for shallow searches (k of a few dozen).
DEEP_CANDIDATES = 256


def _spec_for_depth(
    proposal: Proposal, rec: Recognized, matrix: np.ndarray, n_floor: int
) -> tuple[ann.IndexSpec, str]:
    """The index for retrieving at least ``n_floor`` candidates, and why when the profile's
    HNSW choice was swapped for IVF-Flat ("" when it was kept)."""
    spec = common.spec_for(proposal, rec, matrix)
    if spec.kind != "hnsw" or proposal.params.get("index_kind") or n_floor < DEEP_CANDIDATES:
        return spec, ""
    flat = ann.choose_index(matrix.shape[0], matrix.shape[1], spec.metric, kind="ivf_flat").spec
    assert flat is not None
    return flat, (
        f"the ranker needs {n_floor:,} candidates: HNSW would search at least that deep "
        f"(efSearch >= N), which costs more than scanning a few IVF lists; "
        f"{flat.describe()} instead of {spec.describe()}"
    )


def _one_candidates(searcher: ann_search.AnnSearcher, query: Any, size: int) -> np.ndarray:
    queries, _ = exact_search.as_queries(query, searcher.d, "two-stage tuning")
    _, ids = searcher.candidates(queries, size)
    return ids[0][ids[0] >= 0]


def _recall_at(
    evaluate: _TwoStageEval, size: int, curve: list[dict[str, Any]], runtime: int
) -> float:
    return _ann_recall(evaluate, size, runtime, curve)


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
            scores = exact_search.exact_scores(
                exact_search.normalized(matrix), exact_search.normalized(chunk), "ip"
            )
        else:
            scores = exact_search.exact_scores(matrix, chunk, metric)
        rows.append(exact_search.top_k_rows(scores, size))
    return np.concatenate(rows)


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path) -> Pipeline:
    stage, searcher, spec = common.saved_searcher(
        change, pipeline, artifacts_dir, "full_ranking", "a full-catalog ranking stage"
    )
    notes = {"change": change.proposal}
    retrieve = blocks.ann_candidates(
        f"{stage.name}.retrieve",
        searcher,
        stage.slots.get("query") or blocks.default_query,
        change.params["n_candidates"],
        notes={**notes, "index": spec.describe()},
    )
    return pipeline.replace(stage.name, [retrieve, blocks.candidate_ranking(stage, notes=notes)])


CHANGE = ChangeType(ID, AnnTwoStageParams, materialize, tune, lossy=True)
