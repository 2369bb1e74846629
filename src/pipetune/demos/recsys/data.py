"""The recsys demo's data generator: a catalog with the structure real embeddings have.

Latent-factor and two-tower embeddings have a low intrinsic dimension and are clustered
(items of a category sit together). The generator draws, with a fixed seed:

* ``n_clusters`` category centres in a ``rank``-dimensional latent space, category sizes
  Zipf-distributed (exponent ``cluster_skew``);
* each item's latent vector = its centre + ``cluster_spread`` x N(0, I); projected to
  ``dim`` dimensions by a fixed random ``rank x dim`` matrix, normalized, plus isotropic
  noise of relative norm ``noise`` (so the spectrum has a long tail, not a sharp rank cut),
  normalized again: unit-norm item embeddings (cosine two-tower style, searched by inner
  product);
* ``n_side`` item side features (price, freshness, quality... as standard normals) that
  are *not* in the embedding, and a popularity rank per item (Zipf, ``item_skew``);
* users: a favourite category (by category size), a latent taste near its centre, profile
  features = taste + noise, and ``n_side`` side features (sensitivities);
* requests: users drawn Zipf(``user_skew``) — popular users come back, so requests repeat
  users — each with a history of ``history`` items from their category, popular first.

Everything is cached under ``cache_dir("recsys")`` keyed by the parameters.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.loop.paths import cache_dir

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class CatalogSpec:
    n_items: int = 500_000
    dim: int = 128
    rank: int = 32
    n_clusters: int = 256
    cluster_skew: float = 0.8
    cluster_spread: float = 0.7
    noise: float = 0.5
    n_users: int = 50_000
    user_skew: float = 1.05
    item_skew: float = 1.0
    n_side: int = 8
    history: int = 10
    seed: int = 0

    def key(self) -> str:
        text = json.dumps({**asdict(self), "version": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {**asdict(self), "generator_version": GENERATOR_VERSION}


@dataclass(frozen=True)
class Catalog:
    spec: CatalogSpec
    item_emb: np.ndarray  # (n_items, dim) float32, unit norm
    item_side: np.ndarray  # (n_items, n_side) float32
    item_cluster: np.ndarray  # (n_items,) int32
    item_popularity: np.ndarray  # (n_items,) float32, share of interactions
    user_profile: np.ndarray  # (n_users, rank) float32
    user_side: np.ndarray  # (n_users, n_side) float32
    user_cluster: np.ndarray  # (n_users,) int32
    user_taste: np.ndarray  # (n_users, rank) float32 (hidden truth, for training only)
    projection: np.ndarray  # (rank, dim) float32

    def user_features(self, user: int) -> np.ndarray:
        """What the feature store holds for a user: profile and side features."""
        return np.concatenate([self.user_profile[user], self.user_side[user]])


def _zipf(count: int, exponent: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    return weights / weights.sum()


def _unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def generate(spec: CatalogSpec) -> Catalog:
    rng = np.random.default_rng(spec.seed)
    f32 = np.float32
    centres = rng.standard_normal((spec.n_clusters, spec.rank)).astype(f32)
    cluster_p = _zipf(spec.n_clusters, spec.cluster_skew)
    item_cluster = rng.choice(spec.n_clusters, size=spec.n_items, p=cluster_p).astype(np.int32)
    projection = (rng.standard_normal((spec.rank, spec.dim)) / np.sqrt(spec.rank)).astype(f32)
    item_emb = np.empty((spec.n_items, spec.dim), dtype=f32)
    for start in range(0, spec.n_items, 100_000):  # bounded temporaries
        stop = min(spec.n_items, start + 100_000)
        latent = centres[item_cluster[start:stop]] + spec.cluster_spread * rng.standard_normal(
            (stop - start, spec.rank), dtype=f32
        )
        block = _unit(latent @ projection)
        block += spec.noise / np.sqrt(spec.dim) * rng.standard_normal(block.shape, dtype=f32)
        item_emb[start:stop] = _unit(block)
    item_side = rng.standard_normal((spec.n_items, spec.n_side)).astype(f32)
    popularity = _zipf(spec.n_items, spec.item_skew)[rng.permutation(spec.n_items)].astype(f32)

    user_cluster = rng.choice(spec.n_clusters, size=spec.n_users, p=cluster_p).astype(np.int32)
    user_taste = centres[user_cluster] + spec.cluster_spread * rng.standard_normal(
        (spec.n_users, spec.rank), dtype=f32
    )
    user_profile = user_taste + 0.3 * rng.standard_normal(user_taste.shape, dtype=f32)
    user_side = rng.standard_normal((spec.n_users, spec.n_side)).astype(f32)
    return Catalog(
        spec=spec,
        item_emb=item_emb,
        item_side=item_side,
        item_cluster=item_cluster,
        item_popularity=popularity,
        user_profile=user_profile.astype(f32),
        user_side=user_side,
        user_cluster=user_cluster,
        user_taste=user_taste.astype(f32),
        projection=projection,
    )


_ARRAYS = (
    "item_emb",
    "item_side",
    "item_cluster",
    "item_popularity",
    "user_profile",
    "user_side",
    "user_cluster",
    "user_taste",
    "projection",
)


def load_or_generate(spec: CatalogSpec, folder: Path | None = None) -> Catalog:
    """The catalog for ``spec``, from the cache when it was generated before."""
    folder = folder or cache_dir("recsys", f"catalog-{spec.key()}")
    done = folder / "done.json"
    if done.is_file():
        try:
            arrays = {name: np.load(folder / f"{name}.npy") for name in _ARRAYS}
            return Catalog(spec=spec, **arrays)
        except (OSError, ValueError):
            pass  # a damaged cache is regenerated
    catalog = generate(spec)
    folder.mkdir(parents=True, exist_ok=True)
    for name in _ARRAYS:
        partial = folder / f"{name}.partial.npy"
        np.save(partial, getattr(catalog, name))
        os.replace(partial, folder / f"{name}.npy")
    done.write_text(json.dumps(spec.describe(), indent=2) + "\n")
    return catalog


def requests(catalog: Catalog, count: int, *, seed: int = 1) -> list[dict[str, Any]]:
    """``count`` requests: Zipf-popular users (so users repeat), each with the 10 items of
    their recent history. A returning user's history has moved on by one item half the
    time (they interacted with something since), so a cached user embedding is slightly
    stale, as it would be in production."""
    spec = catalog.spec
    rng = np.random.default_rng(seed)
    user_rank = rng.permutation(spec.n_users)  # which user is the r-th most active
    users = user_rank[rng.choice(spec.n_users, size=count, p=_zipf(spec.n_users, spec.user_skew))]
    members: dict[int, np.ndarray] = {}
    histories: dict[int, list[int]] = {}
    out = []
    for number, user in enumerate(users.tolist()):
        cluster = int(catalog.user_cluster[user])
        if cluster not in members:
            ids = np.flatnonzero(catalog.item_cluster == cluster)
            members[cluster] = ids[np.argsort(-catalog.item_popularity[ids])][:500]
        pool = members[cluster]
        weights = catalog.item_popularity[pool].astype(np.float64)
        weights /= weights.sum()
        history = histories.get(user)
        if history is None:
            picks = rng.choice(pool, size=min(spec.history, len(pool)), replace=False, p=weights)
            history = [int(i) for i in picks]
        elif rng.random() < 0.5:
            fresh = [int(i) for i in rng.choice(pool, size=4, p=weights) if int(i) not in history]
            if fresh:
                history = [*history[1:], fresh[0]]
        histories[user] = history
        out.append(
            {
                "request_id": number,
                "user_id": int(user),
                "ts": 1_700_000_000.0 + number * 0.25,
                "history": list(history),
            }
        )
    return out


def isotropic(n: int, dim: int, *, seed: int = 0) -> np.ndarray:
    """Unit vectors drawn uniformly on the sphere: no structure at all, the worst case for
    ANN (every point is about equally far from every other)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        out[start:stop] = _unit(rng.standard_normal((stop - start, dim), dtype=np.float32))
    return out


def latent_factors(
    n: int, dim: int, *, norm_spread: float = 3.7, decay: float = 1.0, seed: int = 0
) -> np.ndarray:
    """Item vectors shaped like a matrix factorization's item factors: Gaussian directions
    whose spectrum decays as ``i^-decay`` (a few strong factors, a long tail), with norms
    spread log-uniformly over ``[1, norm_spread]`` (popular items end up longer). Under
    inner product the longest vectors dominate every ranking: the case where the MIPS→L2
    reduction matters."""
    rng = np.random.default_rng(seed)
    scale = _spectrum(dim, decay)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        block = _unit(rng.standard_normal((stop - start, dim), dtype=np.float32) * scale)
        norms = np.exp(rng.uniform(0.0, np.log(norm_spread), size=stop - start))
        out[start:stop] = block * norms[:, None].astype(np.float32)
    return out


def latent_queries(count: int, dim: int, *, decay: float = 1.0, seed: int = 1) -> np.ndarray:
    """User vectors from the same factor spectrum as :func:`latent_factors` (unnormalized)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((count, dim), dtype=np.float32) * _spectrum(dim, decay)).astype(
        np.float32
    )


def _spectrum(dim: int, decay: float) -> np.ndarray:
    scale = np.arange(1, dim + 1, dtype=np.float32) ** -decay
    return (scale / np.sqrt((scale**2).mean())).astype(np.float32)
