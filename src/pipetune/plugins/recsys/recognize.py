"""Recognizing recsys stages: the plugin's own blocks and plain user code.

Plain code is recognized by what sits in its slots:

* a ranker (``ranker=``, or a torch module / callable in ``model=`` on a ``ranking`` stage)
  next to a catalog-sized item matrix (``items=``...) — a ranker scoring every item;
* an item matrix (numpy or torch, ``items=``/``item_embeddings=``/``catalog=``...) or a
  faiss flat index (``index=``) with no ranker — exact top-k retrieval;
* a torch module in ``model=``/``encoder=``/``user_tower=`` on an ``inference`` or
  ``embedding`` stage — an embedding model;
* an object with ``get`` in ``store=``/``feature_store=`` — a feature lookup.

Recognition never runs the stage; what needs running (the query format, k, the metric of
plain retrieval code, calls per request) is measured in ``profile_pipeline``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.recsys import ann, blocks, exact_search

CATALOG_SLOTS = (
    "items",
    "item_embeddings",
    "item_vectors",
    "catalog",
    "embeddings",
    "vectors",
    "matrix",
)
RANKER_SLOTS = ("ranker", "scorer")
MODEL_SLOTS = ("model",)
ENCODER_SLOTS = ("model", "encoder", "user_tower", "tower")
STORE_SLOTS = ("store", "feature_store", "features_store", "client")
K_SLOTS = ("k", "top_k", "topk", "n_results", "num_results")
ROLES = ("full_ranking", "exact_topk", "embedding", "feature_lookup", "ann")


@dataclass(frozen=True)
class Recognized:
    """What a stage is to the recsys plugin.

    ``source`` says how it was recognized (``block``, ``items``, ``index``, ``ranker``...);
    ``slot`` names the slot holding the catalog or component. ``transformable`` is False
    with ``why_not`` when the plugin can measure the stage but not rewrite it.
    """

    role: str
    stage: str
    source: str
    slot: str | None = None
    catalog_size: int | None = None
    dim: int | None = None
    metric: str | None = None
    k: int | None = None
    transformable: bool = True
    why_not: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        data = {
            "role": self.role,
            "source": self.source,
            "slot": self.slot,
            "catalog_size": self.catalog_size,
            "dim": self.dim,
            "metric": self.metric,
            "k": self.k,
            "transformable": self.transformable,
        }
        if self.why_not:
            data["why_not"] = self.why_not
        data.update(self.extra)
        return {key: value for key, value in data.items() if value is not None}


def _is_matrix(value: Any) -> bool:
    if ann.is_faiss_index(value):
        return False
    shape = getattr(value, "shape", None)
    if shape is None or len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        return False
    dtype = str(getattr(value, "dtype", ""))
    return "float" in dtype or "half" in dtype or "bfloat" in dtype


def is_torch_module(value: Any) -> bool:
    return any(
        f"{klass.__module__}.{klass.__qualname__}" == "torch.nn.modules.module.Module"
        for klass in type(value).__mro__
    )


def is_flat_index(value: Any) -> bool:
    return ann.is_faiss_index(value) and type(value).__name__.startswith("IndexFlat")


def catalog_slot(stage: Stage) -> str | None:
    for name in CATALOG_SLOTS:
        if name in stage.slots and _is_matrix(stage.slots[name]):
            return name
    return None


def catalog_of(stage: Stage, slot: str) -> np.ndarray:
    """The catalog matrix in ``slot`` as float32 (a view when possible)."""
    return exact_search.as_matrix(stage.slots[slot], f"stage {stage.name!r}, slot {slot!r}")


def _k_slot(stage: Stage) -> int | None:
    for name in K_SLOTS:
        value = stage.slots.get(name)
        if isinstance(value, int | np.integer) and not isinstance(value, bool):
            return int(value)
    return None


def recognize(stage: Stage) -> Recognized | None:
    """What ``stage`` is to the recsys plugin, or ``None``."""
    block = stage.meta.get("block")
    if block in (blocks.ANN_CANDIDATES, blocks.CANDIDATE_RANKING, blocks.ANN_TOPK):
        return Recognized("ann", stage.name, "block", extra={"block": block})
    if block == blocks.FULL_RANKING:
        return _block_over_items("full_ranking", stage)
    if block == blocks.EXACT_TOPK:
        return _block_over_items("exact_topk", stage)
    if block == blocks.EMBEDDING:
        return Recognized("embedding", stage.name, "block", "model")
    if block == blocks.FEATURE_LOOKUP:
        return Recognized(
            "feature_lookup",
            stage.name,
            "block",
            "store",
            extra={"batched": bool(stage.slots.get("batched"))},
        )
    return _recognize_plain(stage)


def _block_over_items(kind: str, stage: Stage) -> Recognized:
    """A declared block scoring the catalog in its ``items=`` slot (full ranking or exact
    top-k): the same catalog size, dimension, metric and k either way."""
    items = stage.slots["items"]
    return Recognized(
        kind,
        stage.name,
        "block",
        "items",
        catalog_size=int(items.shape[0]),
        dim=int(items.shape[1]),
        metric=stage.slots.get("metric", "ip"),
        k=stage.slots.get("k"),
    )


def _recognize_plain(stage: Stage) -> Recognized | None:
    """Plain user code, by what sits in its slots: a catalog matrix (scored by a ranker,
    or exact top-k without one), else a faiss index, else an embedding model, else a
    feature store; ``None`` when none of them is there."""
    slot = catalog_slot(stage)
    ranker_slot = _ranker_slot(stage)
    if slot is not None:
        if ranker_slot is not None:
            return _plain_full_ranking(stage, slot, ranker_slot)
        return _plain_exact_topk(stage, slot)
    index_slot = next(
        (s for s in ("index", *CATALOG_SLOTS) if ann.is_faiss_index(stage.slots.get(s))), None
    )
    if index_slot is not None:
        return _plain_index(stage, index_slot)
    embedding = _plain_embedding(stage)
    if embedding is not None:
        return embedding
    return _plain_feature_lookup(stage)


def _ranker_slot(stage: Stage) -> str | None:
    """The slot holding a ranker: a callable in a ranker slot, or in ``model=`` on a
    ``ranking`` stage."""
    ranker_slot = next((s for s in RANKER_SLOTS if callable(stage.slots.get(s))), None)
    if ranker_slot is None and stage.kind == "ranking":
        ranker_slot = next((s for s in MODEL_SLOTS if callable(stage.slots.get(s))), None)
    return ranker_slot


def _plain_full_ranking(stage: Stage, slot: str, ranker_slot: str) -> Recognized:
    """A ranker scoring every item of the catalog in ``slot``; transformable only when its
    function takes ``candidates=`` (so it can rank a subset)."""
    shape = stage.slots[slot].shape
    transformable = blocks.accepts_candidates(stage.fn)
    return Recognized(
        "full_ranking",
        stage.name,
        "ranker",
        slot,
        catalog_size=int(shape[0]),
        dim=int(shape[1]),
        metric=_metric_slot(stage),
        k=_k_slot(stage),
        transformable=transformable,
        why_not=""
        if transformable
        else ("its function takes no `candidates=` argument, so it cannot rank a subset"),
        extra={"ranker_slot": ranker_slot},
    )


def _plain_exact_topk(stage: Stage, slot: str) -> Recognized:
    """Exact top-k retrieval over the catalog matrix in ``slot`` (no ranker beside it)."""
    shape = stage.slots[slot].shape
    return Recognized(
        "exact_topk",
        stage.name,
        "items",
        slot,
        catalog_size=int(shape[0]),
        dim=int(shape[1]),
        metric=_metric_slot(stage),
        k=_k_slot(stage),
    )


def _plain_index(stage: Stage, index_slot: str) -> Recognized:
    """A faiss index in ``index_slot``: an ANN stage already, or exact top-k for a flat
    index (transformable only when the function takes the index as an argument)."""
    index = stage.slots[index_slot]
    if not is_flat_index(index):
        return Recognized(
            "ann",
            stage.name,
            "index",
            index_slot,
            catalog_size=int(index.ntotal),
            dim=int(index.d),
            extra={"index_type": type(index).__name__},
        )
    transformable = stage.injects(index_slot)
    return Recognized(
        "exact_topk",
        stage.name,
        "index",
        index_slot,
        catalog_size=int(index.ntotal),
        dim=int(index.d),
        metric=ann.faiss_metric_name(index),
        k=_k_slot(stage),
        transformable=transformable,
        why_not=""
        if transformable
        else (f"its function does not take the {index_slot!r} slot as an argument"),
    )


def _plain_embedding(stage: Stage) -> Recognized | None:
    """A torch module in an encoder slot of an ``inference`` or ``embedding`` stage (not
    transformable: plain code declares no user key)."""
    if stage.kind not in ("inference", "embedding"):
        return None
    encoder = next((s for s in ENCODER_SLOTS if is_torch_module(stage.slots.get(s))), None)
    if encoder is None:
        return None
    return Recognized(
        "embedding",
        stage.name,
        "model",
        encoder,
        transformable=False,
        why_not="plain embedding code has no declared user key",
    )


def _plain_feature_lookup(stage: Stage) -> Recognized | None:
    """An object with ``get`` (not a plain mapping) in a store slot (not transformable:
    plain code does not declare the keys it reads)."""
    store_slot = next(
        (s for s in STORE_SLOTS if callable(getattr(stage.slots.get(s), "get", None))), None
    )
    if store_slot is None or isinstance(stage.slots[store_slot], Mapping):
        return None
    return Recognized(
        "feature_lookup",
        stage.name,
        "store",
        store_slot,
        transformable=False,
        why_not="plain lookup code does not declare the keys it reads",
    )


def _metric_slot(stage: Stage) -> str | None:
    metric = stage.slots.get("metric")
    return metric if metric in ann.METRICS else None


def recognize_all(pipeline: Pipeline) -> dict[str, Recognized]:
    """What each stage the recsys plugin recognizes is, by stage name."""
    return {
        stage.name: found for stage in pipeline.stages if (found := recognize(stage)) is not None
    }


def hints_for(stage: Stage, pipeline: Pipeline | None = None) -> list[str]:
    """How to declare ``stage`` more fully so the recsys changes can apply to it. A hint
    that rests only on a component every domain has (a torch model) is given only where
    the pipeline also holds a recsys one (a catalog, an index, a ranker, a feature store):
    a document encoder or an image classifier is not a user-embedding model."""
    rec = recognize(stage)
    if rec is None:
        if stage.kind in ("ranking", "retrieval") and not stage.slots:
            return [
                f"stage {stage.name!r} looks like retrieval or ranking but declares no slots: "
                "put its item matrix in an `items=` slot (numpy or torch) or its faiss flat "
                "index in `index=`, and its ranker in `ranker=`, to unlock ANN retrieval "
                "(recsys.ann_exact, recsys.ann_two_stage)"
            ]
        return []
    hints: list[str] = []
    if (
        rec.catalog_size is not None
        and rec.catalog_size < ann.MIN_CATALOG
        and rec.role
        in (
            "full_ranking",
            "exact_topk",
        )
    ):
        hints.append(
            f"stage {stage.name!r}: the catalog has {rec.catalog_size:,} items, under "
            f"{ann.MIN_CATALOG:,}; exact scoring stays (an ANN index does not pay at this size)"
        )
    if rec.role == "full_ranking" and not rec.transformable:
        hints.append(
            f"stage {stage.name!r} scores every catalog item: give its function a "
            "`candidates=None` argument (score only those ids when given) and a `query` slot "
            "(the request's retrieval vector), or use pipetune.plugins.recsys.full_ranking, to "
            "unlock the two-stage architecture (recsys.ann_two_stage)"
        )
    if rec.role == "exact_topk" and not rec.transformable:
        hints.append(
            f"stage {stage.name!r}: {rec.why_not}; pass the index as an argument to "
            "unlock ANN retrieval (recsys.ann_exact)"
        )
    if rec.role == "embedding" and not rec.transformable and _recsys_pipeline(pipeline):
        hints.append(
            f"stage {stage.name!r} runs an embedding model: declare it with "
            "pipetune.plugins.recsys.embedding(encode, model=..., key='user_id') to unlock the "
            "user-embedding cache (recsys.user_embedding_cache)"
        )
    if rec.role == "feature_lookup" and not rec.transformable:
        hints.append(
            f"stage {stage.name!r} reads a feature store: declare it with "
            "pipetune.plugins.recsys.feature_lookup(store, keys) to unlock batched reads "
            "(recsys.batched_feature_reads)"
        )
    return hints


def _recsys_pipeline(pipeline: Pipeline | None) -> bool:
    """Whether ``pipeline`` holds a recsys component beyond a plain model."""
    if pipeline is None:
        return True
    for stage in pipeline.stages:
        found = recognize(stage)
        if stage.kind in ("ranking", "retrieval") or (
            found is not None and (found.role != "embedding" or found.source == "block")
        ):
            return True
    return False
