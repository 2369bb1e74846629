"""faiss ANN indexes: which one to build, and faiss itself (imported on first use).

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
fastest at the recall target. faiss is imported inside the functions that use it
(:func:`load_faiss`).

Building, saving and loading an index live in :mod:`.ann_build`; searching it with exact
re-rank in :mod:`.ann_search`; reading item matrices and queries and exact top-k in
:mod:`.exact_search`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.plugins.recsys import spaces

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


# -- faiss ----------------------------------------------------------------------------------


def load_faiss() -> Any:
    """The faiss module, imported on first use (a missing install is a clear error)."""
    from pipetune.core.kernel.registry import require

    return require("faiss", "recsys", "ANN indexes")


def faiss_version() -> str:
    return str(getattr(load_faiss(), "__version__", "unknown"))


def is_faiss_index(value: Any) -> bool:
    module = type(value).__module__ or ""
    return module.startswith("faiss") and type(value).__name__.startswith("Index")


def faiss_metric_name(index: Any) -> str:
    faiss = load_faiss()
    return "ip" if int(index.metric_type) == int(faiss.METRIC_INNER_PRODUCT) else "l2"


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
    specs, memory = _candidate_specs(n, dim, metric)
    estimates: dict[str, Any] = {
        "catalog": n,
        "dim": dim,
        "memory_bytes": memory,
        "memory_budget_bytes": memory_budget_bytes,
        "build_budget_s": build_budget_s,
        "hnsw_build_s_est": hnsw_build_s,
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
    return _within_budgets(
        n,
        specs,
        memory,
        estimates,
        memory_budget_bytes=memory_budget_bytes,
        build_budget_s=build_budget_s,
        hnsw_build_s=hnsw_build_s,
    )


def _candidate_specs(n: int, dim: int, metric: str) -> tuple[dict[str, IndexSpec], dict[str, int]]:
    """The spec of each index kind for this catalog, and its estimated resident size."""
    nlist = default_nlist(n)
    pq_m = default_pq_m(dim)
    hnsw_m = 32 if dim >= 64 else 16
    memory = {
        "hnsw": index_memory_bytes("hnsw", n, dim, hnsw_m=hnsw_m),
        "ivf_flat": index_memory_bytes("ivf_flat", n, dim, nlist=nlist),
        "ivf_pq": index_memory_bytes("ivf_pq", n, dim, nlist=nlist, pq_m=pq_m),
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
    return specs, memory


def _within_budgets(
    n: int,
    specs: Mapping[str, IndexSpec],
    memory: Mapping[str, int],
    estimates: Mapping[str, Any],
    *,
    memory_budget_bytes: int | None,
    build_budget_s: float,
    hnsw_build_s: float | None,
) -> IndexChoice:
    """Rules 2-4 of the module docstring: IVF-PQ when a flat copy does not fit the memory
    budget, else HNSW when its build fits the time budget, else IVF-Flat."""
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
        f"{why}: IVF-Flat ({specs['ivf_flat'].nlist} lists) trains k-means on a sample and "
        "assigns once, with exact distances in the probed lists",
        estimates,
    )


def estimate_hnsw_build_s(
    items: np.ndarray,
    *,
    hnsw_m: int = 32,
    ef_construction: int = 40,
    samples: tuple[int, int] = (8000, 32000),
    seed: int = 0,
    threads: int | None = None,
) -> float:
    """HNSW build time for the whole catalog on this machine, from measured builds on two
    random samples, extrapolated along the power law ``t = a·n^b`` fitted through them.

    The cost per inserted vector grows with the graph (more hops, and the graph falls out
    of the CPU caches), faster than n·log(n) suggests: on the 500,000 x 128 demo catalog
    an n·log(n) extrapolation from 4,000 vectors said 24 s where the build took 85 s; the
    fit through 8,000 and 32,000 (b = 1.38, ~2.4 s of sample builds) says 92 s. The
    exponent is kept between 1 and 2. ``threads``: faiss threads for the sample builds (the
    count the build itself will use, :func:`~pipetune.plugins.recsys.threads.build_threads`;
    ``None``: as set), so an estimate taken while searches are pinned to fewer threads
    does not predict a different build."""
    from pipetune.plugins.recsys.threads import faiss_thread_count

    faiss = load_faiss()
    n = items.shape[0]
    small, large = sorted(samples)
    rng = np.random.default_rng(seed)

    def build_seconds(size: int) -> float:
        rows = np.sort(rng.choice(n, size=size, replace=False))
        subset = np.ascontiguousarray(items[rows], dtype=np.float32)
        index = faiss.IndexHNSWFlat(subset.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        with faiss_thread_count(threads):
            start = time.perf_counter()
            index.add(subset)
            return time.perf_counter() - start

    if n <= large:
        return build_seconds(n)
    t_small, t_large = build_seconds(small), build_seconds(large)
    exponent = math.log(max(t_large, 1e-9) / max(t_small, 1e-9)) / math.log(large / small)
    exponent = min(2.0, max(1.0, exponent))
    return t_large * (n / large) ** exponent
