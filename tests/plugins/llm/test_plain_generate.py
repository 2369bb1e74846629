"""A user's own stage calling transformers' ``generate`` one prompt at a time: the traffic
read from its inputs and outputs, the KV-cache proxy, then prompt-lookup speculation
through generate's own ``prompt_lookup_num_tokens`` when the outputs copy their prompts
(and no proposal, or a rejection, when they do not); no hand-written-loop advice once
the proxy applies; the hardware plugin sees the model behind the proxy."""

from __future__ import annotations

import pytest

from pipetune import Rejected, get_plugin_manager
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.measure.profiler import profile
from pipetune.plugins.llm.analysis import traffic_facts
from pipetune.plugins.llm.facts import plain_traffic
from pipetune.plugins.llm.proposals import KV_CACHE, KV_CACHE_LOOP, LOOKUP, _propose_plain
from pipetune.plugins.llm.recognize import CachedGenerate
from tests.plugins.llm.conftest import state_digest
from tests.plugins.llm.test_recognize import user_cached_generate, user_generate

DOC = "the trail starts at the old mill and climbs to the ridge above the lake"


def user_copy_generate(text, *, model, tokenizer):
    """Plain user code with a longer budget (where drafting has room to pay)."""
    import torch

    ids = torch.tensor([tokenizer.encode(text)])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=24,
        do_sample=False,
        use_cache=False,
        pad_token_id=0,
    )
    return out[0, ids.shape[1] :].tolist()


def hand_loop(text, *, model, tokenizer):
    """A hand-written decode loop that re-runs the prefix (generate's options miss it)."""
    import torch

    ids = tokenizer.encode(text)
    for _ in range(4):
        ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[-4:]


def grounded_traffic(tokenizer):
    """Outputs that copy long spans of their prompts (an edit / extract workload)."""
    prompts, outputs = [], []
    for i in range(6):
        doc = tokenizer.encode(f"Fix the spelling: {DOC[i:]} (note {i})")
        prompts.append(doc)
        outputs.append(doc[18:60])
    return traffic_facts(prompts, outputs)


def open_traffic(tokenizer):
    """Outputs with nothing in common with their prompts (open-ended writing)."""
    prompts = [tokenizer.encode(f"Write a story about topic {i}.") for i in range(6)]
    outputs = [[200 + (7 * i + 13 * j) % 50 for j in range(40)] for i in range(6)]
    return traffic_facts(prompts, outputs)


def stage_with(model, tokenizer, fn=user_copy_generate):
    return Stage("gen", fn, kind="generate", slots={"model": model, "tokenizer": tokenizer})


def context_for(pm, pipeline, workload, tmp_path, requirements=None):
    return TuneContext(
        pm, pipeline, workload, requirements or Requirements(), ArtifactStore(tmp_path)
    )


# -- the traffic of a user's stage ----------------------------------------------------------


def test_plain_traffic_reads_prompts_and_outputs_of_any_form(llama, tokenizer, torch):
    stage = stage_with(llama, tokenizer)
    prompt = tokenizer.encode("copy this text")
    inputs = ["copy this text", {"prompt": "copy this text"}, {"prompt_ids": prompt}, "x", 5]
    outputs = [
        [1, 2, 3],  # token ids
        torch.tensor([[*prompt, 7, 8]]),  # generate's (1, n) row, prompt included
        "this text",  # decoded text: encoded with the stage's tokenizer
        object(),  # not token ids: left out
        [1],  # an input that is not a prompt: left out
    ]
    prompts, generated = plain_traffic(stage, inputs, outputs)
    assert prompts == [prompt, prompt, prompt]
    assert generated == [[1, 2, 3], [7, 8], tokenizer.encode("this text")]
    assert plain_traffic(stage_with(llama, None), ["a"], ["b"]) == ([], [])


@pytest.mark.slow
def test_profile_of_a_plain_stage_measures_the_copy_rate(llama, tokenizer):
    pipeline = Pipeline("user", [stage_with(llama, tokenizer, user_generate)], output_kind="tokens")
    workload = Workload(items=(DOC, DOC[10:]), warmup=0, repeats=1)
    pm = get_plugin_manager(entry_points=False)
    facts = profile(pipeline, workload, pm=pm).facts["llm"]["stages"]["gen"]
    traffic = facts["traffic"]
    assert traffic["prompt_tokens"]["n"] == 2 and traffic["output_tokens"]["mean"] == 6
    assert 0.0 <= traffic["ngram_copy_rate"] <= 1.0 and "prompt_lookup" in traffic
    assert "prompt lookup replayed" in facts["speculation"]
    assert facts["probe"]["via_generate"] is True


# -- what is proposed -----------------------------------------------------------------------


def test_no_cache_generate_gets_the_proxy_and_no_loop_advice(llama, tokenizer):
    stage = stage_with(llama, tokenizer)
    probe = {"kv_cache": False, "prefix_rerun": True, "via_generate": True}
    traffic = grounded_traffic(tokenizer)
    ids = [p.id for p in _propose_plain(stage, {"probe": probe}, traffic, 60, 40)]
    # prompt lookup needs the cache: it comes once the KV change is kept
    assert ids == [KV_CACHE]


def test_a_hand_written_loop_gets_advice_only(llama, tokenizer):
    stage = stage_with(llama, tokenizer, hand_loop)
    probe = {"kv_cache": False, "prefix_rerun": True, "via_generate": False}
    proposals = _propose_plain(stage, {"probe": probe}, grounded_traffic(tokenizer), 60, 40)
    assert [p.id for p in proposals] == [KV_CACHE_LOOP]
    assert proposals[0].applicable is False


def test_no_loop_advice_once_the_model_is_a_cached_generate(llama, tokenizer):
    stage = stage_with(CachedGenerate(llama), tokenizer)
    # even a stale probe from before the cache was kept must not bring the advice back
    probe = {"kv_cache": False, "prefix_rerun": True, "via_generate": True}
    ids = [p.id for p in _propose_plain(stage, {"probe": probe}, open_traffic(tokenizer), 60, 40)]
    assert KV_CACHE_LOOP not in ids and KV_CACHE not in ids


def test_prompt_lookup_is_proposed_from_grounded_traffic_once_the_cache_is_on(llama, tokenizer):
    traffic = grounded_traffic(tokenizer)
    assert traffic["prompt_lookup"]["tokens_per_pass"] >= 1.15
    for model, probe in (
        (CachedGenerate(llama), {"kv_cache": True, "via_generate": True}),  # KV change kept
        (llama, {"kv_cache": True, "via_generate": True}),  # the user's generate caches
    ):
        proposals = {
            p.id: p
            for p in _propose_plain(stage_with(model, tokenizer), {"probe": probe}, traffic, 60, 40)
        }
        lookup = proposals[LOOKUP]
        assert lookup.params == {"wrap": "cached_generate"}
        assert "copy their prompts" in lookup.rationale and "assumes" in lookup.rationale
        assert lookup.evidence["ngram_copy_rate"] == traffic["ngram_copy_rate"]
        assert lookup.est_stage_speedup > 1.0 and lookup.fidelity_kind == "tokens"
    # already drafting: nothing more to propose
    drafting = stage_with(CachedGenerate(llama, 5), tokenizer)
    assert not _propose_plain(drafting, {"probe": {"kv_cache": True}}, traffic, 60, 40)


def test_open_ended_traffic_gets_no_prompt_lookup(llama, tokenizer):
    traffic = open_traffic(tokenizer)
    assert traffic["prompt_lookup"]["tokens_per_pass"] < 1.15
    stage = stage_with(CachedGenerate(llama), tokenizer)
    assert not _propose_plain(stage, {"probe": {"kv_cache": True}}, traffic, 60, 40)


# -- tune and materialize -------------------------------------------------------------------


@pytest.fixture()
def cached_pipeline(llama, tokenizer):
    """The user's stage after ``llm.kv_cache`` was kept."""
    stage = stage_with(CachedGenerate(llama), tokenizer)
    return Pipeline("user", [stage], output_kind="tokens")


def lookup_proposal(pipeline, tokenizer):
    stage = pipeline.stage("gen")
    probe = {"kv_cache": True, "via_generate": True}
    return next(
        p
        for p in _propose_plain(stage, {"probe": probe}, grounded_traffic(tokenizer), 60, 40)
        if p.id == LOOKUP
    )


@pytest.mark.slow
def test_tune_keeps_tokens_identical_and_materialize_sets_the_draft_length(
    cached_pipeline, llama, tokenizer, tmp_path
):
    pm = get_plugin_manager(entry_points=False)
    workload = Workload(items=(f"Fix: {DOC}", f"Fix: {DOC[20:]}"), warmup=0, repeats=1)
    proposal = lookup_proposal(cached_pipeline, tokenizer)
    digest = state_digest(llama)
    context = context_for(pm, cached_pipeline, workload, tmp_path, Requirements(min_gain=0.0))
    try:
        tuned = pm.tune(proposal, cached_pipeline, context)
    except Rejected as exc:  # timing on a tiny model may not pay; the reason says why
        assert "measured" in str(exc) and "against generate without it" in str(exc)
        tuned = None
    if tuned is not None:
        k = tuned.params["prompt_lookup_num_tokens"]
        assert tuned.notes["chosen"]["prompt_lookup_num_tokens"] == k
        assert [p["prompt_lookup_num_tokens"] for p in tuned.notes["points"]] == [3, 5, 10]
    else:
        k = 5
    change = Change.from_proposal(proposal).evolve(
        params={"wrap": "cached_generate", "prompt_lookup_num_tokens": k}
    )
    candidate = pm.materialize(change, cached_pipeline, tmp_path)
    proxy = candidate.stage("gen").slots["model"]
    assert isinstance(proxy, CachedGenerate) and proxy.prompt_lookup_num_tokens == k
    assert proxy.__pipetune_wrapped__ is llama  # unwrapped once, never nested
    items = list(workload.items)
    assert [candidate.run(i) for i in items] == [cached_pipeline.run(i) for i in items]
    assert state_digest(llama) == digest


def test_prompt_lookup_is_rejected_when_it_loses_to_no_lookup(cached_pipeline, tokenizer, tmp_path):
    pm = get_plugin_manager(entry_points=False)
    workload = Workload(items=("Write a story.",), warmup=0, repeats=1)
    proposal = lookup_proposal(cached_pipeline, tokenizer)
    demanding = Requirements(min_gain=9.0)  # no draft length gives 10x here
    context = context_for(pm, cached_pipeline, workload, tmp_path, demanding)
    with pytest.raises(Rejected, match=r"does not pay on this traffic.*measured [\d.]+x"):
        pm.tune(proposal, cached_pipeline, context)


def test_generate_gets_use_cache_and_the_draft_length(llama, tokenizer):
    calls = []

    class Recorder:
        def generate(self, *args, **kwargs):
            calls.append(kwargs)
            return "ok"

    proxy = CachedGenerate(Recorder(), 7)
    assert proxy.generate([1], use_cache=False) == "ok"
    assert calls == [{"use_cache": True, "prompt_lookup_num_tokens": 7}]
    # the user's own draft length wins over the proxy's
    proxy.generate([1], prompt_lookup_num_tokens=3)
    assert calls[-1]["prompt_lookup_num_tokens"] == 3


# -- the loop: KV first, then lookup, never the loop advice ---------------------------------


@pytest.mark.slow
def test_the_kv_change_then_lookup_and_no_loop_advice(llama, tokenizer, tmp_path):
    pipeline = Pipeline("user", [stage_with(llama, tokenizer, user_generate)], output_kind="tokens")
    workload = Workload(items=(DOC, DOC[10:]), warmup=0, repeats=1)
    pm = get_plugin_manager(entry_points=False)

    def llm_ids(p):
        prof = profile(p, workload, pm=pm)
        return {
            x.id
            for _, ps in pm.call_each(
                "propose_changes", pipeline=p, profile=prof, requirements=Requirements()
            )
            for x in ps
            if x.plugin == "llm"
        }

    ids = llm_ids(pipeline)
    assert KV_CACHE in ids and KV_CACHE_LOOP not in ids and LOOKUP not in ids
    kept = pm.materialize(
        Change(proposal=KV_CACHE, plugin="llm", stage="gen", params={"wrap": "cached_generate"}),
        pipeline,
        tmp_path,
    )
    after = llm_ids(kept)
    assert KV_CACHE not in after and KV_CACHE_LOOP not in after


# -- the hardware plugin sees the model behind the proxy ------------------------------------


def test_hardware_plugin_sees_through_the_proxy(llama, tokenizer):
    from pipetune.plugins.hardware.recognize import TORCH, main_model, models_in_stage
    from pipetune.plugins.hardware.wrappers import original_module, rewrap

    proxy = CachedGenerate(llama, 4)
    stage = stage_with(proxy, tokenizer)
    refs = models_in_stage(stage)
    assert [(r.slot, r.kind) for r in refs] == [("model", TORCH)]
    ref = main_model(stage)
    assert ref.module is llama and ref.applied is None  # the proxy is not a hardware change
    assert ref.describe()["parameters"] > 0
    assert original_module(proxy) is llama
    # a hardware change rebuilding the model keeps the proxy (and its draft length) around it
    rebuilt = rewrap(proxy, "int8 copy")
    assert isinstance(rebuilt, CachedGenerate) and rebuilt.__pipetune_wrapped__ == "int8 copy"
    assert rebuilt.prompt_lookup_num_tokens == 4
    assert rewrap(llama, "int8 copy") == "int8 copy"


def test_hardware_precision_change_keeps_the_kv_proxy(llama, tokenizer, tmp_path):
    from pipetune.plugins.hardware.changes.common import materialize

    pipeline = Pipeline(
        "user", [stage_with(CachedGenerate(llama), tokenizer, user_cached_generate)]
    )
    change = Change(
        proposal="hardware.precision",
        plugin="hardware",
        stage="gen",
        params={
            "slot": "model",
            "kind": "torch",
            "candidate": {"backend": "torch", "precision": "fp32", "options": {"threads": 1}},
        },
    )
    candidate = materialize(change, pipeline, tmp_path)
    value = candidate.stage("gen").slots["model"]
    assert isinstance(value, CachedGenerate)
    assert type(value.__pipetune_wrapped__).__name__ == "ThreadPinned"
    assert candidate.run("hello") == pipeline.run("hello")


def test_a_captured_model_in_generate_gets_neither_proxy_nor_loop_advice(llama, tokenizer):
    # the model is not injected: the stage hint (accept `model=`) is what helps, not advice
    # to hand-write a cached loop
    stage = Stage("gen", lambda text: text, kind="generate", slots={"model": llama})
    probe = {"kv_cache": False, "prefix_rerun": True, "via_generate": True}
    assert not _propose_plain(stage, {"probe": probe}, grounded_traffic(tokenizer), 60, 40)
