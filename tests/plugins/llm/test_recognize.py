"""Recognition of generate steps, the probe of user code, hints."""

from __future__ import annotations

from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.llm.blocks import generate_stage, prompt_stage
from pipetune.plugins.llm.recognize import (
    CachedGenerate,
    generate_stages,
    is_causal_lm,
    probe_generate,
    stage_facts,
)


def user_generate(text, *, model, tokenizer):
    """Plain user code: the classic slow generate."""
    import torch

    ids = torch.tensor([tokenizer.encode(text)])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=6,
        do_sample=False,
        use_cache=False,
        pad_token_id=0,
    )
    return out[0, ids.shape[1] :].tolist()


def user_cached_generate(text, *, model, tokenizer):
    import torch

    ids = torch.tensor([tokenizer.encode(text)])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=6,
        do_sample=False,
        pad_token_id=0,
    )
    return out[0, ids.shape[1] :].tolist()


def test_recognizes_block_and_user_stages(llama, tokenizer):
    block = generate_stage(llama, tokenizer)
    user = Stage(
        "gen", user_generate, kind="inference", slots={"model": llama, "tokenizer": tokenizer}
    )
    other = Stage("upper", str.upper)
    pipeline = Pipeline("p", [prompt_stage(tokenizer), block])
    assert generate_stages(pipeline) == [block]
    assert generate_stages(Pipeline("q", [other, user])) == [user]
    assert is_causal_lm(llama) and is_causal_lm(CachedGenerate(llama))
    assert not is_causal_lm(tokenizer) and not is_causal_lm("model")
    facts = stage_facts(block)
    assert facts["block"] and facts["kv_cache"] and facts["batching"] == "none"
    assert facts["model"]["class"] == "LlamaForCausalLM"
    assert facts["model"]["context_window"] == 256
    assert facts["model"]["weight_bytes"] > 0


def test_probe_tells_a_prefix_rerun_from_a_cached_decode(llama, tokenizer):
    slow = Stage("gen", user_generate, slots={"model": llama, "tokenizer": tokenizer})
    fast = Stage("gen", user_cached_generate, slots={"model": llama, "tokenizer": tokenizer})
    slow_probe = probe_generate(slow, "hello there")
    assert slow_probe["kv_cache"] is False and slow_probe["prefix_rerun"]
    assert slow_probe["forward_calls"] == 6
    fast_probe = probe_generate(fast, "hello there")
    assert fast_probe["kv_cache"] is True and not fast_probe["prefix_rerun"]
    assert not llama._forward_pre_hooks  # the probe's hook is gone


def test_cached_generate_proxy_fixes_use_cache_false(llama, tokenizer):
    slow = Stage("gen", user_generate, slots={"model": llama, "tokenizer": tokenizer})
    fixed = slow.with_slots(model=CachedGenerate(llama))
    assert fixed("a prompt") == slow("a prompt")
    assert probe_generate(fixed, "a prompt")["kv_cache"] is True
    assert fixed.slots["model"].__pipetune_wrapped__ is llama


def test_stage_hints(llama, tokenizer):
    from pipetune import get_plugin_manager

    pm = get_plugin_manager(entry_points=False)
    captured = Stage("gen", lambda text: text, kind="generate", slots={"model": llama})
    opaque = Stage("gen2", lambda text: text, kind="generate")
    pipeline = Pipeline("p", [captured, opaque])
    hints = [
        h for _, hs in pm.call_each("stage_hints", stage=captured, pipeline=pipeline) for h in hs
    ]
    assert any("accept `model=`" in h for h in hints)
    hints = [
        h for _, hs in pm.call_each("stage_hints", stage=opaque, pipeline=pipeline) for h in hs
    ]
    assert any("generate_stage" in h for h in hints)
