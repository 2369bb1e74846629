"""Building a faiss index from an :class:`~.ann.IndexSpec` (training IVF kinds on a seeded
sample), and saving it atomically with a JSON record of the build beside it, or loading it
back, so a recipe reloads the tuned index instead of rebuilding it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError
from pipetune.plugins.recsys import spaces
from pipetune.plugins.recsys.ann import IndexSpec, faiss_version, load_faiss
from pipetune.plugins.recsys.threads import faiss_thread_count


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
    faiss = load_faiss()
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
    faiss = load_faiss()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    faiss.write_index(index, str(partial))
    partial.replace(path)  # never leave a half-written index under the final name
    path.with_suffix(".json").write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    return path


def load_index(path: Path) -> Any:
    faiss = load_faiss()
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
