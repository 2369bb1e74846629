"""``pipetune demo recsys``: the classic slow recommender, on realistic generated data.

The pipeline (one request at a time):

1. ``features`` — reads the user's profile and the embeddings of the 10 items in their
   recent history from a feature store, **one call per key** (11 round trips of 0.3 ms);
2. ``embed_user`` — a user tower (torch MLP, 168 -> 256 -> 128) turns them into the
   user's retrieval embedding; popular users come back, and it is recomputed each time;
3. ``rank`` — a ranking model (torch MLP over the user-item interaction, the retrieval
   score and 8 user and 8 item side features that are *not* in the retrieval embedding)
   scores **every item of the 500,000-item catalog** and returns the top 50.

The catalog comes from :mod:`pipetune.demos.recsys.data` (rank-32 latent factors in 256
Zipf-sized clusters, projected to 128-d, plus noise); both models are trained here on the
generated data (the ranker regresses a utility that mixes the retrieval score with a
side-feature interaction, so its top-50 is *not* the retrieval top-50) and cached under
``cache_dir("recsys")``. ``quick=True`` builds a 20,000-item version for tests.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.kernel.registry import Demo, DemoSetup, Dependency, require
from pipetune.core.loop.paths import cache_dir
from pipetune.demos.recsys import data
from pipetune.plugins.recsys import blocks
from pipetune.plugins.recsys.features import SimulatedFeatureStore

K = 50
#: The feature store's simulated latency: an in-region Redis-class round trip.
PER_CALL_MS = 0.3
PER_KEY_MS = 0.002
#: The ranking utility's side-feature weight (see :func:`utility`); chosen so that exact
#: retrieval needs about 2,000 candidates to keep 95 % of the ranker's top 50.
BETA = 0.025
TRAINING_VERSION = 1


@dataclass(frozen=True)
class DemoSize:
    catalog: data.CatalogSpec
    requests: int
    tower_steps: int
    ranker_steps: int
    ranker_users: int


FULL = DemoSize(
    data.CatalogSpec(), requests=120, tower_steps=800, ranker_steps=2000, ranker_users=512
)
QUICK = DemoSize(
    data.CatalogSpec(n_items=20_000, n_users=2_000, n_clusters=64),
    requests=40,
    tower_steps=100,
    ranker_steps=250,
    ranker_users=64,
)


def _torch() -> Any:
    return require("torch", "recsys", "the recsys demo's models")


# -- the models ------------------------------------------------------------------------------


def side_interaction(catalog: data.Catalog) -> np.ndarray:
    """The fixed matrix A of the utility's user-side x item-side term."""
    rng = np.random.default_rng(catalog.spec.seed + 7)
    n = catalog.spec.n_side
    return (rng.standard_normal((n, n)) / np.sqrt(n)).astype(np.float32)


def utility(catalog: data.Catalog, query: np.ndarray, user: int, ids: np.ndarray) -> np.ndarray:
    """What the ranker is trained to predict: the retrieval affinity plus how the item's
    side features (price, freshness, quality...) suit this user's sensitivities."""
    side = catalog.item_side[ids]
    taste = side_interaction(catalog).T @ catalog.user_side[user]
    return catalog.item_emb[ids] @ query + BETA * (side @ taste + 0.5 * side[:, 0])


class RankingModel:
    """The demo's ranker: ``ranker(request, ids) -> scores`` for the given catalog ids.

    Input per (user, item) pair: the element-wise product of the user and item
    embeddings, their dot product, the user's 8 side features and the item's 8 side
    features (the last two are not in the retrieval embedding).
    """

    chunk = 65_536

    def __init__(self, mlp: Any, item_emb: np.ndarray, item_side: np.ndarray, rank: int):
        self.mlp = mlp
        self.item_emb = item_emb
        self.item_side = item_side
        self.rank = rank

    def __call__(self, request: dict[str, Any], ids: np.ndarray) -> np.ndarray:
        torch = _torch()
        query = np.asarray(request["embedding"], dtype=np.float32)
        user_side = request["features"][("user", request["user_id"])][self.rank :]
        n = len(ids)
        whole = n == len(self.item_emb) and n > 0 and ids[0] == 0 and ids[-1] == n - 1
        scores = np.empty(n, dtype=np.float32)
        q = torch.from_numpy(query)
        su = torch.from_numpy(np.ascontiguousarray(user_side, dtype=np.float32))
        with torch.inference_mode():
            for start in range(0, n, self.chunk):
                stop = min(n, start + self.chunk)
                if whole:  # a slice, not a gather: the slow path is still a fair one
                    emb = torch.from_numpy(self.item_emb[start:stop])
                    side = torch.from_numpy(self.item_side[start:stop])
                else:
                    emb = torch.from_numpy(self.item_emb[ids[start:stop]])
                    side = torch.from_numpy(self.item_side[ids[start:stop]])
                x = torch.cat(
                    [emb * q, (emb @ q)[:, None], su.expand(stop - start, -1), side], dim=1
                )
                scores[start:stop] = self.mlp(x)[:, 0].numpy()
        return scores

    def __repr__(self) -> str:
        return f"RankingModel(catalog={len(self.item_emb):,}, mlp={self.mlp})"


def encode_user(request: dict[str, Any], model: Any) -> np.ndarray:
    """The user tower: profile + side features and the mean embedding of the history."""
    torch = _torch()
    features = request["features"]
    user = features[("user", request["user_id"])]
    history = np.mean([features[("item", i)] for i in request["history"]], axis=0)
    x = torch.from_numpy(np.concatenate([user, history]).astype(np.float32))[None, :]
    with torch.inference_mode():
        out = model(x)[0].numpy()
    return out / np.linalg.norm(out)


def feature_keys(request: dict[str, Any]) -> list[tuple[str, int]]:
    return [("user", request["user_id"])] + [("item", i) for i in request["history"]]


class StoreTable:
    """The feature store's contents: user features and item embeddings by key."""

    def __init__(self, catalog: data.Catalog) -> None:
        self.catalog = catalog

    def __call__(self, key: Any) -> np.ndarray:  # key: (kind, index)
        kind, ident = key
        if kind == "user":
            return self.catalog.user_features(ident)
        if kind == "item":
            return self.catalog.item_emb[ident]
        raise KeyError(key)


def _tower_target(catalog: data.Catalog, users: np.ndarray, history_mean: np.ndarray) -> np.ndarray:
    target = catalog.user_taste[users] @ catalog.projection
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    target = target + 0.3 * history_mean
    return target / np.linalg.norm(target, axis=1, keepdims=True)


def _train_tower(catalog: data.Catalog, steps: int, seed: int) -> Any:
    torch = _torch()
    torch.manual_seed(seed)
    spec = catalog.spec
    rng = np.random.default_rng(seed)
    users = rng.choice(spec.n_users, size=min(spec.n_users, 8192), replace=False)
    reqs = data.requests(catalog, len(users), seed=seed + 1)
    histories = np.stack([catalog.item_emb[r["history"]].mean(0) for r in reqs])
    users = np.array([r["user_id"] for r in reqs])
    inputs = np.concatenate(
        [catalog.user_profile[users], catalog.user_side[users], histories], axis=1
    )
    x = torch.from_numpy(inputs.astype(np.float32))
    y = torch.from_numpy(_tower_target(catalog, users, histories).astype(np.float32))
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, spec.dim)
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(steps):
        rows = torch.from_numpy(rng.integers(0, len(x), 512))
        out = torch.nn.functional.normalize(model(x[rows]), dim=1)
        loss = (1 - (out * y[rows]).sum(1)).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step == steps // 2:
            for group in optimizer.param_groups:
                group["lr"] = 1e-3
    model.eval()
    with torch.no_grad():
        cosine = float((torch.nn.functional.normalize(model(x), dim=1) * y).sum(1).mean())
    model.training_cosine = cosine
    return model


def _train_ranker(catalog: data.Catalog, tower: Any, steps: int, n_users: int, seed: int) -> Any:
    torch = _torch()
    torch.manual_seed(seed)
    spec = catalog.spec
    rng = np.random.default_rng(seed)
    reqs = data.requests(catalog, n_users, seed=seed + 2)
    store = StoreTable(catalog)
    pair_user, pair_item, queries = [], [], []
    top = min(spec.n_items, 4096)
    for number, request in enumerate(reqs):
        request = {**request, "features": {key: store(key) for key in feature_keys(request)}}
        query = encode_user(request, tower)
        queries.append(query)
        scores = catalog.item_emb @ query
        near = np.argpartition(-scores, top - 1)[:top]
        far = rng.integers(0, spec.n_items, top // 2)
        items = np.concatenate([rng.choice(near, top // 2, replace=False), far])
        pair_user.append(np.full(len(items), number))
        pair_item.append(items)
    users = np.concatenate(pair_user)
    items = np.concatenate(pair_item)
    q = np.stack(queries)[users]
    user_ids = np.array([r["user_id"] for r in reqs])[users]
    emb = catalog.item_emb[items]
    features = np.concatenate(
        [
            emb * q,
            np.einsum("ij,ij->i", emb, q)[:, None],
            catalog.user_side[user_ids],
            catalog.item_side[items],
        ],
        axis=1,
    ).astype(np.float32)
    a = side_interaction(catalog)
    side = catalog.item_side[items]
    target = np.einsum("ij,ij->i", emb, q) + BETA * (
        np.einsum("ij,ij->i", side @ a.T, catalog.user_side[user_ids]) + 0.5 * side[:, 0]
    )
    x = torch.from_numpy(features)
    y = torch.from_numpy(target.astype(np.float32))
    model = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
        torch.nn.ReLU(),
        torch.nn.Linear(32, 1),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        rows = torch.from_numpy(rng.integers(0, len(x), 2048))
        loss = torch.nn.functional.mse_loss(model(x[rows])[:, 0], y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    with torch.no_grad():
        pred = model(x[:200_000])[:, 0].numpy()
    model.training_r2 = float(
        1 - np.mean((pred - target[:200_000]) ** 2) / np.var(target[:200_000])
    )
    return model


@dataclass(frozen=True)
class DemoModels:
    tower: Any
    ranker_mlp: Any
    info: dict[str, Any]


def load_or_train(catalog: data.Catalog, size: DemoSize) -> DemoModels:
    """Train (or load from the cache) the user tower and the ranking MLP."""
    torch = _torch()
    key = hashlib.sha256(
        json.dumps(
            {
                "catalog": catalog.spec.key(),
                "tower": size.tower_steps,
                "ranker": size.ranker_steps,
                "users": size.ranker_users,
                "beta": BETA,
                "version": TRAINING_VERSION,
                "torch": torch.__version__.split("+")[0],
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    folder = cache_dir("recsys", f"models-{key}")
    path = folder / "models.pt"
    if path.is_file():
        try:
            saved = torch.load(path, weights_only=False)
            return DemoModels(saved["tower"], saved["ranker"], saved["info"])
        except Exception:
            pass  # retrain on a damaged cache
    torch_threads = torch.get_num_threads()
    started = time.perf_counter()
    # One thread: these small matrices gain little from more, and on a shared machine
    # torch's OpenMP threads spin against other processes (16x slower measured under load).
    torch.set_num_threads(1)
    try:
        tower = _train_tower(catalog, size.tower_steps, seed=catalog.spec.seed + 11)
        ranker = _train_ranker(
            catalog, tower, size.ranker_steps, size.ranker_users, seed=catalog.spec.seed + 13
        )
    finally:
        torch.set_num_threads(torch_threads)
    info = {
        "tower_training_cosine": tower.training_cosine,
        "ranker_training_r2": ranker.training_r2,
        "train_seconds": time.perf_counter() - started,
        "torch_threads": 1,
    }
    for model in (tower, ranker):
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    partial = folder / "models.partial.pt"
    torch.save({"tower": tower, "ranker": ranker, "info": info}, partial)
    partial.replace(path)
    return DemoModels(tower, ranker, info)


# -- retrieval vs ranking agreement -------------------------------------------------------------


def agreement(
    pipeline: Pipeline, requests: list[dict[str, Any]], sample: int = 8
) -> dict[str, Any]:
    """How much the ranker agrees with the retrieval scores, on ``sample`` requests: Pearson
    correlation over the whole catalog and within the retrieval top 1,000, and the share
    of the ranker's top-k found in the exact retrieval top-N for several N."""
    rank = pipeline.stage("rank")
    ranker, items = rank.slots["ranker"], rank.slots["items"]
    prefix = pipeline.prefix("rank")
    sizes = [50, 100, 200, 500, 1000, 2000, 5000, 10000]
    overall: list[Any] = []
    top: list[Any] = []
    kept: dict[int, list[Any]] = {n: [] for n in sizes if n <= len(items)}
    for request in requests[:sample]:
        state = prefix.run(request)
        retrieval = items @ state["embedding"]
        scores = ranker(state, np.arange(len(items)))
        overall.append(float(np.corrcoef(retrieval, scores)[0, 1]))
        best = np.argsort(-retrieval)
        near = best[:1000]
        top.append(float(np.corrcoef(retrieval[near], scores[near])[0, 1]))
        wanted = set(np.argsort(-scores)[:K].tolist())
        for n in kept:
            kept[n].append(len(wanted & set(best[:n].tolist())) / K)
    return {
        "requests": min(sample, len(requests)),
        "pearson_all_items": float(np.mean(overall)),
        "pearson_retrieval_top1000": float(np.mean(top)),
        f"top{K}_kept_by_exact_retrieval_topN": {
            str(n): float(np.mean(v)) for n, v in kept.items()
        },
    }


def _cached_agreement(
    pipeline: Pipeline, requests: list[dict[str, Any]], folder: Path
) -> dict[str, Any]:
    path = folder / "agreement.json"
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            pass
    result = agreement(pipeline, requests)
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


# -- the demo ---------------------------------------------------------------------------------


def build_pipeline(
    catalog: data.Catalog, models: DemoModels, *, per_call_ms: float = PER_CALL_MS
) -> Pipeline:
    store = SimulatedFeatureStore(
        StoreTable(catalog),
        per_call_ms=per_call_ms,
        per_key_ms=PER_KEY_MS,
        name="demo-feature-store",
    )
    ranker = RankingModel(models.ranker_mlp, catalog.item_emb, catalog.item_side, catalog.spec.rank)
    return Pipeline(
        "recsys-demo",
        (
            blocks.feature_lookup(store, feature_keys, name="features"),
            blocks.embedding(encode_user, model=models.tower, key="user_id", name="embed_user"),
            blocks.full_ranking(ranker, catalog.item_emb, K, name="rank"),
        ),
        output_kind="ranked_ids",
    )


def full_pipeline() -> Pipeline:
    """The demo's pipeline alone, as :func:`build` makes it: its factory, with which a
    fresh process builds it again from the cached catalog and models."""
    return _pipeline_only(FULL)


def quick_pipeline() -> Pipeline:
    """The ``quick=True`` demo's pipeline alone (the small demo's factory)."""
    return _pipeline_only(QUICK)


def _pipeline_only(size: DemoSize) -> Pipeline:
    catalog = data.load_or_generate(size.catalog)
    return build_pipeline(catalog, load_or_train(catalog, size))


def build(quick: bool = False) -> DemoSetup:
    size = QUICK if quick else FULL
    catalog = data.load_or_generate(size.catalog)
    models = load_or_train(catalog, size)
    pipeline = build_pipeline(catalog, models)
    reqs = data.requests(catalog, size.requests, seed=101)
    workload = Workload(
        tuple(reqs),
        name="recsys-requests",
        warmup=1,
        # One measured profiling pass of the full-catalog ranker is already minutes long.
        repeats=2 if quick else 1,
        seed=0,
    )
    folder = cache_dir("recsys", f"catalog-{size.catalog.key()}")
    stats = _cached_agreement(pipeline, reqs, folder)
    users = [r["user_id"] for r in reqs]
    notes = {
        "generator": size.catalog.describe(),
        "catalog_bytes": int(catalog.item_emb.nbytes),
        "feature_store": {
            "per_call_ms": PER_CALL_MS,
            "per_key_ms": PER_KEY_MS,
            "calls_per_request": 1 + size.catalog.history,
        },
        "k": K,
        "utility_beta": BETA,
        "models": models.info,
        "agreement": stats,
        "repeat_user_share": 1 - len(set(users)) / len(users),
    }
    return DemoSetup(
        pipeline=pipeline,
        workload=workload,
        # Issue #4's target, stated as a relative bound checked side by side against the
        # original (an absolute rate would depend on the machine): 100x the requests a
        # second, keeping >= 95 % of the full ranking's top-50.
        requirements=Requirements(
            p99_ms=50.0,
            min_speedup=100.0,
            max_accuracy_drop=0.05,
            optimize_for="throughput",
        ),
        description=(
            f"A recommender scoring all {size.catalog.n_items:,} items per request with a "
            f"torch ranking MLP, after 11 per-key feature-store reads and a user tower; "
            f"top-{K} out. The two-stage architecture should keep >= 95 % of the top-{K}."
        ),
        notes=notes,
        factory=f"{__name__}:{'quick_pipeline' if quick else 'full_pipeline'}",
    )


DEMO = Demo(
    "recsys",
    "Recommender: full-catalog ranking of 500,000 items -> two-stage ANN + ranker",
    build,
    requires=(
        Dependency("faiss", extra="recsys", purpose="ANN indexes", distribution="faiss-cpu"),
        Dependency("torch", extra="recsys", purpose="the ranking model and user tower"),
    ),
)

__all__ = ["DEMO", "FULL", "QUICK", "RankingModel", "agreement", "build"]
