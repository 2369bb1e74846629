"""Fixtures for the recsys plugin tests: small clustered catalogs, a plugin manager, tune
contexts built by hand (the validator is not needed to test tune and materialize)."""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Workload


def clustered(n: int, dim: int, *, rank: int = 8, clusters: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors with low intrinsic dimension: cluster centres in a rank-r space,
    projected, plus noise (the structure the demo's generator has, at test size)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, rank))
    latent = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, rank))
    vectors = latent @ rng.standard_normal((rank, dim)) + 0.3 * rng.standard_normal((n, dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32)


@pytest.fixture(scope="session")
def catalog() -> np.ndarray:
    return clustered(12_000, 32)


@pytest.fixture(scope="session")
def queries(catalog: np.ndarray) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    picks = catalog[rng.integers(0, len(catalog), 60)]
    noisy = picks + 0.2 * rng.standard_normal(picks.shape).astype(np.float32)
    return [q / np.linalg.norm(q) for q in noisy.astype(np.float32)]


@pytest.fixture
def pm() -> Any:
    return get_plugin_manager(entry_points=False)


def digest(value: Any) -> str:
    """A content digest of an array, a torch module's state or a faiss index."""
    if hasattr(value, "state_dict"):
        h = hashlib.sha256()
        for name, tensor in sorted(value.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().numpy().tobytes())
        return h.hexdigest()
    if type(value).__module__.startswith("faiss"):
        import faiss

        return hashlib.sha256(faiss.serialize_index(value).tobytes()).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()


def make_context(
    pm: Any, pipeline: Pipeline, workload: Workload, root: Path, *, drop: float = 0.05
) -> TuneContext:
    return TuneContext(
        pm,
        pipeline,
        workload,
        Requirements(max_accuracy_drop=drop),
        ArtifactStore(root),
    )


@pytest.fixture(autouse=True, scope="session")
def _one_thread() -> Any:
    """faiss and torch on one thread for these tests: nothing here measures speed, and on a
    shared machine OpenMP threads spinning against other processes slow builds ~10x."""
    from pipetune.plugins.recsys.threads import pinned_threads

    with contextlib.suppress(ImportError):
        import faiss  # noqa: F401
    with pinned_threads(1):
        yield
