"""Proposals and hints, from the recognized stages and the measured facts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipetune.core.kernel.errors import install_command
from pipetune.core.kernel.model import Pipeline, Requirements
from pipetune.core.kernel.results import Profile, Proposal
from pipetune.plugins.recsys import ann
from pipetune.plugins.recsys.changes.common import DEFAULT_TARGET, DEFAULT_TTL_S
from pipetune.plugins.recsys.facts import FAISS
from pipetune.plugins.recsys.recognize import recognize_all

PLUGIN = "recsys"
#: A user-embedding cache is proposed when at least this share of calls repeats a user.
MIN_REPEAT_SHARE = 0.05
#: Assumed ANN cost before tuning measures it: a fixed part plus a share of the exact scan.
ANN_FIXED_MS = 0.1
ANN_SCAN_SHARE = 0.03
#: Assumed candidate count before tuning (N is searched; this only sizes the estimate).
N_GUESS = 1000


def propose(pipeline: Pipeline, profile: Profile, requirements: Requirements) -> list[Proposal]:
    facts = (profile.facts or {}).get(PLUGIN, {}).get("stages", {})
    target = max(DEFAULT_TARGET, 1.0 - requirements.max_accuracy_drop)
    proposals: list[Proposal] = []
    for name, rec in recognize_all(pipeline).items():
        stage_facts: Mapping[str, Any] = facts.get(name, {})
        if rec.role == "full_ranking":
            proposal = _two_stage(name, rec, stage_facts, target)
        elif rec.role == "exact_topk":
            proposal = _ann_exact(name, rec, stage_facts, target)
        elif rec.role == "embedding":
            proposal = _cache(name, rec, stage_facts)
        elif rec.role == "feature_lookup":
            proposal = _batched(name, rec, stage_facts)
        else:
            proposal = None
        if proposal is not None:
            proposals.append(proposal)
    return proposals


def _ann_gate(rec: Any, facts: Mapping[str, Any]) -> tuple[bool, str, str | None]:
    """Whether to propose ANN for this stage; (propose, unavailable reason, install)."""
    if rec.catalog_size is not None and rec.catalog_size < ann.MIN_CATALOG:
        return False, "", None  # the fact and the hint say why
    if not rec.transformable or facts.get("ann") == "not proposed":
        return False, "", None
    if facts.get("query_found") is False:
        return False, "", None
    if not FAISS.check():
        return True, "faiss is not installed", install_command("faiss-cpu", "recsys")
    return True, "", None


def _two_stage(name: str, rec: Any, facts: Mapping[str, Any], target: float) -> Proposal | None:
    go, unavailable, install = _ann_gate(rec, facts)
    if not go:
        return None
    n = rec.catalog_size
    k = rec.k or facts.get("k") or 100
    full_ms = facts.get("mean_ms")
    per_item_us = facts.get("ranker_us_per_item")
    guess = max(N_GUESS, 10 * k)
    est = 1.0
    if full_ms and per_item_us:
        est = full_ms / (per_item_us * guess / 1000 + ANN_FIXED_MS)
    index = facts.get("index")
    kind = (index or {}).get("kind", "chosen at tune time")
    cost = (
        f"{full_ms:.1f} ms a request, {per_item_us:.2f} µs an item"
        if full_ms and per_item_us
        else "cost not measured"
    )
    return Proposal(
        id="recsys.ann_two_stage",
        plugin=PLUGIN,
        stage=name,
        title="Two-stage ranking: ANN retrieval hands N candidates to the ranker",
        rationale=(
            f"The ranker scores all {n:,} catalog items per request ({cost}). An ANN index "
            f"over the {rec.dim}-d item embeddings ({kind}: {facts.get('index_reason', '')}) "
            f"retrieves N candidates and the ranker orders only those; N and the index's "
            f"runtime parameter are tuned on the tuning split to the cheapest point keeping "
            f">= {target:.0%} of the full ranking's top-{k} (NDCG@{k} reported beside it). "
            f"The estimate assumes N ~ {guess:,}."
        ),
        est_stage_speedup=max(1.0, est),
        effort="hours",
        accuracy_risk="medium",
        status="unavailable" if unavailable else "proposed",
        reason=unavailable,
        install=install,
        params={"target": DEFAULT_TARGET, **({"index": index} if index else {})},
        evidence={
            "catalog_size": n,
            "dim": rec.dim,
            "k": k,
            "ranker_us_per_item": per_item_us,
            "ms_per_request": full_ms,
            "index_reason": facts.get("index_reason", ""),
            "hnsw_build_s_est": facts.get("hnsw_build_s_est"),
        },
    )


def _ann_exact(name: str, rec: Any, facts: Mapping[str, Any], target: float) -> Proposal | None:
    go, unavailable, install = _ann_gate(rec, facts)
    if not go:
        return None
    exact_ms = facts.get("exact_ms_per_query")
    est = exact_ms / (ANN_FIXED_MS + ANN_SCAN_SHARE * exact_ms) if exact_ms else 1.0
    k = rec.k or facts.get("k") or 100
    index = facts.get("index")
    return Proposal(
        id="recsys.ann_exact",
        plugin=PLUGIN,
        stage=name,
        title="ANN retrieval with exact re-rank instead of exact top-k",
        rationale=(
            f"Exact top-{k} scans all {rec.catalog_size:,} items "
            + (f"({exact_ms:.2f} ms a query). " if exact_ms else ". ")
            + f"An ANN index ({(index or {}).get('kind', 'chosen at tune time')}: "
            f"{facts.get('index_reason', '')}) returns k' >= k candidates, re-ranked exactly; "
            f"k' and the runtime parameter are tuned to the cheapest point at recall@{k} >= "
            f"{target:.2f}, timed one query at a time and at the workload's batch sizes"
            + _spaces_told(facts)
            + ". The index is saved as an artifact and reloaded, never rebuilt."
        ),
        est_stage_speedup=max(1.0, est),
        effort="hours",
        accuracy_risk="low",
        status="unavailable" if unavailable else "proposed",
        reason=unavailable,
        install=install,
        params={"target": DEFAULT_TARGET, **({"index": index} if index else {})},
        evidence={
            "catalog_size": rec.catalog_size,
            "dim": rec.dim,
            "k": k,
            "exact_ms_per_query": exact_ms,
            "query_batch_pattern": facts.get("query_batch_pattern"),
            "index_reason": facts.get("index_reason", ""),
            "index_spaces": facts.get("index_spaces"),
            "norm_spread": (facts.get("norms") or {}).get("spread"),
        },
    )


def _spaces_told(facts: Mapping[str, Any]) -> str:
    """How the rationale names the spaces the tune step compares (uneven norms only)."""
    found = facts.get("index_spaces") or []
    if len(found) < 2:
        return ""
    spread = (facts.get("norms") or {}).get("spread", 0.0)
    return (
        f"; the item norms spread {spread:.2f}x, so the plain inner-product index, the "
        "MIPS→L2 reduction and (where the ranking allows) cosine candidates are each "
        "measured, and the fastest at the target is kept"
    )


def _cache(name: str, rec: Any, facts: Mapping[str, Any]) -> Proposal | None:
    repeat = facts.get("repeat_share")
    if not rec.transformable or repeat is None or repeat < MIN_REPEAT_SHARE:
        return None
    return Proposal(
        id="recsys.user_embedding_cache",
        plugin=PLUGIN,
        stage=name,
        title="Cache user embeddings by user id (bounded, with a TTL)",
        rationale=(
            f"{repeat:.0%} of the embedding calls recompute a user already seen "
            f"({facts.get('distinct_users')} users in {facts.get('calls_observed')} calls). A "
            f"bounded LRU keyed by the user id, with a {DEFAULT_TTL_S:g} s time-to-live, serves "
            "repeats without the model. Unlike the generic result cache (keyed by the whole "
            "input's content, which differs per request), it keys by the user and expires "
            "entries so drifting user features are picked up."
        ),
        est_stage_speedup=1.0 / max(1.0 - repeat, 0.05),
        effort="minutes",
        accuracy_risk="low",
        params={"ttl_s": DEFAULT_TTL_S},
        evidence={k: facts.get(k) for k in ("repeat_share", "distinct_users", "calls_observed")},
    )


def _batched(name: str, rec: Any, facts: Mapping[str, Any]) -> Proposal | None:
    calls = facts.get("calls_per_request")
    if not rec.transformable or rec.extra.get("batched") or not calls or calls <= 1:
        return None
    if not facts.get("batch_method"):
        return None
    return Proposal(
        id="recsys.batched_feature_reads",
        plugin=PLUGIN,
        stage=name,
        title="Batch feature-store reads: one multi-get per request",
        rationale=(
            f"The stage calls the feature store {calls:.1f} times a request "
            f"({facts.get('ms_per_call', 0):.2f} ms a call, {facts.get('share', 0):.0%} of the "
            f"time); one {facts['batch_method']}() call pays the round trip once."
        ),
        est_stage_speedup=max(1.0, 0.8 * calls),
        effort="minutes",
        accuracy_risk="none",
        params={"batched": True},
        evidence={
            k: facts.get(k)
            for k in ("calls_per_request", "keys_per_request", "ms_per_call", "batch_method")
        },
    )
