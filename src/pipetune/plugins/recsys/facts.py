"""Domain facts: what recognition knows statically, and what the profiling run measured.

Catalog size, dimension, metric and k; the ranker's cost per item; the query batch
pattern; time per request; how often user embeddings are recomputed for a user already
seen; the share of time in feature lookups and calls per request.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.kernel.registry import Dependency
from pipetune.core.kernel.results import Profile
from pipetune.plugins.recsys import ann, blocks, exact_search, spaces
from pipetune.plugins.recsys.features import CountingStore, batch_method
from pipetune.plugins.recsys.fidelity import rows_of
from pipetune.plugins.recsys.recognize import Recognized, catalog_of, recognize_all
from pipetune.plugins.recsys.threads import build_threads

FAISS = Dependency("faiss", extra="recsys", purpose="ANN indexes", distribution="faiss-cpu")
#: Default user fields tried as the key of plain embedding code's requests.
USER_FIELDS = ("user_id", "user", "uid")


def static_facts(pipeline: Pipeline) -> dict[str, Any] | None:
    found = recognize_all(pipeline)
    if not found:
        return None
    return {"stages": {name: rec.describe() for name, rec in found.items()}}


def measured_facts(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> dict[str, Any] | None:
    found = recognize_all(pipeline)
    if not found:
        return None
    stages: dict[str, Any] = {}
    for name, rec in found.items():
        stage = pipeline.stage(name)
        facts = rec.describe()
        stats = _stats(profile, name)
        facts.update(stats)
        try:
            if rec.role == "full_ranking":
                facts.update(_full_ranking(stage, rec, stats, observed))
            elif rec.role == "exact_topk":
                facts.update(_exact(stage, rec, stats, observed))
            elif rec.role == "embedding":
                facts.update(_embedding(stage, rec, observed))
            elif rec.role == "feature_lookup":
                facts.update(_lookup(stage, rec, stats, observed))
        except Exception as exc:  # a fact we cannot measure must not hide the others
            facts["problem"] = f"{type(exc).__name__}: {exc}"
        stages[name] = facts
    lookup_share = sum(
        f.get("share", 0.0) for f in stages.values() if f["role"] == "feature_lookup"
    )
    return {
        "stages": stages,
        "feature_lookup_share": lookup_share,
        "time_per_request_ms": profile.latency_ms.p50,
        "requests_per_s": profile.throughput_rps,
    }


def _stats(profile: Profile, name: str) -> dict[str, Any]:
    try:
        stats = profile.stage(name)
    except KeyError:
        return {}
    return {"share": stats.share, "p50_ms": stats.p50_ms, "mean_ms": stats.mean_ms}


def _ann_choice(matrix: np.ndarray, metric: str) -> dict[str, Any]:
    """Whether ANN pays here and which index the rule picks (with a measured HNSW build
    estimate on a sample of the catalog)."""
    n, dim = matrix.shape
    if n < ann.MIN_CATALOG:
        choice = ann.choose_index(n, dim, metric)
        return {"ann": "not proposed", "ann_reason": choice.reason}
    if not FAISS.check():
        return {"ann": "unavailable", "ann_reason": "faiss is not installed"}
    try:
        exact_search.check_finite(matrix, "the item matrix")
    except Exception as exc:
        return {"ann": "not proposed", "ann_reason": str(exc)}
    threads = build_threads()
    estimate = ann.estimate_hnsw_build_s(matrix, hnsw_m=32 if dim >= 64 else 16, threads=threads)
    choice = ann.choose_index(n, dim, metric, hnsw_build_s=estimate)
    assert choice.spec is not None
    norms = spaces.norm_stats(matrix) if metric == "ip" else None
    return {
        "ann": "proposed",
        "index": choice.spec.to_dict(),
        "index_reason": choice.reason,
        "hnsw_build_s_est": estimate,
        "hnsw_build_threads": threads,
        "index_estimates": dict(choice.estimates),
        "norms": norms,
        "index_spaces": [space for space, _ in spaces.candidate_spaces(metric, norms)],
    }


def _full_ranking(
    stage: Stage, rec: Recognized, stats: Mapping[str, Any], observed: Observations
) -> dict[str, Any]:
    assert rec.slot is not None and rec.catalog_size
    facts: dict[str, Any] = {}
    if stats.get("mean_ms"):
        facts["ranker_us_per_item"] = 1000 * stats["mean_ms"] / rec.catalog_size
    outputs = observed.outputs_of(stage.name)
    if rec.k is None and outputs:
        facts["k"] = len(rows_of(outputs[0])[0])
    inputs = observed.inputs_of(stage.name)
    query = stage.slots.get("query") or blocks.default_query
    if inputs:
        try:
            shapes = Counter(np.shape(np.asarray(query(item))) for item in inputs[:64])
            facts["query_batch_pattern"] = {str(k): v for k, v in shapes.items()}
            facts["query_found"] = True
        except Exception as exc:
            facts["query_found"] = False
            facts["query_problem"] = str(exc)
    facts["requests_per_call"] = 1
    facts.update(_ann_choice(catalog_of(stage, rec.slot), rec.metric or "ip"))
    if not rec.transformable:
        facts["ann"] = "not proposed"
        facts["ann_reason"] = rec.why_not
    return facts


def _exact(
    stage: Stage, rec: Recognized, stats: Mapping[str, Any], observed: Observations
) -> dict[str, Any]:
    assert rec.slot is not None and rec.dim
    facts: dict[str, Any] = {}
    inputs = observed.inputs_of(stage.name)
    outputs = observed.outputs_of(stage.name)
    sizes = Counter(
        1 if np.ndim(np.asarray(item)) == 1 else int(np.shape(np.asarray(item))[0])
        for item in inputs
    )
    if sizes:
        facts["query_batch_pattern"] = {str(size): count for size, count in sorted(sizes.items())}
        per_call = sum(size * count for size, count in sizes.items()) / sum(sizes.values())
        if stats.get("mean_ms"):
            facts["exact_ms_per_query"] = stats["mean_ms"] / per_call
    if rec.k is None and outputs:
        facts["k"] = len(rows_of(outputs[0])[0])
    matrix = catalog_of(stage, rec.slot)
    nonfinite = int((~np.isfinite(matrix).all(axis=1)).sum())
    if nonfinite:
        facts["nonfinite_rows"] = nonfinite
    facts.update(_ann_choice(matrix, rec.metric or "ip"))
    if not rec.transformable:
        facts["ann"] = "not proposed"
        facts["ann_reason"] = rec.why_not
    return facts


def _embedding(stage: Stage, rec: Recognized, observed: Observations) -> dict[str, Any]:
    inputs = observed.inputs_of(stage.name)
    key = stage.slots.get("key")
    keys: list[Any] = []
    for item in inputs:
        try:
            if callable(key):
                keys.append(key(item))
            elif isinstance(item, Mapping):
                field = next(f for f in USER_FIELDS if f in item)
                keys.append(item[field])
        except Exception:
            break
    if not keys:
        return {"repeat_share": None}
    distinct = len(set(map(_hashable, keys)))
    return {
        "calls_observed": len(keys),
        "distinct_users": distinct,
        # Share of calls that recompute an embedding for a user seen earlier in the run.
        "repeat_share": 1 - distinct / len(keys),
    }


def _hashable(value: Any) -> Any:
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def _lookup(
    stage: Stage, rec: Recognized, stats: Mapping[str, Any], observed: Observations
) -> dict[str, Any]:
    slot = rec.slot or "store"
    store = stage.slots[slot]
    facts: dict[str, Any] = {"batch_method": batch_method(store)}
    inputs = observed.inputs_of(stage.name)[:4]
    if inputs and stage.injects(slot):
        counter = CountingStore(store)
        probe = stage.with_slots(**{slot: counter})
        for item in inputs:
            probe(item)
        facts["calls_per_request"] = counter.calls / len(inputs)
        facts["keys_per_request"] = counter.keys / len(inputs)
        if stats.get("mean_ms") and counter.calls:
            facts["ms_per_call"] = stats["mean_ms"] / facts["calls_per_request"]
    return facts
