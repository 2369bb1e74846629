"""faiss ANN indexes: which one to build, building it, and searching it with exact re-rank.

The choice (documented in docs/domains/recsys.md):

1. Under :data:`MIN_CATALOG` items (10,000), no index: exact search is a fraction of a
   millisecond there and an ANN index only adds recall loss.
2. If a flat copy of the vectors (what HNSW and IVF-Flat keep) does not fit the memory
   budget, **IVF-PQ**: product-quantized codes (``d/4`` bytes a vector) plus an exact
   re-rank of ``k'`` candidates against the user's own matrix, which is resident anyway.
3. Else, if HNSW's build (extrapolated from measured builds on two samples of the
   catalog) fits the build-time budget, **HNSW**: no training, the best single-query
   latency at high recall on most data.
4. Else **IVF-Flat**: a k-means on a sample plus one assignment pass builds in a fraction of
   HNSW's time, and exact distances within the probed lists.

The rule says which kinds fit the budgets; the tune step then measures the admissible
kinds in every space the norms allow (:mod:`.spaces`, :mod:`.selection`) and keeps the
fastest at the recall target. faiss is imported inside the functions that use it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError, PipelineError
from pipetune.plugins.recsys import spaces
from pipetune.plugins.recsys.threads import faiss_thread_count

#: Below this many items an ANN index does not pay (exact search is sub-millisecond).
MIN_CATALOG = 10_000
#: Default build-time budget for the index, seconds.
DEFAULT_BUILD_BUDGET_S = 30.0
#: Default memory budget for the index: this share of the memory available now.
DEFAULT_MEMORY_SHARE = 0.5
METRICS = ("ip", "l2", "cosine")
INDEX_KINDS = ("hnsw", "ivf_flat", "ivf_pq")
#: The runtime parameter each index kind is tuned by.
RUNTIME_PARAM = {"hnsw": "efSearch", "ivf_flat": "nprobe", "ivf_pq": "nprobe"}


def _faiss() -> Any:
    from pipetune.core.kernel.registry import require

    return require("faiss", "recsys", "ANN indexes")


def faiss_version() -> str:
    return str(getattr(_faiss(), "__version__", "unknown"))


# -- the item matrix and queries -----------------------------------------------------------


def as_matrix(value: Any, where: str) -> np.ndarray:
    """The item matrix in ``value`` (numpy, torch, or a faiss flat index) as a 2-D float32
    array, without copying when it already is one. Never written to."""
    vectors = _vectors_of_flat_index(value)
    if vectors is not None:
        return vectors
    detach = getattr(value, "detach", None)
    if callable(detach):  # a torch tensor: share its memory, do not import torch
        value = detach().cpu().numpy()
    try:
        matrix = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{where}: cannot read an item matrix from {type(value).__name__}: {exc}"
        ) from None
    if matrix.ndim != 2 or matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ConfigError(
            f"{where}: expected a 2-D item matrix (items x dimensions), got shape {matrix.shape}"
        )
    if not np.issubdtype(matrix.dtype, np.floating):
        raise ConfigError(f"{where}: expected floating-point item vectors, got {matrix.dtype}")
    if matrix.dtype != np.float32:
        matrix = matrix.astype(np.float32)
    return matrix


def _vectors_of_flat_index(value: Any) -> np.ndarray | None:
    if not is_faiss_index(value) or not type(value).__name__.startswith("IndexFlat"):
        return None
    faiss = _faiss()
    n, d = int(value.ntotal), int(value.d)
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    # A read-only view of the index's own storage: no copy of the catalog.
    return faiss.rev_swig_ptr(value.get_xb(), n * d).reshape(n, d)


def is_faiss_index(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("faiss") and type(value).__name__.startswith("Index")


def faiss_metric_name(index: Any) -> str:
    faiss = _faiss()
    return "ip" if int(index.metric_type) == int(faiss.METRIC_INNER_PRODUCT) else "l2"


def check_finite(matrix: np.ndarray, where: str) -> None:
    """Raise naming ``where`` and the first bad rows when the catalog holds NaN or inf."""
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        shown = ", ".join(str(r) for r in rows[:5]) + (" ..." if len(rows) > 5 else "")
        raise ConfigError(
            f"{where}: {len(rows)} item vector(s) contain NaN or infinite values "
            f"(rows {shown}); fix or drop them before retrieval"
        )


def as_queries(value: Any, dim: int, where: str) -> tuple[np.ndarray, bool]:
    """Queries as a contiguous (nq, dim) float32 array, and whether the input was one 1-D
    vector. Raises :class:`PipelineError` naming ``where`` on a bad query."""
    detach = getattr(value, "detach", None)
    if callable(detach):
        value = detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise PipelineError(
            f"{where}: the query is not a vector ({type(value).__name__})"
        ) from None
    single = array.ndim == 1
    if single:
        array = array[None, :]
    if array.ndim != 2:
        raise PipelineError(
            f"{where}: expected a query vector or a (batch, dim) array, got shape {array.shape}"
        )
    if array.shape[1] != dim:
        raise PipelineError(
            f"{where}: the query has {array.shape[1]} dimensions but the item matrix has {dim}"
        )
    if not np.isfinite(array).all():
        raise PipelineError(f"{where}: the query contains NaN or infinite values")
    return np.ascontiguousarray(array), single


def normalized(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def exact_scores(items: np.ndarray, queries: np.ndarray, metric: str) -> np.ndarray:
    """Scores, higher is better: inner products, or negated squared L2 distances."""
    scores = queries @ items.T
    if metric == "l2":
        scores = 2.0 * scores - np.einsum("ij,ij->i", items, items)[None, :]
        scores -= np.einsum("ij,ij->i", queries, queries)[:, None]
    return scores


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """Top-k column indices of each row, best first (argpartition then sort the k)."""
    n = scores.shape[1]
    if k >= n:
        order = np.argsort(-scores, axis=1, kind="stable")
        return order[:, :k]
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


# -- choosing and describing an index -----------------------------------------------------


@dataclass(frozen=True)
class IndexSpec:
    """What to build. ``metric`` is the user's (cosine indexes normalized vectors by IP);
    ``space`` is the space the index searches in (:mod:`.spaces`: the metric as is, the
    MIPS→L2 reduction, or cosine candidates); ``dim`` is the items' own dimension."""

    kind: str
    metric: str
    dim: int
    hnsw_m: int = 32
    ef_construction: int = 40
    nlist: int = 0
    pq_m: int = 0
    pq_nbits: int = 8
    train_size: int = 0
    seed: int = 1234
    space: str = "native"

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise ConfigError(
                f"index kind must be one of {', '.join(INDEX_KINDS)}, not {self.kind!r}"
            )
        if self.metric not in METRICS:
            raise ConfigError(f"metric must be one of {', '.join(METRICS)}, not {self.metric!r}")
        spaces.check(self.space, self.metric)

    @property
    def index_dim(self) -> int:
        """The dimension of the vectors the index holds (one more for MIPS→L2)."""
        return spaces.index_dim(self.dim, self.space)

    @property
    def factory(self) -> str:
        if self.kind == "hnsw":
            return f"HNSW{self.hnsw_m},Flat"
        if self.kind == "ivf_flat":
            return f"IVF{self.nlist},Flat"
        return f"IVF{self.nlist},PQ{self.pq_m}x{self.pq_nbits}"

    @property
    def runtime_param(self) -> str:
        return RUNTIME_PARAM[self.kind]

    @property
    def exact_distances(self) -> bool:
        """Whether the index's own distances give the exact ranking (flat storage, in a
        space that ranks like the user's metric)."""
        return self.kind != "ivf_pq" and self.space != "normalized"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IndexSpec:
        known = set(cls.__dataclass_fields__)
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise ConfigError(f"malformed index spec {dict(data)!r}: {exc}") from None

    def describe(self) -> str:
        return f"{self.factory} ({spaces.describe(self.space, self.metric, self.dim)})"


@dataclass(frozen=True)
class IndexChoice:
    """The index the rule picked (``spec`` is ``None`` when ANN does not pay), and why."""

    spec: IndexSpec | None
    reason: str
    estimates: Mapping[str, Any] = field(default_factory=dict)


def default_nlist(n: int) -> int:
    """The power of two nearest (in log scale) to 4·sqrt(n), within [64, 65536]."""
    target = 4.0 * math.sqrt(max(n, 1))
    return int(min(65536, max(64, 2 ** round(math.log2(target)))))


def default_pq_m(dim: int) -> int:
    """Sub-quantizers for ~4 dimensions each: the largest divisor of ``dim`` <= dim / 4."""
    for m in range(max(1, dim // 4), 0, -1):
        if dim % m == 0:
            return m
    return 1


def index_memory_bytes(
    kind: str, n: int, dim: int, *, hnsw_m: int = 32, nlist: int = 0, pq_m: int = 0
) -> int:
    """Resident size of an index (approximate): vectors or codes, ids, graph links."""
    if kind == "hnsw":
        # Level 0 keeps 2·M links per vector, upper levels ~M/(M-1)·... ~ 5 % more.
        return int(n * (4 * dim + 2 * hnsw_m * 4 * 1.05 + 12))
    centroids = nlist * dim * 4
    if kind == "ivf_flat":
        return int(n * (4 * dim + 8) + centroids)
    return int(n * (pq_m + 8) + centroids + pq_m * 256 * (dim // max(pq_m, 1)) * 4)


def available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def choose_index(
    n: int,
    dim: int,
    metric: str,
    *,
    memory_budget_bytes: int | None = None,
    build_budget_s: float = DEFAULT_BUILD_BUDGET_S,
    hnsw_build_s: float | None = None,
    kind: str | None = None,
) -> IndexChoice:
    """Pick the index for ``n`` vectors of ``dim`` dimensions (see the module docstring).

    ``hnsw_build_s`` is the estimated HNSW build time on this machine
    (:func:`estimate_hnsw_build_s`); without it HNSW is assumed to fit when ``n`` is under
    200,000. ``kind`` forces an index kind (the rule is still reported).
    """
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if memory_budget_bytes is None:
        available = available_memory_bytes()
        memory_budget_bytes = int(available * DEFAULT_MEMORY_SHARE) if available else None
    nlist = default_nlist(n)
    pq_m = default_pq_m(dim)
    hnsw_m = 32 if dim >= 64 else 16
    memory = {
        "hnsw": index_memory_bytes("hnsw", n, dim, hnsw_m=hnsw_m),
        "ivf_flat": index_memory_bytes("ivf_flat", n, dim, nlist=nlist),
        "ivf_pq": index_memory_bytes("ivf_pq", n, dim, nlist=nlist, pq_m=pq_m),
    }
    estimates: dict[str, Any] = {
        "catalog": n,
        "dim": dim,
        "memory_bytes": memory,
        "memory_budget_bytes": memory_budget_bytes,
        "build_budget_s": build_budget_s,
        "hnsw_build_s_est": hnsw_build_s,
    }
    specs = {
        "hnsw": IndexSpec("hnsw", metric, dim, hnsw_m=hnsw_m),
        "ivf_flat": IndexSpec("ivf_flat", metric, dim, nlist=nlist, train_size=min(n, 40 * nlist)),
        "ivf_pq": IndexSpec(
            "ivf_pq",
            metric,
            dim,
            nlist=nlist,
            pq_m=pq_m,
            train_size=min(n, max(40 * nlist, 256 * 40)),
        ),
    }
    if n < MIN_CATALOG:
        return IndexChoice(
            None,
            f"the catalog has {n:,} items, under {MIN_CATALOG:,}: exact "
            "search is already cheap there and ANN would only lose recall",
            estimates,
        )
    if kind is not None:
        if kind not in specs:
            raise ConfigError(f"index kind must be one of {', '.join(INDEX_KINDS)}, not {kind!r}")
        return IndexChoice(specs[kind], f"{kind} was requested", estimates)
    fits = memory_budget_bytes is None or memory["ivf_flat"] <= memory_budget_bytes
    if not fits and memory_budget_bytes is not None:
        return IndexChoice(
            specs["ivf_pq"],
            f"a flat copy of the vectors ({memory['ivf_flat'] / 2**20:,.0f} MiB) exceeds the "
            f"memory budget ({memory_budget_bytes / 2**20:,.0f} MiB): IVF-PQ codes take "
            f"{memory['ivf_pq'] / 2**20:,.0f} MiB, re-ranked exactly against the item matrix",
            estimates,
        )
    hnsw_fits_memory = memory_budget_bytes is None or memory["hnsw"] <= memory_budget_bytes
    estimate = hnsw_build_s
    within = (estimate <= build_budget_s) if estimate is not None else n < 200_000
    if within and hnsw_fits_memory:
        told = f"~{estimate:.0f} s" if estimate is not None else "small"
        return IndexChoice(
            specs["hnsw"],
            f"HNSW's estimated build ({told}) fits the {build_budget_s:g} s budget: "
            "no training, best single-query latency at high recall",
            estimates,
        )
    why = (
        f"HNSW's estimated build (~{estimate:.0f} s) exceeds the {build_budget_s:g} s budget"
        if estimate is not None and not within
        else "HNSW's graph does not fit the memory budget"
        if not hnsw_fits_memory
        else f"{n:,} items is large for an unmeasured HNSW build"
    )
    return IndexChoice(
        specs["ivf_flat"],
        f"{why}: IVF-Flat ({nlist} lists) trains k-means on a sample and assigns once, "
        "with exact distances in the probed lists",
        estimates,
    )


def estimate_hnsw_build_s(
    items: np.ndarray,
    *,
    hnsw_m: int = 32,
    ef_construction: int = 40,
    samples: tuple[int, int] = (8000, 32000),
    seed: int = 0,
) -> float:
    """HNSW build time for the whole catalog on this machine, from measured builds on two
    random samples, extrapolated along the power law ``t = a·n^b`` fitted through them.

    The cost per inserted vector grows with the graph (more hops, and the graph falls out
    of the CPU caches), faster than n·log(n) suggests: on the 500,000 x 128 demo catalog
    an n·log(n) extrapolation from 4,000 vectors said 24 s where the build took 85 s; the
    fit through 8,000 and 32,000 (b = 1.38, ~2.4 s of sample builds) says 92 s. The
    exponent is kept between 1 and 2."""
    faiss = _faiss()
    n = items.shape[0]
    small, large = sorted(samples)
    rng = np.random.default_rng(seed)

    def build_seconds(size: int) -> float:
        rows = np.sort(rng.choice(n, size=size, replace=False))
        subset = np.ascontiguousarray(items[rows], dtype=np.float32)
        index = faiss.IndexHNSWFlat(subset.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        start = time.perf_counter()
        index.add(subset)
        return time.perf_counter() - start

    if n <= large:
        return build_seconds(n)
    t_small, t_large = build_seconds(small), build_seconds(large)
    exponent = math.log(max(t_large, 1e-9) / max(t_small, 1e-9)) / math.log(large / small)
    exponent = min(2.0, max(1.0, exponent))
    return t_large * (n / large) ** exponent


# -- building, saving, loading ------------------------------------------------------------


@dataclass(frozen=True)
class BuildInfo:
    seconds: float
    index_bytes: int
    faiss_version: str
    threads: int | None
    spec: Mapping[str, Any]
    vectors: int
    trained_on: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def index_vectors(items: np.ndarray, metric: str, space: str = "native") -> np.ndarray:
    """What the index holds: the vectors (normalized for cosine, augmented for MIPS→L2),
    contiguous float32."""
    return spaces.index_vectors(items, metric, space)


def build_index(
    items: np.ndarray, spec: IndexSpec, *, threads: int | None = None
) -> tuple[Any, BuildInfo]:
    """Build ``spec`` over ``items`` (never modified). Returns the index and how the build
    went (seconds, bytes, threads)."""
    faiss = _faiss()
    if items.shape[1] != spec.dim:
        raise ConfigError(
            f"index spec is for {spec.dim} dimensions, the items have {items.shape[1]}"
        )
    vectors = index_vectors(items, spec.metric, spec.space)
    in_index = spaces.index_metric(spec.metric, spec.space)
    metric = faiss.METRIC_L2 if in_index == "l2" else faiss.METRIC_INNER_PRODUCT
    with faiss_thread_count(threads):
        used = faiss.omp_get_max_threads()
        start = time.perf_counter()
        if spec.kind == "hnsw":
            index = faiss.IndexHNSWFlat(spec.index_dim, spec.hnsw_m, metric)
            index.hnsw.efConstruction = spec.ef_construction
            trained = 0
        else:
            index = faiss.index_factory(spec.index_dim, spec.factory, metric)
            trained = min(len(vectors), spec.train_size or len(vectors))
            rows = np.random.default_rng(spec.seed).choice(len(vectors), trained, replace=False)
            ivf = faiss.extract_index_ivf(index)
            ivf.cp.seed = spec.seed
            ivf.cp.verbose = False
            index.train(np.ascontiguousarray(vectors[np.sort(rows)]))
        index.add(vectors)
        seconds = time.perf_counter() - start
    info = BuildInfo(
        seconds=seconds,
        index_bytes=int(faiss.serialize_index(index).nbytes),
        faiss_version=faiss_version(),
        threads=used,
        spec=spec.to_dict(),
        vectors=len(vectors),
        trained_on=trained,
    )
    return index, info


def save_index(index: Any, info: BuildInfo, path: Path) -> Path:
    faiss = _faiss()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    faiss.write_index(index, str(partial))
    partial.replace(path)  # never leave a half-written index under the final name
    path.with_suffix(".json").write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return path


def load_index(path: Path) -> Any:
    faiss = _faiss()
    if not path.is_file():
        raise ConfigError(f"the saved index {path} is missing: re-run the tune step to build it")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise ConfigError(f"cannot read the saved index {path}: {exc}") from None


def load_build_info(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}


# -- searching ----------------------------------------------------------------------------


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
        faiss = _faiss()
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
            faiss = _faiss()
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


def per_query_recall(reference: np.ndarray, found: np.ndarray) -> np.ndarray:
    """recall@k of each row of ``found`` against the same row of ``reference``."""
    k = reference.shape[1]
    out = np.empty(len(reference))
    for row, (ref, got) in enumerate(zip(reference, found, strict=True)):
        out[row] = len(set(ref.tolist()) & set(got[:k].tolist())) / k
    return out


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
