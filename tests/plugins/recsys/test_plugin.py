"""The plugin as the host sees it: lazy imports, registration, the quick demo end to end."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from .conftest import digest, make_context


def test_modules_import_without_faiss_or_torch() -> None:
    code = (
        "import sys\n"
        "import pipetune, pipetune.plugins.recsys as r\n"
        "from pipetune.plugins.recsys import plugin, blocks, ann, ann_build, ann_search, "
        "exact_search, recognize, facts, "
        "proposals, fidelity, cache, features, threads, changes\n"
        "from pipetune.plugins.recsys.changes import common, ann_exact, ann_two_stage, "
        "user_embedding_cache, batched_feature_reads\n"
        "assert len(changes.change_types()) == 4\n"
        "from pipetune.demos.recsys import data, demo\n"
        "r.exact_topk, r.full_ranking, r.embedding, r.feature_lookup\n"
        "assert 'faiss' not in sys.modules and 'torch' not in sys.modules, "
        "[m for m in ('faiss', 'torch') if m in sys.modules]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registration(pm) -> None:
    statuses = {s.name: s for s in pm.load_report}
    assert statuses["recsys"].status == "loaded"
    deps = [dep for name, dep in pm.dependencies() if name == "recsys"]
    assert {d.module for d in deps} == {"faiss", "torch"}
    assert all(d.extra == "recsys" for d in deps)
    demos = pm.demos()
    assert "recsys" in demos and demos["recsys"][0] == "recsys"


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    pytest.importorskip("faiss", reason="faiss is an optional dependency (recsys extra)")
    pytest.importorskip("torch", reason="torch is an optional dependency (recsys extra)")
    import os

    from pipetune.demos.recsys import demo

    old = os.environ.get("PIPETUNE_CACHE")
    os.environ["PIPETUNE_CACHE"] = str(tmp_path_factory.mktemp("recsys-cache"))
    try:
        yield demo.build(quick=True)
    finally:
        if old is None:
            os.environ.pop("PIPETUNE_CACHE", None)
        else:
            os.environ["PIPETUNE_CACHE"] = old


@pytest.mark.slow
def test_quick_demo_builds_runs_and_gets_every_proposal(quick_demo, pm, tmp_path) -> None:
    from pipetune.core.measure.profiler import profile

    setup = quick_demo
    pipeline, workload = setup.pipeline, setup.workload
    assert pipeline.stage_names == ("features", "embed_user", "rank")
    notes = setup.notes
    assert notes["generator"]["n_items"] == 20_000 and notes["generator"]["rank"] == 32
    # the ranker does not just repeat the retrieval scores (so 95 % is not trivial)
    assert notes["agreement"]["pearson_retrieval_top1000"] < 0.95
    assert notes["agreement"]["top50_kept_by_exact_retrieval_topN"]["50"] < 0.9
    output = pipeline.run(workload.items[0])
    assert output.shape == (50,) and len(set(output.tolist())) == 50

    # A dozen requests, half of them from returning users, keep the test quick.
    counts: dict[int, int] = {}
    for item in workload.items:
        counts[item["user_id"]] = counts.get(item["user_id"], 0) + 1
    repeats = [item for item in workload.items if counts[item["user_id"]] > 1][:6]
    others = [item for item in workload.items if counts[item["user_id"]] == 1][:6]
    small = workload.evolve(items=tuple(repeats + others), warmup=0, repeats=1)
    prof = profile(pipeline, small, pm=pm)
    facts = prof.facts["recsys"]["stages"]
    assert facts["rank"]["catalog_size"] == 20_000 and facts["rank"]["ranker_us_per_item"] > 0
    assert facts["features"]["calls_per_request"] == 11
    assert facts["embed_user"]["repeat_share"] > 0
    assert prof.facts["recsys"]["feature_lookup_share"] > 0
    proposals = {
        p.id: p
        for _, batch in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=setup.requirements
        )
        for p in batch
    }
    assert {
        "recsys.ann_two_stage",
        "recsys.user_embedding_cache",
        "recsys.batched_feature_reads",
    } <= set(proposals)

    # Batched reads: same outputs, fewer calls. The cache: measured, within the budget.
    ranker = pipeline.stage("rank").slots["ranker"]
    before = (
        digest(ranker.mlp),
        digest(ranker.item_emb),
        digest(pipeline.stage("embed_user").slots["model"]),
    )
    tune_split = small
    current = pipeline
    for name in ("recsys.batched_feature_reads", "recsys.user_embedding_cache"):
        context = make_context(pm, pipeline, tune_split, tmp_path)
        tuned = pm.tune(proposals[name], current, context)
        current = pm.materialize(pm.make_change(proposals[name], tuned), current, tmp_path)
    assert current.stage("features").slots["batched"] is True
    assert current.stage("embed_user").slots["cache"].maxsize >= 10_000
    outputs = [current.run(item) for item in tune_split.items]
    assert current.stage("embed_user").slots["cache"].stats()["hits"] > 0
    baseline = [pipeline.run(item) for item in tune_split.items]
    fid = make_context(pm, pipeline, tune_split, tmp_path).fidelity(outputs, baseline=baseline)
    assert fid.value >= 0.95
    after = (
        digest(ranker.mlp),
        digest(ranker.item_emb),
        digest(pipeline.stage("embed_user").slots["model"]),
    )
    assert before == after
    assert "cache" not in pipeline.stage("embed_user").slots
    assert np.array_equal(pipeline.run(workload.items[0]), output)
