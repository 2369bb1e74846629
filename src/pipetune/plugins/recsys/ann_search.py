"""Searching an ANN index: :class:`AnnSearcher` (candidates from faiss re-ranked exactly
against the item matrix, with faiss's calling convention), the runtime-parameter and
re-rank-depth grids the tune steps sweep, and serving-mode timing one input per call.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.plugins.recsys import spaces
from pipetune.plugins.recsys.ann import IndexSpec, load_faiss
from pipetune.plugins.recsys.exact_search import normalized, top_k_rows
from pipetune.plugins.recsys.threads import faiss_thread_count


def runtime_values(spec: IndexSpec, k: int) -> list[int]:
    """The runtime parameter grid a full sweep covers, ascending."""
    if spec.kind == "hnsw":
        factors = (1, 1.25, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 16, 24, 32)
        return sorted({min(16384, max(16, round(k * f))) for f in factors})
    base = (
        1, 2, 3, 4, 5, 6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112,
        128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792,
        2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384,
        20480, 24576, 28672, 32768, 40960, 49152, 57344, 65536,
    )  # fmt: skip
    return [v for v in base if v <= spec.nlist]


def rerank_depths(spec: IndexSpec, k: int, n: int) -> list[int]:
    """k' values (candidates re-ranked exactly). Flat storage gives exact distances, so a
    deeper re-rank adds nothing there beyond the search width; PQ needs it."""
    if spec.exact_distances:
        return [k]
    return sorted({min(n, k * f) for f in (1, 2, 4, 8, 16)})


class AnnSearcher:
    """ANN candidates from a faiss index, re-ranked exactly against the item matrix.

    ``search(queries, k)`` has faiss's calling convention and returns ``(distances, ids)``
    as a flat index of the same metric would (inner products descending, or squared L2
    distances ascending), so it can stand in a user's ``index=`` slot. ``threads`` pins
    faiss's OpenMP threads for single queries, ``batch_threads`` for batches.
    """

    def __init__(
        self,
        index: Any,
        items: np.ndarray,
        spec: IndexSpec,
        runtime: int,
        *,
        k_prime: int | None = None,
        threads: int | None = 1,
        batch_threads: int | None = None,
    ) -> None:
        faiss = load_faiss()
        self.index = index
        self.items = items
        self.spec = spec
        self.runtime = int(runtime)
        self.k_prime = k_prime
        self.threads = threads
        self.batch_threads = batch_threads
        self.d = spec.dim
        self.ntotal = int(index.ntotal)
        self.metric_type = faiss.METRIC_L2 if spec.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        self._rerank_vectors = normalized(items) if spec.metric == "cosine" else items
        self._max_sq = spaces.max_sq_norm(items) if spec.space == "mips_l2" else 0.0
        self._params_cache: dict[int, Any] = {}

    def params(self, runtime: int | None = None) -> Any:
        value = self.runtime if runtime is None else int(runtime)
        params = self._params_cache.get(value)
        if params is None:
            faiss = load_faiss()
            if self.spec.kind == "hnsw":
                params = faiss.SearchParametersHNSW(efSearch=value)
            else:
                params = faiss.SearchParametersIVF(nprobe=value)
            self._params_cache[value] = params
        return params

    def candidates(
        self, queries: np.ndarray, n: int, runtime: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` ANN candidates per query (index order; ``-1`` pads missing ones), with the
        index's own distances."""
        queries = spaces.query_vectors(queries, self.spec.metric, self.spec.space)
        threads = self.threads if len(queries) == 1 else self.batch_threads
        with faiss_thread_count(threads):
            distances, ids = self.index.search(queries, int(n), params=self.params(runtime))
        return distances, ids

    def search(
        self, queries: Any, k: int, runtime: int | None = None, k_prime: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        depth = max(int(k), int(k_prime or self.k_prime or k))
        distances, ids = self.candidates(queries, depth, runtime)
        if depth == k and self.spec.exact_distances:
            if self.spec.space == "mips_l2":  # back from augmented L2 to inner products
                distances = spaces.inner_products_from_l2(distances, queries, self._max_sq)
            return distances, ids  # flat storage: faiss's distances are already exact
        return self._rerank(queries, ids, int(k))

    def _rerank(
        self, queries: np.ndarray, ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        valid = ids >= 0
        safe = np.where(valid, ids, 0)
        vectors = self._rerank_vectors[safe]  # (nq, k', d)
        if self.spec.metric == "cosine":
            queries = normalized(queries)
        scores = np.einsum("qkd,qd->qk", vectors, queries)
        if self.spec.metric == "l2":
            scores = 2.0 * scores - np.einsum("qkd,qkd->qk", vectors, vectors)
            scores -= np.einsum("qd,qd->q", queries, queries)[:, None]
        scores = np.where(valid, scores, -np.inf)
        order = top_k_rows(scores, min(k, scores.shape[1]))
        top_ids = np.take_along_axis(np.where(valid, ids, -1), order, axis=1)
        top_scores = np.take_along_axis(scores, order, axis=1)
        distances = -top_scores if self.spec.metric == "l2" else top_scores
        return distances.astype(np.float32), top_ids.astype(np.int64)

    def describe(self) -> dict[str, Any]:
        return {
            "index": self.spec.describe(),
            self.spec.runtime_param: self.runtime,
            "k_prime": self.k_prime,
            "faiss_threads_single": self.threads,
            "faiss_threads_batch": self.batch_threads,
        }

    def __repr__(self) -> str:
        return (
            f"AnnSearcher({self.spec.describe()}, {self.spec.runtime_param}={self.runtime}, "
            f"k_prime={self.k_prime})"
        )


def time_one_at_a_time(fn: Any, inputs: Sequence[Any], *, repeats: int = 3) -> float:
    """Seconds per call, one input per call (serving mode: no batching): the best of
    ``repeats`` passes after a warm-up, the usual estimator on a machine shared with other
    work (noise only ever adds time)."""
    if not inputs:
        return 0.0
    for item in inputs[: min(len(inputs), 8)]:
        fn(item)
    passes = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for item in inputs:
            fn(item)
        passes.append((time.perf_counter() - start) / len(inputs))
    return float(min(passes))
