"""Which index, in which vector space, at which operating point: measured, not assumed.

The profile's rule (:func:`.ann.choose_index`) says which index *kinds* fit the memory and
build-time budgets; the norm spread says which *spaces* can rank differently
(:mod:`.spaces`). Every admissible (kind, space) pair is built (or reloaded from the
artifact store), its cheapest operating point at the recall target is found on the tuning
queries, and the feasible points of all of them are timed one query at a time,
interleaved, so the fastest wins on this host. The thread count the winner runs with is
measured the same way (1, 2, 4, ... up to the cores), never assumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.results import Proposal
from pipetune.plugins.recsys import ann, ann_search, exact_search, spaces
from pipetune.plugins.recsys.threads import thread_candidates

#: More threads are kept only when at least this much faster than fewer: a single query
#: has little to split, and a core left free serves the next request.
THREAD_GAIN = 0.9


@dataclass
class Built:
    """One candidate index, built or reloaded, and what its search found."""

    spec: ann.IndexSpec
    why: str
    index: Any
    info: dict[str, Any]
    relative: str
    reused: bool
    searcher: ann_search.AnnSearcher
    points: list[dict[str, Any]] = field(default_factory=list)
    feasible: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""

    def release(self) -> None:
        """Drop the index from memory (its artifact stays in the store)."""
        self.index = None
        self.searcher = None  # type: ignore[assignment]

    def describe(self) -> dict[str, Any]:
        best = min(self.feasible, key=lambda p: p.get("ms", np.inf), default=None)
        return {
            "index": self.spec.describe(),
            "kind": self.spec.kind,
            "space": self.spec.space,
            "why": self.why,
            "build_s": self.info.get("seconds"),
            "index_mib": self.info.get("index_bytes", 0) / 2**20,
            "reused": self.reused,
            "best": best,
            "note": self.note,
        }


def kinds_to_try(proposal: Proposal, rule: ann.IndexSpec) -> list[str]:
    """The index kinds to compare: a forced ``index_kind`` alone; else ``index_kinds`` when
    given; else the rule's kind, plus IVF-Flat beside HNSW (it builds in a fraction of
    HNSW's time and often searches faster at a deep k)."""
    forced = proposal.params.get("index_kind")
    if forced:
        return [str(forced)]
    listed = proposal.params.get("index_kinds")
    if listed:
        return [str(kind) for kind in listed]
    return [rule.kind, "ivf_flat"] if rule.kind == "hnsw" else [rule.kind]


def spaces_to_try(
    proposal: Proposal, metric: str, stats: dict[str, float] | None
) -> list[tuple[str, str]]:
    """The spaces to compare: a forced ``space`` alone, else those the norms allow."""
    forced = proposal.params.get("space")
    if forced:
        spaces.check(str(forced), metric)
        return [(str(forced), "requested")]
    return spaces.candidate_spaces(metric, stats)


def spec_in(rule: ann.IndexSpec, kind: str, space: str, metric: str, n: int) -> ann.IndexSpec:
    """The rule's spec for ``kind`` and ``space`` (sub-quantizers fit the index's dimension)."""
    if kind == rule.kind:
        base = rule.to_dict()
    else:
        choice = ann.choose_index(max(n, ann.MIN_CATALOG), rule.dim, metric, kind=kind)
        assert choice.spec is not None
        base = choice.spec.to_dict()
    base.update(metric=metric, space=space)
    if kind == "ivf_pq":
        base["pq_m"] = ann.default_pq_m(spaces.index_dim(rule.dim, space))
    return ann.IndexSpec.from_dict(base)


def build(context: TuneContext, matrix: np.ndarray, spec: ann.IndexSpec, why: str) -> Built:
    from pipetune.plugins.recsys.changes.common import index_artifact

    index, info, relative, reused = index_artifact(context.artifacts, matrix, spec, context.log)
    first = ann_search.runtime_values(spec, 1)[0]
    searcher = ann_search.AnnSearcher(index, matrix, spec, first, threads=1)
    return Built(spec, why, index, dict(info), relative, reused, searcher)


def scan_points(
    built: Built,
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    goal: Callable[[np.ndarray], float],
    depths: Sequence[int],
) -> None:
    """For each re-rank depth, the smallest runtime value whose recall@k on ``queries``
    reaches ``goal(per-query recall)`` (the target plus its margin), measured in batch
    (recall does not depend on batching). Fills ``built.points`` and ``built.feasible``."""
    spec, searcher = built.spec, built.searcher
    for depth in depths:
        for value in ann_search.runtime_values(spec, k):
            if spec.kind == "hnsw" and value < depth:
                continue
            _, found = searcher.search(queries, k, runtime=value, k_prime=depth)
            per_query = exact_search.per_query_recall(reference, found)
            point: dict[str, Any] = {
                "index": spec.describe(),
                "k_prime": depth,
                "runtime": value,
                "recall": float(per_query.mean()),
                "goal": goal(per_query),
            }
            built.points.append(point)
            if point["recall"] >= point["goal"]:
                built.feasible.append(point)
                break


def time_feasible(
    candidates: Sequence[Built],
    singles: Sequence[np.ndarray],
    k: int,
    *,
    rounds: int = 3,
) -> list[tuple[Built, dict[str, Any]]]:
    """Time every feasible point of every candidate one query at a time (serving mode),
    interleaving all of them round by round so that a burst of load hits them alike;
    ``point["ms"]`` is the best round. Returns (candidate, point) pairs."""
    from pipetune.plugins.recsys.changes.common import time_points

    pairs = [(built, point) for built in candidates for point in built.feasible]

    def searching(point: dict[str, Any]) -> Callable[[Any], Any]:
        built = next(b for b, p in pairs if p is point)

        def search(query: np.ndarray) -> Any:
            return built.searcher.search(
                query, k, runtime=point["runtime"], k_prime=point["k_prime"]
            )

        return search

    time_points([p for _, p in pairs], searching, singles, rounds=rounds)
    return pairs


@contextmanager
def searcher_threads(searcher: ann_search.AnnSearcher, count: int) -> Iterator[None]:
    """The searcher's single-query faiss threads set to ``count`` for a block."""
    previous = searcher.threads
    searcher.threads = count
    try:
        yield
    finally:
        searcher.threads = previous


def best_threads(
    run: Callable[[Any], Any],
    inputs: Sequence[Any],
    pin: Callable[[int], Any],
    counts: Sequence[int] | None = None,
) -> tuple[int, dict[str, float]]:
    """The fastest thread count for ``run`` one input at a time, each count set by ``pin``
    (a context manager factory), interleaved over rounds (best round kept). Fewer threads
    win unless more are clearly faster. Returns the count and ms per input by count."""
    import math

    counts = list(counts or thread_candidates())
    best = {count: math.inf for count in counts}
    for _ in range(3):
        for count in counts:
            with pin(count):
                seconds = ann_search.time_one_at_a_time(run, inputs, repeats=1)
            best[count] = min(best[count], seconds)
    chosen = counts[0]
    for count in counts[1:]:
        if best[count] < THREAD_GAIN * best[chosen]:
            chosen = count
    return chosen, {str(count): 1000 * seconds for count, seconds in best.items()}


def summary_line(
    spec: ann.IndexSpec,
    params: dict[str, Any],
    info: dict[str, Any],
    *,
    catalog: int,
    extra: str = "",
) -> str:
    """The one line the reports show for a tuned index change."""
    runtime = f"{spec.runtime_param}={params.get('runtime')}"
    depth = params.get("n_candidates")
    told = [
        f"{spec.describe()}, {runtime}",
        f"N={depth:,} candidates of {catalog:,} items" if depth else f"{catalog:,} items",
    ]
    if params.get("k_prime") and params.get("k_prime") != params.get("k"):
        told.append(f"k'={params['k_prime']}")
    seconds, size = info.get("seconds"), info.get("index_bytes")
    if seconds is not None:
        told.append(f"built in {seconds:.1f} s")
    if size:
        told.append(f"{size / 2**20:,.0f} MiB")
    threads = int(params.get("faiss_threads") or 1)
    told.append(f"faiss on {threads} thread{'s' if threads != 1 else ''}")
    if extra:
        told.append(extra)
    return "; ".join(told)
