"""The plugin end to end through its hooks: profile facts, proposals, tune (with the
host's TuneContext), materialize; the user's model is never changed."""

from __future__ import annotations

import pytest

from pipetune import Rejected, get_plugin_manager
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change, Proposal
from pipetune.core.measure.profiler import profile
from pipetune.core.runtime.serving import ServingOptions
from pipetune.plugins.llm.blocks import generate_stage, prompt_stage
from pipetune.plugins.llm.records import GenerateConfig
from tests.plugins.llm.conftest import state_digest

SYSTEM = "You are a terse assistant for a hiking shop. Keep answers short and polite."


def items(n: int = 8) -> list[dict]:
    text = "the trail starts at the old mill and climbs to the ridge above the lake"
    out = []
    for i in range(n):
        if i % 2:
            out.append({"system": SYSTEM, "prompt": f"question {i}?", "max_new_tokens": 4 + i})
        else:
            out.append(
                {
                    "system": "Copy editor.",
                    "prompt": f"Fix: {text[: 20 + 5 * i]}",
                    "max_new_tokens": 10,
                }
            )
    return out


@pytest.fixture()
def setup(llama, tokenizer):
    pipeline = Pipeline(
        "chat",
        [
            prompt_stage(tokenizer),
            generate_stage(llama, tokenizer, use_cache=False, max_new_tokens=8),
        ],
        output_kind="tokens",
    )
    workload = Workload(items=tuple(items()), warmup=0, repeats=1)
    return pipeline, workload


def context_for(pm, pipeline, workload, tmp_path, requirements=None):
    return TuneContext(
        pm, pipeline, workload, requirements or Requirements(), ArtifactStore(tmp_path)
    )


@pytest.mark.slow
def test_profile_facts_for_a_generate_block(setup):
    pipeline, workload = setup
    pm = get_plugin_manager(entry_points=False)
    prof = profile(pipeline, workload, pm=pm)
    facts = prof.facts["llm"]["stages"]["generate"]
    assert facts["kv_cache"] is False
    assert facts["batching_policy"]["configured"] == "none"
    traffic = facts["traffic"]
    assert traffic["prompt_tokens"]["n"] == len(workload)
    assert traffic["output_tokens"]["max"] <= 11
    assert traffic["shared_prefixes"]["lengths"]
    assert "acceptance_rate" in traffic["prompt_lookup"]
    assert 0 <= traffic["ngram_copy_rate"] <= 1
    assert facts["ttft_ms"]["n"] == len(workload) and facts["tokens_per_s"] > 0
    assert "no CUDA device" in facts["memory_bandwidth"]["skipped"]
    proposals = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "llm"
    }
    assert set(proposals) == {"llm.kv_cache"}  # the rest builds on the cache
    assert proposals["llm.kv_cache"].est_stage_speedup > 1


@pytest.mark.slow
def test_kv_cache_change_tunes_materializes_and_keeps_tokens(setup, llama, tmp_path):
    pipeline, workload = setup
    pm = get_plugin_manager(entry_points=False)
    digest = state_digest(llama)
    prof = profile(pipeline, workload, pm=pm)
    proposal = next(
        p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "llm"
        if p.id == "llm.kv_cache"
    )
    context = context_for(pm, pipeline, workload, tmp_path)
    tuned = pm.tune(proposal, pipeline, context)
    assert tuned.params == {"use_cache": True}
    assert tuned.notes["fidelity"]["value"] == 1.0
    change = Change.from_proposal(proposal, tuned)
    candidate = pm.materialize(change, pipeline, tmp_path)
    assert candidate is not pipeline
    assert candidate.stage("generate").slots["config"].use_cache
    assert not pipeline.stage("generate").slots["config"].use_cache
    assert context.fidelity(context.outputs(candidate)).value == 1.0
    assert state_digest(llama) == digest


@pytest.mark.slow
def test_cached_pipeline_gets_the_serving_proposals(setup, tmp_path):
    pipeline, workload = setup
    cached = pipeline.replace(
        "generate", pipeline.stage("generate").with_slots(config=GenerateConfig(max_new_tokens=8))
    )
    pm = get_plugin_manager(entry_points=False)
    prof = profile(cached, workload, pm=pm)
    ids = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=cached, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "llm"
    }
    assert {"llm.prefix_cache", "llm.continuous_batching", "llm.cuda_graphs"} <= set(ids)
    assert ids["llm.cuda_graphs"].status == "unavailable"
    assert "CUDA" in ids["llm.cuda_graphs"].reason
    assert "llm.speculative_prompt_lookup" in ids["llm.continuous_batching"].conflicts
    # prompt lookup is proposed exactly when the replay over the outputs says it can pay
    facts = prof.facts["llm"]["stages"]["generate"]
    replayed = facts["traffic"]["prompt_lookup"]["tokens_per_pass"]
    assert ("llm.speculative_prompt_lookup" in ids) == (replayed >= 1.15)
    assert ("declined" in facts["speculation"]) == (replayed < 1.15)


def test_prompt_lookup_is_declined_from_the_traffic_when_outputs_do_not_copy(llama, tokenizer):
    from pipetune.plugins.llm.blocks import generate_stage
    from pipetune.plugins.llm.proposals import LOOKUP, _propose_block

    stage = generate_stage(llama, tokenizer)
    open_ended = {
        "prompt_lookup": {"tokens_per_pass": 1.02, "acceptance_rate": 0.01},
        "ngram_copy_rate": 0.02,
    }
    copying = {
        "prompt_lookup": {"tokens_per_pass": 2.6, "acceptance_rate": 0.55},
        "ngram_copy_rate": 0.8,
    }
    assert LOOKUP not in [p.id for p in _propose_block(stage, {}, open_ended, 60, 40)]
    proposed = {p.id: p for p in _propose_block(stage, {}, copying, 60, 40)}
    assert "55%" in proposed[LOOKUP].rationale and proposed[LOOKUP].est_stage_speedup > 1.5


@pytest.mark.slow
@pytest.mark.parametrize("proposal_id", ["llm.prefix_cache", "llm.continuous_batching"])
def test_serving_changes_keep_tokens_and_never_mutate(setup, llama, tmp_path, proposal_id):
    pipeline, workload = setup
    cached = pipeline.replace(
        "generate", pipeline.stage("generate").with_slots(config=GenerateConfig(max_new_tokens=8))
    )
    digest = state_digest(llama)
    pm = get_plugin_manager(entry_points=False)
    prof = profile(cached, workload, pm=pm)
    proposal = next(
        p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=cached, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "llm"
        if p.id == proposal_id
    )
    context = context_for(pm, cached, workload, tmp_path, Requirements(min_gain=0.0))
    try:
        tuned = pm.tune(proposal, cached, context)
    except Rejected as exc:  # timing on a tiny model may not pay; the reason says why
        assert "measured" in str(exc)
        tuned = None
    change = Change.from_proposal(proposal, tuned)
    candidate = pm.materialize(change, cached, tmp_path)
    outputs = candidate.run_batch(list(workload.items))
    assert context.fidelity(outputs).value == 1.0
    assert state_digest(llama) == digest
    if proposal_id == "llm.continuous_batching":
        # its gain needs several requests in flight: the estimate says so, the validator
        # gives it passes that fill its batches, and it is served in batches of that size
        assert proposal.in_flight is not None and "in flight" in proposal.in_flight.assumes
        if tuned is not None:
            batch = tuned.params["max_batch"]
            assert tuned.in_flight.inputs == batch and tuned.in_flight.arrival == "backlog"
            assert ServingOptions.of(candidate).batch_size == batch


def test_speculation_is_rejected_with_measured_figures_when_it_does_not_pay(setup, tmp_path):
    pipeline, workload = setup
    cached = pipeline.replace(
        "generate", pipeline.stage("generate").with_slots(config=GenerateConfig(max_new_tokens=8))
    )
    pm = get_plugin_manager(entry_points=False)
    proposal = Proposal(
        id="llm.speculative_prompt_lookup",
        plugin="llm",
        stage="generate",
        title="prompt lookup",
        params={"speculative": "prompt_lookup"},
    )
    demanding = Requirements(min_gain=9.0)  # no speculation gives 10x: must be declined
    context = context_for(pm, cached, workload, tmp_path, demanding)
    with pytest.raises(Rejected, match=r"acceptance \d+% \(\d+ of \d+ drafted tokens\), measured"):
        pm.tune(proposal, cached, context)


@pytest.mark.slow
def test_user_stage_with_use_cache_false_gets_the_proxy(llama, tokenizer, tmp_path):
    from tests.plugins.llm.test_recognize import user_generate

    stage = Stage(
        "gen", user_generate, kind="generate", slots={"model": llama, "tokenizer": tokenizer}
    )
    pipeline = Pipeline("user", [stage], output_kind="tokens")
    workload = Workload(items=("hello", "another prompt"), warmup=0, repeats=1)
    pm = get_plugin_manager(entry_points=False)
    prof = profile(pipeline, workload, pm=pm)
    proposals = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "llm"
    }
    # generate's own option fixes it: no advice to hand-write a cached loop (#20)
    assert "llm.kv_cache" in proposals and "llm.kv_cache_loop" not in proposals
    change = Change.from_proposal(proposals["llm.kv_cache"])
    candidate = pm.materialize(change, pipeline, tmp_path)
    assert type(candidate.stage("gen").slots["model"]).__name__ == "CachedGenerate"
    assert pipeline.stage("gen").slots["model"] is llama
    assert [candidate.run(i) for i in workload.items] == [pipeline.run(i) for i in workload.items]
