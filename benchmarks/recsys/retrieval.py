"""ANN vs exact top-k retrieval on one catalog, side by side.

The plugin profiles an exact top-k stage, proposes, tunes (choosing the index kind, the
space — plain, MIPS→L2, cosine candidates — and the operating point) and materializes ANN +
exact re-rank. On held-out queries, one at a time, it is compared through ``compare`` with:

* the exact baseline users write (numpy matrix-vector product + argpartition: the
  teaching baseline) and faiss's ``IndexFlatIP`` (the library default), each at its own
  best BLAS/faiss thread count, measured;
* the best point of a sweep over index kinds, spaces (the MIPS→L2 reduction included) and
  runtime values at the same recall target. The sweep screens points with a best-of-3
  timer; the best one is then compared with the plugin's pick through ``compare``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from benchmarks.recsys.harness import at_best_threads, log, one_stage, side_by_side
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.measure.profiler import profile
from pipetune.plugins.recsys import ann, ann_search, blocks, exact_search, selection, spaces
from pipetune.plugins.recsys.changes.common import index_artifact
from pipetune.plugins.recsys.fidelity import ranked_ids_fidelity

TARGET = 0.95


def numpy_exact(items: np.ndarray, k: int) -> Any:
    """The exact baseline users write: a matrix-vector product and argpartition."""

    def search(query: np.ndarray) -> np.ndarray:
        scores = items @ query
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top])]

    return search


def faiss_flat(items: np.ndarray, k: int) -> Any:
    """The library default: faiss's exact inner-product index."""
    import faiss

    flat = faiss.IndexFlatIP(items.shape[1])
    flat.add(items)

    def search(query: np.ndarray) -> np.ndarray:
        return flat.search(query[None, :], k)[1][0]

    return search


def exact_reference(items: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.concatenate(
        [
            exact_search.top_k_rows(exact_search.exact_scores(items, chunk, "ip"), k)
            for chunk in np.array_split(queries, max(1, len(queries) // 32))
        ]
    )


def tune_with_plugin(
    name: str, items: np.ndarray, tune_q: np.ndarray, k: int, pm: Any, store: ArtifactStore
) -> tuple[Pipeline, Any, Any, dict[str, Any]]:
    """Profile, propose, tune and materialize ``recsys.ann_exact`` as the loop would."""
    pipeline = Pipeline(name, (blocks.exact_topk(items, k),), output_kind="ranked_ids")
    workload = Workload(tuple(tune_q))
    requirements = Requirements(max_accuracy_drop=1 - TARGET)
    log(f"[{name}] profiling the exact stage")
    prof = profile(pipeline, workload.evolve(items=tuple(tune_q[:40]), warmup=0, repeats=1), pm=pm)
    facts = prof.facts["recsys"]["stages"]["retrieve"]
    found = {
        p.id: p
        for _, batch in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=requirements
        )
        for p in batch
    }
    proposal = found.get("recsys.ann_exact")
    told = {
        "index_rule": facts.get("index_reason") or facts.get("ann_reason"),
        "hnsw_build_s_est": facts.get("hnsw_build_s_est"),
        "norms": facts.get("norms"),
        "index_spaces": facts.get("index_spaces"),
    }
    if proposal is None:
        return pipeline, None, None, {**told, "proposal": None}
    context = TuneContext(pm, pipeline, workload, requirements, store, log=log)
    log(f"[{name}] tuning {proposal.id}")
    started = time.perf_counter()
    try:
        tuned = pm.tune(proposal, pipeline, context)
    except Rejected as exc:
        return pipeline, None, None, {**told, "rejected": str(exc)}
    told["tune_seconds"] = time.perf_counter() - started
    change = Change.from_proposal(proposal, tuned)
    candidate = pm.materialize(change, pipeline, store.root)
    notes = tuned.notes
    told.update(
        summary=notes["summary"],
        params={key: value for key, value in tuned.params.items() if key != "index"},
        index=tuned.params["index"],
        build=notes["build"],
        candidates=notes["candidates"],
        not_tried=notes["not_tried"],
        faiss_threads_ms=notes["faiss_threads_ms"],
        exact_threads_ms=notes["exact_threads_ms"],
        tune_recall=notes["tune_recall"],
    )
    return pipeline, candidate, tuned, told


def sweep(
    items: np.ndarray,
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    store: ArtifactStore,
    kinds: tuple[str, ...],
) -> dict[str, Any]:
    """Every kind x space x runtime value (x re-rank depth where it matters): recall in
    batch, then the time one query at a time (faiss on one thread, best of 3) of every
    point from just under the target up, until points get 3x slower than the best one
    meeting it."""
    n, dim = items.shape
    stats = spaces.norm_stats(items)
    goal = TARGET
    points: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for space, _ in spaces.candidate_spaces("ip", stats):
        floor = k
        if space == "normalized":
            depths = sorted({min(n, k * f) for f in (1, 2, 4, 8, 16)})
            floor, shares = spaces.cosine_depth(items, queries[:64], reference[:64], depths, goal)
            if floor is None:
                skipped[space] = f"cosine top-k' holds {shares} of the inner-product top-{k}"
                continue
        for kind in kinds:
            rule = ann.choose_index(max(n, ann.MIN_CATALOG), dim, "ip", kind=kind).spec
            assert rule is not None
            spec = selection.spec_in(rule, kind, space, "ip", n)
            log(f"  sweep: {spec.describe()}")
            index, info, _, _ = index_artifact(store, items, spec, log)
            searcher = ann_search.AnnSearcher(
                index, items, spec, ann_search.runtime_values(spec, k)[0]
            )
            depths = [d for d in ann_search.rerank_depths(spec, k, n) if d >= floor] or [floor]
            for depth in depths:
                points += _sweep_one(searcher, queries, reference, k, depth, info)
    meeting = [p for p in points if p["recall"] >= TARGET and "ms_per_query" in p]
    best = min(meeting, key=lambda p: p["ms_per_query"]) if meeting else None
    return {"points": points, "best_at_target": best, "not_tried": skipped, "faiss_threads": 1}


def _sweep_one(
    searcher: ann_search.AnnSearcher,
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    depth: int,
    info: dict[str, Any],
) -> list[dict[str, Any]]:
    spec = searcher.spec
    out: list[dict[str, Any]] = []
    best_ms = math.inf
    for value in ann_search.runtime_values(spec, k):
        if spec.kind == "hnsw" and value < depth:
            continue
        _, found = searcher.search(queries, k, runtime=value, k_prime=depth)
        recall = float(exact_search.per_query_recall(reference, found).mean())
        point = {
            "index": spec.describe(),
            "spec": spec.to_dict(),
            "runtime": value,
            "k_prime": depth,
            "recall": recall,
            "build_s": info.get("seconds"),
            "index_mib": info.get("index_bytes", 0) / 2**20,
        }
        if recall >= TARGET - 0.05:
            point["ms_per_query"] = 1000 * ann_search.time_one_at_a_time(
                lambda q, v=value: searcher.search(q, k, runtime=v, k_prime=depth),
                list(queries[:200]),
                repeats=3,
            )
            if recall >= TARGET:
                best_ms = min(best_ms, point["ms_per_query"])
        out.append(point)
        if point.get("ms_per_query", 0) > 3 * best_ms or recall >= 0.999:
            break
    return out


def sweep_best_pipeline(
    best: dict[str, Any], items: np.ndarray, k: int, store: ArtifactStore, threads: int
) -> Pipeline:
    """The sweep's best point through the same block the plugin's pick uses (so the two
    differ only in the index, space and operating point), at the pick's faiss threads."""
    spec = ann.IndexSpec.from_dict(best["spec"])
    index, _, _, _ = index_artifact(store, items, spec, log)
    searcher = ann_search.AnnSearcher(
        index, items, spec, best["runtime"], k_prime=best["k_prime"], threads=threads
    )
    return Pipeline("sweep-best", (blocks.ann_topk("retrieve", searcher, k),))


def retrieval_section(
    name: str,
    items: np.ndarray,
    queries: np.ndarray,
    pm: Any,
    store: ArtifactStore,
    *,
    k: int = 100,
    sweep_kinds: tuple[str, ...] = ("ivf_flat",),
    batches: bool = False,
) -> dict[str, Any]:
    half = len(queries) // 2
    tune_q, held_q = queries[:half], queries[half:]
    _, candidate, tuned, told = tune_with_plugin(name, items, tune_q, k, pm, store)
    out: dict[str, Any] = {
        "catalog": list(items.shape),
        "k": k,
        "target_recall": TARGET,
        "tune_queries": len(tune_q),
        "held_out_queries": len(held_q),
        "plugin": told,
    }
    reference = exact_reference(items, held_q, k)
    singles = list(held_q)
    log(f"[{name}] baselines at their best thread counts")
    numpy_fn, numpy_ms = at_best_threads(numpy_exact(items, k), singles[:40])
    flat_fn, flat_ms = at_best_threads(faiss_flat(items, k), singles[:40])
    numpy_pipe, flat_pipe = one_stage("numpy-exact", numpy_fn), one_stage("faiss-flat", flat_fn)
    out["baselines"] = {
        "numpy_exact": {"threads": numpy_fn.threads, "ms_by_threads": numpy_ms},
        "faiss_flat": {"threads": flat_fn.threads, "ms_by_threads": flat_ms},
    }
    log(f"[{name}] sweep over {', '.join(sweep_kinds)} in every space the norms allow")
    out["sweep"] = sweep(items, held_q, reference, k, store, sweep_kinds)
    best = out["sweep"]["best_at_target"]
    compared: dict[str, Any] = {}
    if candidate is not None:
        picked = dataclasses.replace(candidate, name="plugin-pick")
        found = np.stack([np.asarray(candidate.stage("retrieve")(q)) for q in held_q])
        fid = ranked_ids_fidelity(list(reference), list(found))
        out["picked"] = {
            "index": told["index"],
            "summary": told["summary"],
            "held_out_recall": fid.value,
            "held_out_recall_ci": fid.ci,
            "held_out_ndcg": fid.details["ndcg_at_k"],
        }
        compared["picked_vs_numpy_exact"] = side_by_side(numpy_pipe, picked, singles)
        compared["picked_vs_faiss_flat"] = side_by_side(flat_pipe, picked, singles)
        if best:
            threads = int(told["params"].get("faiss_threads") or 1)
            best_pipe = sweep_best_pipeline(best, items, k, store, threads)
            compared["picked_vs_sweep_best"] = side_by_side(best_pipe, picked, singles)
            # picked time / best time = 1 / (picked's speedup over the best)
            entry = compared["picked_vs_sweep_best"]
            out["picked_time_over_sweep_best"] = 1.0 / entry["speedup"]
            out["picked_time_over_sweep_best_ci"] = [1.0 / v for v in reversed(entry["ci"])]
        if batches and tuned is not None:
            out["batches"] = batch_figures(candidate, items, held_q, k)
    compared["faiss_flat_vs_numpy_exact"] = side_by_side(numpy_pipe, flat_pipe, singles)
    out["compared"] = compared
    return out


def batch_figures(
    candidate: Pipeline, items: np.ndarray, queries: np.ndarray, k: int
) -> list[dict[str, Any]]:
    """Per-query cost at batch sizes: exact as one matrix product + argpartition per row,
    ANN as one faiss batch search, compared side by side on batches of the same queries."""
    searcher = candidate.stage("retrieve").slots["searcher"]
    rows = []
    for size in (1, 16, 64, 256):
        if size > len(queries):
            break
        pool = queries[:256]
        batches = [pool[i : i + size] for i in range(0, len(pool) - size + 1, size)]
        exact = one_stage("exact-batch", lambda b: exact_search.top_k_rows(b @ items.T, k))
        approx = one_stage("ann-batch", lambda b: searcher.search(b, k)[1])
        entry = side_by_side(exact, approx, batches, label=f"batch {size}")
        entry["batch"] = size
        entry["exact_ms_per_query"] = entry["a_ms_per_input"] / size
        entry["ann_ms_per_query"] = entry["b_ms_per_input"] / size
        rows.append(entry)
    return rows
