"""Tune to the target, materialize from saved artifacts without rebuilding, never mutate,
and refuse bad input clearly. The validator is not needed: contexts are built by hand."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss", reason="faiss is an optional dependency (recsys extra)")

from pipetune.core.kernel.errors import ConfigError  # noqa: E402
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload  # noqa: E402
from pipetune.core.kernel.results import Change  # noqa: E402
from pipetune.core.measure.profiler import profile  # noqa: E402
from pipetune.plugins.recsys import ann_build, ann_search, exact_topk, full_ranking  # noqa: E402
from pipetune.plugins.recsys.ann_search import AnnSearcher  # noqa: E402

from .conftest import digest, make_context  # noqa: E402

QUICK = {"warmup": 0, "repeats": 1}


def proposals_for(pm, pipeline, workload, requirements=None):
    prof = profile(pipeline, workload.evolve(**QUICK), pm=pm)
    found = [
        p
        for _, batch in pm.call_each(
            "propose_changes",
            pipeline=pipeline,
            profile=prof,
            requirements=requirements or Requirements(max_accuracy_drop=0.05),
        )
        for p in batch
    ]
    return prof, {p.id: p for p in found}


def tune(pm, proposal, pipeline, workload, context):
    assert context.workload is workload
    return pm.tune(proposal, pipeline, context)


def materialize(pm, proposal, tuned, pipeline, root):
    change = pm.make_change(proposal, tuned)
    return change, pm.materialize(change, pipeline, root)


@pytest.mark.slow
def test_ann_exact_block_tunes_to_target_and_reloads_the_index(
    pm, catalog, queries, tmp_path, monkeypatch
):
    pipeline = Pipeline("search", (exact_topk(catalog, 20),), output_kind="ranked_ids")
    workload = Workload(queries)
    before = digest(catalog)
    prof, found = proposals_for(pm, pipeline, workload)
    facts = prof.facts["recsys"]["stages"]["retrieve"]
    assert facts["ann"] == "proposed" and facts["exact_ms_per_query"] > 0
    assert facts["query_batch_pattern"] == {"1": len(queries)}
    proposal = found["recsys.ann_exact"]

    context = make_context(pm, pipeline, workload, tmp_path)
    tuned = tune(pm, proposal, pipeline, workload, context)
    assert tuned.notes["tune_recall"] >= 0.95
    assert tuned.params["k_prime"] >= 20 and tuned.params["faiss_threads"] >= 1
    assert tuned.notes["batches"][0]["batch"] == 1
    assert (tmp_path / tuned.artifacts["index"]).is_file()

    change, candidate = materialize(pm, proposal, tuned, pipeline, tmp_path)
    fid = context.fidelity(context.outputs(candidate))
    assert fid.metric == "recall@20" and fid.value >= 0.95
    assert isinstance(candidate.stage("retrieve").slots["searcher"], AnnSearcher)

    # A recipe reloads the saved file: building is never called again.
    loads: list[str] = []
    real_load = ann_build.load_index

    def spy_load(path):
        loads.append(str(path))
        return real_load(path)

    def no_build(*args, **kwargs):
        raise AssertionError("materialize must not rebuild the index")

    monkeypatch.setattr(ann_build, "load_index", spy_load)
    monkeypatch.setattr(ann_build, "build_index", no_build)
    again = pm.materialize(change, pipeline, tmp_path)
    assert loads == [str(tmp_path / tuned.artifacts["index"])]
    assert [o.tolist() for o in context.outputs(again)] == [
        o.tolist() for o in context.outputs(candidate)
    ]
    # Tuning again finds the artifact by content hash instead of building.
    retuned = tune(pm, proposal, pipeline, workload, make_context(pm, pipeline, workload, tmp_path))
    assert retuned.notes["index_reused"] is True
    assert digest(catalog) == before
    assert pipeline.stage("retrieve").meta["block"] == "recsys.exact_topk"


@pytest.mark.slow
def test_plain_numpy_code_gets_its_metric_and_format_inferred(pm, catalog, queries, tmp_path):
    def search_l2(query, *, items, k):
        distances = ((items - query) ** 2).sum(axis=1)
        top = np.argpartition(distances, k)[:k]
        return top[np.argsort(distances[top])].tolist()  # a list, nearest first

    # Norms vary, so L2 and inner-product rankings differ and the metric must be inferred.
    scale = np.random.default_rng(9).uniform(0.5, 2.0, (len(catalog), 1)).astype(np.float32)
    items = catalog * scale
    pipeline = Pipeline(
        "plain",
        (Stage("search", search_l2, slots={"items": items, "k": 10}),),
        output_kind="ranked_ids",
    )
    workload = Workload(queries)
    _, found = proposals_for(pm, pipeline, workload)
    context = make_context(pm, pipeline, workload, tmp_path)
    tuned = tune(pm, found["recsys.ann_exact"], pipeline, workload, context)
    assert tuned.params["metric"] == "l2" and tuned.params["output_format"] == "list"
    _, candidate = materialize(pm, found["recsys.ann_exact"], tuned, pipeline, tmp_path)
    outputs = context.outputs(candidate)
    assert isinstance(outputs[0], list) and len(outputs[0]) == 10
    assert context.fidelity(outputs).value >= 0.95


@pytest.mark.slow
def test_faiss_flat_index_slot_is_swapped_for_the_ann_searcher(pm, catalog, queries, tmp_path):
    flat = faiss.IndexFlatIP(catalog.shape[1])
    flat.add(catalog)
    before = digest(flat)

    def search(query, *, index, k):
        _, ids = index.search(np.asarray(query, dtype=np.float32)[None, :], k)
        return ids[0]

    pipeline = Pipeline(
        "faiss-user",
        (Stage("search", search, slots={"index": flat, "k": 15}),),
        output_kind="ranked_ids",
    )
    workload = Workload(queries)
    _, found = proposals_for(pm, pipeline, workload)
    context = make_context(pm, pipeline, workload, tmp_path)
    tuned = tune(pm, found["recsys.ann_exact"], pipeline, workload, context)
    assert tuned.params["replace"] == "slot" and tuned.params["metric"] == "ip"
    _, candidate = materialize(pm, found["recsys.ann_exact"], tuned, pipeline, tmp_path)
    assert candidate.stage("search").fn is search  # the user's own code runs
    assert isinstance(candidate.stage("search").slots["index"], AnnSearcher)
    assert context.fidelity(context.outputs(candidate)).value >= 0.95
    assert digest(flat) == before and pipeline.stage("search").slots["index"] is flat


def two_stage_pipeline(catalog: np.ndarray, weight: float = 0.05) -> tuple[Pipeline, Workload]:
    """A ranker that mostly agrees with retrieval, plus side features the embedding lacks,
    and a hidden layer so that scoring an item costs something."""
    rng = np.random.default_rng(3)
    side = rng.standard_normal((len(catalog), 4)).astype(np.float32)
    hidden = rng.standard_normal((catalog.shape[1] + 4, 128)).astype(np.float32) / 6
    out = rng.standard_normal(128).astype(np.float32)

    def ranker(request, ids):
        features = np.concatenate([catalog[ids], side[ids]], axis=1)
        learned = np.tanh(features @ hidden) @ out
        return (
            catalog[ids] @ request["embedding"]
            + weight * (side[ids] @ request["taste"])
            + 0.002 * learned
        )

    requests = []
    for number in range(50):
        query = catalog[rng.integers(0, len(catalog))] + 0.2 * rng.standard_normal(catalog.shape[1])
        requests.append(
            {
                "user_id": number,
                "embedding": (query / np.linalg.norm(query)).astype(np.float32),
                "taste": rng.standard_normal(4).astype(np.float32),
            }
        )
    pipeline = Pipeline("two", (full_ranking(ranker, catalog, 10),), output_kind="ranked_ids")
    return pipeline, Workload(requests)


@pytest.mark.slow
def test_two_stage_tunes_n_and_the_runtime_parameter(pm, catalog, tmp_path):
    pipeline, workload = two_stage_pipeline(catalog)
    before = digest(catalog)
    tune_split, holdout = workload.split(0.5)
    _, found = proposals_for(pm, pipeline, tune_split)
    proposal = found["recsys.ann_two_stage"]
    assert proposal.est_stage_speedup > 1 and proposal.evidence["catalog_size"] == 12_000
    context = make_context(pm, pipeline, tune_split, tmp_path)
    tuned = tune(pm, proposal, pipeline, tune_split, context)
    n = tuned.params["n_candidates"]
    assert 10 < n < len(catalog) // 4
    assert tuned.notes["n_floor_exact_retrieval"] <= n
    assert tuned.notes["tune_recall"] >= 0.95
    _, candidate = materialize(pm, proposal, tuned, pipeline, tmp_path)
    assert candidate.stage_names == ("rank.retrieve", "rank")
    held = make_context(pm, pipeline, holdout, tmp_path)
    fid = held.fidelity(held.outputs(candidate))
    assert fid.value >= 0.9  # the target is met on the tuning split; held-out is close
    assert "ndcg_at_k" in fid.details
    assert digest(catalog) == before and pipeline.stage_names == ("rank",)


@pytest.mark.slow
def test_two_stage_prefers_ivf_when_the_ranker_needs_many_candidates(pm, catalog, tmp_path):
    from pipetune.plugins.recsys.changes.ann_two_stage import DEEP_CANDIDATES, _spec_for_depth
    from pipetune.plugins.recsys.recognize import recognize

    pipeline, workload = two_stage_pipeline(catalog)
    _, found = proposals_for(pm, pipeline, workload)
    proposal = found["recsys.ann_two_stage"]
    assert proposal.params["index"]["kind"] == "hnsw"  # 12,000 items build in well under 30 s
    rec = recognize(pipeline.stage("rank"))
    shallow, why = _spec_for_depth(proposal, rec, catalog, DEEP_CANDIDATES // 4)
    assert shallow.kind == "hnsw" and why == ""
    deep, why = _spec_for_depth(proposal, rec, catalog, 4 * DEEP_CANDIDATES)
    assert deep.kind == "ivf_flat" and "1,024 candidates" in why and "efSearch" in why
    forced = proposal.evolve(params={**proposal.params, "index_kind": "hnsw"})
    assert _spec_for_depth(forced, rec, catalog, 4 * DEEP_CANDIDATES)[0].kind == "hnsw"


@pytest.mark.slow
def test_stale_index_is_refused(pm, catalog, queries, tmp_path):
    pipeline = Pipeline("search", (exact_topk(catalog, 20),), output_kind="ranked_ids")
    workload = Workload(queries[:20])
    _, found = proposals_for(pm, pipeline, workload)
    proposal = found["recsys.ann_exact"]
    tuned = tune(pm, proposal, pipeline, workload, make_context(pm, pipeline, workload, tmp_path))
    changed = catalog.copy()
    changed[0] = -changed[0]
    other = Pipeline("search", (exact_topk(changed, 20),), output_kind="ranked_ids")
    with pytest.raises(ConfigError, match="item matrix changed since the index was built"):
        materialize(pm, proposal, tuned, other, tmp_path)


@pytest.mark.slow
def test_small_catalog_gets_no_proposal_and_says_why(pm, catalog, queries):
    small = catalog[:5_000]
    pipeline = Pipeline("small", (exact_topk(small, 10),), output_kind="ranked_ids")
    prof, found = proposals_for(pm, pipeline, Workload(queries[:10]))
    assert "recsys.ann_exact" not in found
    facts = prof.facts["recsys"]["stages"]["retrieve"]
    assert facts["ann"] == "not proposed" and "under 10,000" in facts["ann_reason"]
    assert any("under 10,000" in hint for hint in prof.hints)


@pytest.mark.slow
def test_missing_faiss_makes_the_proposal_unavailable(pm, catalog, queries, monkeypatch):
    from pipetune.core.kernel.registry import Availability
    from pipetune.plugins.recsys import facts

    pipeline = Pipeline("search", (exact_topk(catalog, 10),), output_kind="ranked_ids")
    monkeypatch.setattr(type(facts.FAISS), "check", lambda self: Availability(False, "absent"))
    _, found = proposals_for(pm, pipeline, Workload(queries[:10]))
    proposal = found["recsys.ann_exact"]
    assert proposal.status == "unavailable" and "faiss" in proposal.reason
    assert proposal.install == 'pip install "pipetune[recsys]"'


@pytest.mark.slow
def test_nan_catalog_in_plain_code_is_reported_not_proposed(pm, catalog, queries, tmp_path):
    broken = catalog.copy()
    broken[11] = np.nan

    def search(query, *, items, k):
        return np.argsort(-np.nan_to_num(items @ query, nan=-1e9))[:k]

    pipeline = Pipeline(
        "nan",
        (Stage("search", search, slots={"items": broken, "k": 5}),),
        output_kind="ranked_ids",
    )
    workload = Workload(queries[:10])
    prof, found = proposals_for(pm, pipeline, workload)
    facts = prof.facts["recsys"]["stages"]["search"]
    assert facts["nonfinite_rows"] == 1 and "NaN" in facts["ann_reason"]
    assert "recsys.ann_exact" not in found
    from pipetune.core.kernel.results import Proposal

    forced = Proposal("recsys.ann_exact", "recsys", "search", "forced")
    with pytest.raises(ConfigError, match=r"stage 'search', slot 'items'.*row"):
        tune(pm, forced, pipeline, workload, make_context(pm, pipeline, workload, tmp_path))


@pytest.mark.slow
def test_recipe_round_trip_reloads_the_index(pm, catalog, queries, tmp_path, monkeypatch):
    import pipetune
    from pipetune.core.loop.recipes import make_recipe

    pipeline = Pipeline("search", (exact_topk(catalog, 20),), output_kind="ranked_ids")
    workload = Workload(queries[:30])
    _, found = proposals_for(pm, pipeline, workload)
    proposal = found["recsys.ann_exact"]
    context = make_context(pm, pipeline, workload, tmp_path)
    tuned = tune(pm, proposal, pipeline, workload, context)
    recipe_path = make_recipe(pipeline, [Change.from_proposal(proposal, tuned)]).save(
        tmp_path / "recipe.json"
    )

    def no_build(*args, **kwargs):
        raise AssertionError("a recipe must reload the index, not rebuild it")

    monkeypatch.setattr(ann_build, "build_index", no_build)
    fresh = Pipeline("search", (exact_topk(catalog, 20),), output_kind="ranked_ids")
    restored = pipetune.load_recipe(fresh, recipe_path, pm=pm, artifacts_dir=tmp_path)
    assert isinstance(restored.stage("retrieve").slots["searcher"], AnnSearcher)
    assert context.fidelity(context.outputs(restored)).value >= 0.95


@pytest.mark.slow
def test_index_kind_can_be_forced(pm, catalog, queries, tmp_path):
    pipeline = Pipeline("search", (exact_topk(catalog, 10),), output_kind="ranked_ids")
    workload = Workload(queries[:30])
    _, found = proposals_for(pm, pipeline, workload)
    proposal = found["recsys.ann_exact"]
    assert proposal.params["index"]["kind"] == "hnsw"  # the rule, for 12,000 items
    forced = proposal.evolve(params={**proposal.params, "index_kind": "ivf_flat"})
    tuned = tune(pm, forced, pipeline, workload, make_context(pm, pipeline, workload, tmp_path))
    assert tuned.params["index"]["kind"] == "ivf_flat"
    assert tuned.params["runtime_param"] == "nprobe" and tuned.notes["tune_recall"] >= 0.95


@pytest.mark.slow
def test_uneven_norms_get_the_mips_reduction_measured_beside_the_plain_index(pm, tmp_path):
    from pipetune.demos.recsys import data
    from pipetune.plugins.recsys.threads import thread_candidates

    items = data.latent_factors(12_000, 32, norm_spread=3.7)
    queries = list(data.latent_queries(40, 32))
    pipeline = Pipeline("skewed", (exact_topk(items, 20),), output_kind="ranked_ids")
    workload = Workload(queries)
    prof, found = proposals_for(pm, pipeline, workload)
    facts = prof.facts["recsys"]["stages"]["retrieve"]
    assert facts["norms"]["spread"] > 3.5
    assert facts["index_spaces"] == ["native", "mips_l2", "normalized"]
    proposal = found["recsys.ann_exact"]
    assert "MIPS→L2 reduction" in proposal.rationale

    context = make_context(pm, pipeline, workload, tmp_path)
    tuned = tune(pm, proposal, pipeline, workload, context)
    tried = {(c["kind"], c["space"]) for c in tuned.notes["candidates"]}
    assert tried == {
        (kind, space) for kind in ("hnsw", "ivf_flat") for space in ("native", "mips_l2")
    }
    assert "does not allow cosine candidates" in tuned.notes["not_tried"]["normalized"]
    # The kept point is the fastest of every candidate's best point at the target.
    fastest = min(
        (c["best"] for c in tuned.notes["candidates"] if c["best"]), key=lambda p: p["ms"]
    )
    assert tuned.params["index"]["space"] in ("native", "mips_l2")
    assert (
        fastest["index"] == tuned.notes["index"] and fastest["runtime"] == tuned.params["runtime"]
    )
    # Both sides at their own measured best thread count.
    assert set(tuned.notes["exact_threads_ms"]) == {str(t) for t in thread_candidates()}
    assert set(tuned.notes["faiss_threads_ms"]) == {str(t) for t in thread_candidates()}
    summary = tuned.notes["summary"]
    assert tuned.notes["index"] in summary and "12,000 items" in summary
    assert "built in" in summary and "MiB" in summary

    _, candidate = materialize(pm, proposal, tuned, pipeline, tmp_path)
    assert context.fidelity(context.outputs(candidate)).value >= 0.95

    native = proposal.evolve(params={**proposal.params, "space": "native", "index_kind": "hnsw"})
    only = tune(pm, native, pipeline, workload, make_context(pm, pipeline, workload, tmp_path))
    assert [(c["kind"], c["space"]) for c in only.notes["candidates"]] == [("hnsw", "native")]


def test_the_fewest_threads_win_unless_more_are_clearly_faster(monkeypatch):
    import contextlib

    from pipetune.plugins.recsys import selection

    current = {"threads": 0}
    per_thread = {1: 1.0, 2: 0.95, 4: 0.5}

    @contextlib.contextmanager
    def pin(count):
        current["threads"] = count
        yield

    monkeypatch.setattr(
        ann_search,
        "time_one_at_a_time",
        lambda fn, inputs, repeats=1: per_thread[current["threads"]],
    )
    chosen, timings = selection.best_threads(lambda q: q, [0], pin, counts=[1, 2, 4])
    assert chosen == 4 and timings == {"1": 1000.0, "2": 950.0, "4": 500.0}
    per_thread[4] = 0.93
    assert selection.best_threads(lambda q: q, [0], pin, counts=[1, 2, 4])[0] == 1


@pytest.mark.slow
def test_two_stage_measures_the_mips_reduction_when_norms_are_uneven(pm, tmp_path):
    from pipetune.demos.recsys import data

    items = data.latent_factors(12_000, 32, norm_spread=3.7)
    pipeline, workload = two_stage_pipeline(items)
    tune_split, _ = workload.split(0.5)
    _, found = proposals_for(pm, pipeline, tune_split)
    proposal = found["recsys.ann_two_stage"]
    context = make_context(pm, pipeline, tune_split, tmp_path)
    tuned = tune(pm, proposal, pipeline, tune_split, context)
    assert [entry["space"] for entry in tuned.notes["spaces"]] == ["native", "mips_l2"]
    assert tuned.params["index"]["space"] in ("native", "mips_l2")
    assert tuned.notes["norms"]["spread"] > 3.5
    n = tuned.params["n_candidates"]
    assert f"N={n:,} candidates of 12,000 items" in tuned.notes["summary"]
    _, candidate = materialize(pm, proposal, tuned, pipeline, tmp_path)
    assert context.fidelity(context.outputs(candidate)).value >= 0.95
