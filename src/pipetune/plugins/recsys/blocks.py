"""The recsys building blocks: stages the plugin knows how to optimize.

* :func:`full_ranking` — a ranker that scores every catalog item per request (the classic
  slow path the two-stage architecture replaces).
* :func:`exact_topk` — exact top-k retrieval over an item matrix (numpy matmul +
  argpartition, the competent exact baseline).
* :func:`embedding` — a model that turns a request into a (user) embedding.
* :func:`feature_lookup` — reads features for a request's keys from a feature store.

And the stages the plugin builds when it transforms a pipeline: :func:`ann_candidates`
(ANN retrieval handing N candidates on), :func:`candidate_ranking` (the ranker over those
candidates only) and :func:`ann_topk` (ANN + exact re-rank replacing exact retrieval).

Every function here is an importable, picklable callable object; the components live in
the stage's slots, so other plugins can swap them (a compiled ranker, say).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError, PipelineError
from pipetune.core.kernel.model import Stage
from pipetune.plugins.recsys import ann, ann_search, exact_search
from pipetune.plugins.recsys.cache import TTLCache
from pipetune.plugins.recsys.features import read_many

FULL_RANKING = "recsys.full_ranking"
EXACT_TOPK = "recsys.exact_topk"
EMBEDDING = "recsys.embedding"
FEATURE_LOOKUP = "recsys.feature_lookup"
ANN_CANDIDATES = "recsys.ann_candidates"
CANDIDATE_RANKING = "recsys.candidate_ranking"
ANN_TOPK = "recsys.ann_topk"

#: Keys tried, in order, to find the retrieval query in a request mapping.
QUERY_KEYS = ("query", "embedding", "user_embedding", "query_embedding", "vector")


@dataclass(frozen=True)
class Candidates:
    """What an ANN retrieval stage hands to the ranker: the request and N item ids."""

    request: Any
    ids: np.ndarray


def default_query(request: Any) -> Any:
    """The retrieval vector of a request: the request itself when it is a vector, else its
    ``query``/``embedding``/``user_embedding`` entry or attribute."""
    if isinstance(request, Mapping):
        for key in QUERY_KEYS:
            if key in request:
                return request[key]
        raise PipelineError(
            f"cannot find the query vector in a request with keys {sorted(map(str, request))}; "
            f"give the stage a `query=` function (tried {', '.join(QUERY_KEYS)})"
        )
    if hasattr(request, "shape") or isinstance(request, list | tuple):
        return request
    for key in QUERY_KEYS:
        value = getattr(request, key, None)
        if value is not None:
            return value
    raise PipelineError(
        f"cannot find the query vector in a {type(request).__name__}; give the stage a "
        "`query=` function"
    )


def _top_ids(scores: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != ids.shape[0]:
        raise PipelineError(
            f"the ranker returned {scores.shape[0]} scores for {ids.shape[0]} items"
        )
    if not np.isfinite(scores).all():
        raise PipelineError("the ranker returned NaN or infinite scores")
    order = exact_search.top_k_rows(scores[None, :], min(k, len(ids)))[0]
    return ids[order].astype(np.int64)


def _check_k(k: Any, n: int, where: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"{where}: k must be a positive integer, got {k!r}")
    if k > n:
        raise ConfigError(f"{where}: k={k} is larger than the catalog ({n:,} items)")
    return int(k)


# -- full-catalog ranking ------------------------------------------------------------------


class RankAll:
    """``fn`` of a full-ranking stage: score items with the ranker, return the top-k ids.

    ``candidates=None`` scores the whole catalog (the slow path); given ids, only those —
    which is what lets the plugin put ANN retrieval in front.
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(
        self,
        request: Any,
        *,
        ranker: Callable[..., Any],
        k: int,
        catalog_size: int,
        candidates: np.ndarray | None = None,
    ) -> np.ndarray:
        ids = np.arange(catalog_size, dtype=np.int64) if candidates is None else candidates
        return _top_ids(ranker(request, ids), ids, k)


def full_ranking(
    ranker: Callable[[Any, np.ndarray], Any],
    items: Any,
    k: int,
    *,
    query: Callable[[Any], Any] | None = None,
    metric: str = "ip",
    name: str = "rank",
) -> Stage:
    """A stage that scores every catalog item with ``ranker`` and returns the top-k ids.

    Args:
        ranker: ``ranker(request, ids) -> scores`` (higher is better) for the item ids given.
        items: the item retrieval embeddings (numpy or torch, items x dim): the catalog ANN
            retrieval will search. Row ``i`` is item id ``i``.
        k: how many ids the stage returns.
        query: ``query(request) -> vector``, the request's retrieval vector (default: the
            request's ``query``/``embedding`` entry, see :func:`default_query`).
        metric: ``ip`` (inner product), ``l2`` or ``cosine`` for the retrieval embeddings.
    """
    where = f"stage {name!r}, slot 'items'"
    matrix = exact_search.as_matrix(items, where)
    exact_search.check_finite(matrix, where)
    if metric not in ann.METRICS:
        raise ConfigError(f"stage {name!r}: metric must be one of {', '.join(ann.METRICS)}")
    if not callable(ranker):
        raise ConfigError(f"stage {name!r}: ranker must be callable as ranker(request, ids)")
    k = _check_k(k, matrix.shape[0], f"stage {name!r}")
    return Stage(
        name,
        RankAll(name),
        kind="ranking",
        slots={
            "ranker": ranker,
            "items": items,
            "k": k,
            "catalog_size": matrix.shape[0],
            "query": query or default_query,
            "metric": metric,
        },
        output_kind="ranked_ids",
        meta={"block": FULL_RANKING},
    )


# -- exact retrieval ------------------------------------------------------------------------


class ExactTopK:
    """``fn`` of an exact top-k stage: numpy matmul + argpartition over the item matrix.

    A 1-D query returns a 1-D array of k ids; a (batch, dim) query returns (batch, k).
    """

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(self, query: Any, *, items: Any, k: int, metric: str = "ip") -> np.ndarray:
        matrix = (
            items if isinstance(items, np.ndarray) else exact_search.as_matrix(items, self.stage)
        )
        queries, single = exact_search.as_queries(query, matrix.shape[1], f"stage {self.stage!r}")
        vectors = exact_search.normalized(queries) if metric == "cosine" else queries
        if metric == "cosine":
            scores = exact_search.exact_scores(matrix, vectors, "ip")
            scores /= np.maximum(np.linalg.norm(matrix, axis=1), 1e-30)[None, :]
        else:
            scores = exact_search.exact_scores(matrix, vectors, metric)
        top = exact_search.top_k_rows(scores, k).astype(np.int64)
        return top[0] if single else top

    def batch(
        self, queries: Sequence[Any], *, items: Any, k: int, metric: str = "ip"
    ) -> list[np.ndarray]:
        """One matrix product for a list of single queries."""
        if any(np.ndim(q) != 1 for q in queries):
            return [self(q, items=items, k=k, metric=metric) for q in queries]
        return list(
            self(np.stack([np.asarray(q) for q in queries]), items=items, k=k, metric=metric)
        )


def exact_topk(items: Any, k: int, *, metric: str = "ip", name: str = "retrieve") -> Stage:
    """Exact top-k retrieval: ids of the ``k`` items scoring highest against the query.

    ``items`` is the item matrix (numpy or torch, items x dim; row ``i`` is id ``i``);
    ``metric`` is ``ip``, ``l2`` or ``cosine``. The stage takes a query vector (or a batch
    of them) and returns ranked ids.
    """
    where = f"stage {name!r}, slot 'items'"
    matrix = exact_search.as_matrix(items, where)
    exact_search.check_finite(matrix, where)
    if metric not in ann.METRICS:
        raise ConfigError(f"stage {name!r}: metric must be one of {', '.join(ann.METRICS)}")
    k = _check_k(k, matrix.shape[0], f"stage {name!r}")
    fn = ExactTopK(name)
    return Stage(
        name,
        fn,
        kind="retrieval",
        slots={"items": matrix, "k": k, "metric": metric},
        batch_fn=fn.batch,
        output_kind="ranked_ids",
        meta={"block": EXACT_TOPK},
    )


# -- embeddings -----------------------------------------------------------------------------


class Embed:
    """``fn`` of an embedding stage: ``encode(request, model)``, attached to the request
    under ``into`` (or returned alone when ``into`` is ``None``). With a ``cache`` slot the
    embedding is looked up by ``key(request)`` first."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(
        self,
        request: Any,
        *,
        encode: Callable[[Any, Any], Any],
        model: Any,
        key: Callable[[Any], Hashable],
        into: str | None = "embedding",
        cache: TTLCache | None = None,
    ) -> Any:
        if cache is None:
            vector = encode(request, model)
        else:
            vector = cache.get_or_compute(key(request), lambda: encode(request, model))
        if into is None:
            return vector
        if not isinstance(request, Mapping):
            raise PipelineError(
                f"stage {self.stage!r}: cannot attach the embedding to a "
                f"{type(request).__name__}; pass into=None to return the embedding alone"
            )
        return {**request, into: vector}


def key_of(field: str) -> Callable[[Any], Hashable]:
    """A key function reading ``field`` from a request mapping or object."""
    return _FieldKey(field)


class _FieldKey:
    def __init__(self, field: str) -> None:
        self.field = field

    def __call__(self, request: Any) -> Hashable:
        if isinstance(request, Mapping):
            if self.field not in request:
                raise PipelineError(f"the request has no {self.field!r} to key the cache by")
            return request[self.field]
        value = getattr(request, self.field, None)
        if value is None:
            raise PipelineError(f"the request has no {self.field!r} to key the cache by")
        return value

    def __repr__(self) -> str:
        return f"key_of({self.field!r})"


def embedding(
    encode: Callable[[Any, Any], Any],
    *,
    model: Any,
    key: str | Callable[[Any], Hashable] = "user_id",
    into: str | None = "embedding",
    name: str = "embed",
) -> Stage:
    """A stage computing a request's (user) embedding with ``encode(request, model)``.

    ``key`` names the user: a field of the request, or a function of it. It is what the
    user-embedding cache keys by; declaring it is what makes the cache possible.
    """
    if not callable(encode):
        raise ConfigError(f"stage {name!r}: encode must be callable as encode(request, model)")
    key_fn = key_of(key) if isinstance(key, str) else key
    if not callable(key_fn):
        raise ConfigError(f"stage {name!r}: key must be a field name or a function")
    return Stage(
        name,
        Embed(name),
        kind="inference",
        slots={"encode": encode, "model": model, "key": key_fn, "into": into},
        meta={"block": EMBEDDING},
    )


# -- feature lookups ------------------------------------------------------------------------


class Lookup:
    """``fn`` of a feature-lookup stage: read ``keys(request)`` from the store (one call per
    key, or one batch call when ``batched``), attach ``{key: value}`` under ``into``."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(
        self,
        request: Any,
        *,
        store: Any,
        keys: Callable[[Any], Sequence[Hashable]],
        into: str = "features",
        batched: bool = False,
    ) -> Any:
        wanted = list(keys(request))
        values = read_many(store, wanted) if batched else [store.get(key) for key in wanted]
        if not isinstance(request, Mapping):
            raise PipelineError(
                f"stage {self.stage!r}: requests must be mappings to attach "
                f"features to, got {type(request).__name__}"
            )
        return {**request, into: dict(zip(wanted, values, strict=True))}


def feature_lookup(
    store: Any,
    keys: Callable[[Any], Sequence[Hashable]],
    *,
    into: str = "features",
    batched: bool = False,
    name: str = "features",
) -> Stage:
    """A stage reading a request's features from ``store``.

    ``keys(request)`` lists the keys to read (the user, the items in their history...).
    With ``batched=False`` the stage calls ``store.get(key)`` once per key — the common
    pattern the plugin turns into one ``store.get_many(keys)``.
    """
    if not callable(getattr(store, "get", None)):
        raise ConfigError(f"stage {name!r}: the store needs a get(key) method")
    if not callable(keys):
        raise ConfigError(f"stage {name!r}: keys must be a function of the request")
    return Stage(
        name,
        Lookup(name),
        kind="features",
        slots={"store": store, "keys": keys, "into": into, "batched": batched},
        meta={"block": FEATURE_LOOKUP},
    )


# -- stages the plugin builds ------------------------------------------------------------------


class AnnRetrieve:
    """``fn`` of an ANN candidate stage: the request's query -> N candidate ids."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(
        self,
        request: Any,
        *,
        searcher: ann_search.AnnSearcher,
        query: Callable[[Any], Any],
        n_candidates: int,
    ) -> Candidates:
        queries, single = exact_search.as_queries(
            query(request), searcher.d, f"stage {self.stage!r}"
        )
        if not single:
            raise PipelineError(
                f"stage {self.stage!r}: one query vector per request expected, got {len(queries)}"
            )
        _, ids = searcher.candidates(queries, n_candidates)
        row = ids[0]
        return Candidates(request, row[row >= 0].astype(np.int64))


def ann_candidates(
    name: str,
    searcher: ann_search.AnnSearcher,
    query: Callable[[Any], Any],
    n_candidates: int,
    *,
    notes: Mapping[str, Any] | None = None,
) -> Stage:
    return Stage(
        name,
        AnnRetrieve(name),
        kind="retrieval",
        slots={"searcher": searcher, "query": query, "n_candidates": int(n_candidates)},
        meta={"block": ANN_CANDIDATES, **(notes or {})},
    )


class RankCandidates:
    """``fn`` of the ranking stage behind ANN retrieval: the original ranking function,
    called with ``candidates=`` the retrieved ids."""

    def __init__(self, stage: str, rank: Callable[..., Any]) -> None:
        self.stage = stage
        self.rank = rank
        self._accepts = _accepted(rank)

    def __call__(self, candidates: Candidates, /, **slots: Any) -> Any:
        if not isinstance(candidates, Candidates):
            raise PipelineError(
                f"stage {self.stage!r} expects the candidates of the ANN stage "
                f"before it, got {type(candidates).__name__}"
            )
        wanted = {name: value for name, value in slots.items() if self._accepts(name)}
        return self.rank(candidates.request, candidates=candidates.ids, **wanted)


def _accepted(fn: Callable[..., Any]) -> Callable[[str], bool]:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return lambda name: False
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return lambda name: True
    names = {
        p.name
        for p in params
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }
    return names.__contains__


def accepts_candidates(fn: Callable[..., Any]) -> bool:
    """Whether a ranking function takes ``candidates=`` (so it can rank a subset)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "candidates" in params


def candidate_ranking(original: Stage, *, notes: Mapping[str, Any] | None = None) -> Stage:
    """The original ranking stage, re-pointed at the candidates of the ANN stage."""
    fn = RankCandidates(original.name, original.fn)
    return Stage(
        original.name,
        fn,
        kind=original.kind,
        slots=dict(original.slots),
        output_kind=original.output_kind,
        meta={
            **original.meta,
            "block": CANDIDATE_RANKING,
            "original_block": original.meta.get("block"),
            **(notes or {}),
        },
    )


#: How an ANN top-k stage returns ids, to match the stage it replaces.
OUTPUT_FORMATS = ("array", "list", "scores_ids", "faiss")


class AnnTopK:
    """``fn`` of an ANN top-k stage: ANN candidates re-ranked exactly, returned in the
    replaced stage's output format."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def __call__(
        self, query: Any, *, searcher: ann_search.AnnSearcher, k: int, output_format: str = "array"
    ) -> Any:
        queries, single = exact_search.as_queries(query, searcher.d, f"stage {self.stage!r}")
        distances, ids = searcher.search(queries, k)
        return _format(distances, ids, single, output_format, searcher.spec.metric)

    def batch(
        self,
        queries: Sequence[Any],
        *,
        searcher: ann_search.AnnSearcher,
        k: int,
        output_format: str = "array",
    ) -> list[Any]:
        if any(np.ndim(q) != 1 for q in queries):
            return [self(q, searcher=searcher, k=k, output_format=output_format) for q in queries]
        stacked, _ = exact_search.as_queries(
            np.stack([np.asarray(q) for q in queries]), searcher.d, f"stage {self.stage!r}"
        )
        distances, ids = searcher.search(stacked, k)
        return [
            _format(distances[i : i + 1], ids[i : i + 1], True, output_format, searcher.spec.metric)
            for i in range(len(queries))
        ]


def _format(
    distances: np.ndarray, ids: np.ndarray, single: bool, output_format: str, metric: str
) -> Any:
    if output_format == "faiss":
        return distances, ids
    rows_ids = ids[0] if single else ids
    rows_scores = distances[0] if single else distances
    if output_format == "list":
        return rows_ids.tolist()
    if output_format == "scores_ids":
        scores = -rows_scores if metric == "l2" else rows_scores
        return scores, rows_ids
    return rows_ids


def ann_topk(
    name: str,
    searcher: ann_search.AnnSearcher,
    k: int,
    *,
    output_format: str = "array",
    kind: str = "retrieval",
    notes: Mapping[str, Any] | None = None,
) -> Stage:
    if output_format not in OUTPUT_FORMATS:
        raise ConfigError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}")
    fn = AnnTopK(name)
    return Stage(
        name,
        fn,
        kind=kind,
        slots={"searcher": searcher, "k": int(k), "output_format": output_format},
        batch_fn=fn.batch,
        output_kind="ranked_ids",
        meta={"block": ANN_TOPK, **(notes or {})},
    )
