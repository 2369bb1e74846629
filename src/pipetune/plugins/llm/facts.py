"""The llm plugin's profile facts, from the shared profiling run's observed requests.

Per generate stage: what it is (block or user code, model size and precision, context
window), how it runs (KV cache, batching policy, speculation), and what the traffic looks
like (prompt and output length distributions, shared prefixes, n-gram copy rate and the
replayed prompt-lookup acceptance), with time to first token, inter-token latency,
tokens/s, and on a GPU the memory-bandwidth utilization of decoding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipetune.core.kernel.context import Observations
from pipetune.core.kernel.model import Pipeline, Workload
from pipetune.core.kernel.results import Profile
from pipetune.plugins.llm.analysis import bandwidth_utilization, distribution, traffic_facts
from pipetune.plugins.llm.blocks import encode_request, is_generate_block
from pipetune.plugins.llm.recognize import generate_stages, probe_generate, stage_facts
from pipetune.plugins.llm.records import Generation, GenerationRequest, token_list


def inspect(pipeline: Pipeline) -> dict[str, Any] | None:
    stages = generate_stages(pipeline)
    if not stages:
        return None
    return {"stages": {stage.name: stage_facts(stage) for stage in stages}}


def _device_name(model: Any) -> str | None:
    device = getattr(model, "device", None)
    if getattr(device, "type", None) != "cuda":
        return None
    import torch

    return str(torch.cuda.get_device_name(device))


def _requests(stage: Any, inputs: list[Any]) -> list[GenerationRequest]:
    tokenizer = stage.slots.get("tokenizer")
    out = []
    for item in inputs:
        try:
            out.append(encode_request(item, tokenizer))
        except Exception:  # an input the block would refuse: counted through its output
            continue
    return out


def profile_facts(
    pipeline: Pipeline, workload: Workload, profile: Profile, observed: Observations
) -> dict[str, Any] | None:
    stages = generate_stages(pipeline)
    if not stages:
        return None
    result: dict[str, Any] = {}
    for stage in stages:
        facts = stage_facts(stage)
        inputs = observed.inputs_of(stage.name)
        outputs = observed.outputs_of(stage.name)
        try:
            timing = profile.stage(stage.name)
        except KeyError:
            timing = None
        if is_generate_block(stage):
            facts.update(_block_facts(stage, inputs, outputs, timing))
        else:
            facts.update(_opaque_facts(stage, inputs, outputs))
        result[stage.name] = facts
    return {"stages": result}


def _block_facts(stage: Any, inputs: list[Any], outputs: list[Any], timing: Any) -> dict[str, Any]:
    requests = _requests(stage, inputs)
    generations = [o for o in outputs if isinstance(o, Generation)]
    ok = [(r, g) for r, g in zip(requests, generations, strict=False) if g.ok]
    facts: dict[str, Any] = {
        "traffic": traffic_facts([r.prompt_ids for r, _ in ok], [g.tokens for _, g in ok]),
    }
    reasons: dict[str, int] = {}
    for g in generations:
        reasons[g.finish_reason] = reasons.get(g.finish_reason, 0) + 1
    facts["finish_reasons"] = reasons
    facts["speculation"] = _speculation_verdict(facts["traffic"])
    refused = [g.error for g in generations if g.error]
    facts["refused"] = {"count": len(refused), "examples": refused[:3]}
    ttft = [g.stats["ttft_s"] * 1000 for _, g in ok if "ttft_s" in g.stats]
    itl = [g.stats["itl_s"] * 1000 for _, g in ok if "itl_s" in g.stats]
    facts["ttft_ms"] = distribution(ttft)
    facts["itl_ms"] = distribution(itl)
    tokens = sum(len(g.tokens) for _, g in ok)
    if timing is not None and timing.mean_ms > 0 and ok:
        facts["tokens_per_s"] = tokens / len(ok) / (timing.mean_ms / 1000.0)
        facts["request_ms_p50"] = timing.p50_ms
    config = stage.slots["config"]
    facts["batching_policy"] = {
        "configured": config.batching,
        "max_batch": config.max_batch if config.batching != "none" else 1,
        "measured_as": "one request at a time (the profiler's offline pass)",
    }
    model = stage.slots["model"]
    weight_bytes = (facts.get("model") or stage_facts(stage).get("model") or {}).get("weight_bytes")
    decode_rate = 1000.0 / facts["itl_ms"]["p50"] if itl and facts["itl_ms"]["p50"] > 0 else None
    device = _device_name(model)
    facts["memory_bandwidth"] = (
        bandwidth_utilization(weight_bytes, decode_rate, device)
        if device
        else {"skipped": "no CUDA device: bandwidth utilization is reported on GPUs"}
    )
    return facts


def _speculation_verdict(traffic: dict[str, Any]) -> str:
    from pipetune.plugins.llm.proposals import MIN_TOKENS_PER_PASS

    lookup = traffic.get("prompt_lookup")
    if not lookup:
        return "no outputs observed: prompt lookup not assessed"
    verdict = (
        f"prompt lookup replayed over the observed outputs: {lookup['acceptance_rate']:.0%} of "
        f"drafted tokens accepted, {lookup['tokens_per_pass']:.2f} tokens per target pass"
    )
    if lookup["tokens_per_pass"] >= MIN_TOKENS_PER_PASS:
        return verdict + ": proposed (the tune step measures the speedup)"
    return verdict + f": declined (below {MIN_TOKENS_PER_PASS} tokens per pass, it cannot pay)"


def _opaque_facts(stage: Any, inputs: list[Any], outputs: list[Any]) -> dict[str, Any]:
    facts: dict[str, Any] = {}
    if inputs:
        facts["probe"] = probe_generate(stage, inputs[0])
        facts["kv_cache"] = facts["probe"].get("kv_cache")
    lengths = []
    for output in outputs:
        try:
            lengths.append(len(token_list(output)))
        except TypeError:
            continue
    if lengths:
        facts["output_tokens"] = distribution(lengths)
    prompts, generated = plain_traffic(stage, inputs, outputs)
    if generated:
        facts["traffic"] = traffic_facts(prompts, generated)
        facts["speculation"] = _speculation_verdict(facts["traffic"])
    return facts


def _encode_text(tokenizer: Any, text: str) -> list[int]:
    try:
        ids = tokenizer.encode(text, add_special_tokens=False)
    except TypeError:
        ids = tokenizer.encode(text)
    return [int(t) for t in ids]


def plain_traffic(
    stage: Any, inputs: list[Any], outputs: list[Any]
) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and output token ids of a user's generate stage, from its observed inputs and
    outputs: the input as its tokenizer slot encodes it (a string, or a dict with
    ``prompt`` / ``messages`` / ``prompt_ids``), the output as token ids (a list, a tensor
    row, or text encoded with the same tokenizer; a returned sequence that starts with the
    prompt has it removed). Pairs either side cannot be read from are left out: the copy
    rate is measured in the stage's own vocabulary, on the ids the profile saw."""
    tokenizer = stage.slots.get("tokenizer")
    prompts: list[list[int]] = []
    generated: list[list[int]] = []
    for item, output in zip(inputs, outputs, strict=False):
        try:
            # no chat template: the copy rate reads the text's own n-grams
            prompt = list(encode_request(item, tokenizer, chat_template=False).prompt_ids)
            if isinstance(output, str):
                if tokenizer is None:
                    continue
                out = _encode_text(tokenizer, output)
            else:
                rows = output.tolist() if hasattr(output, "tolist") else output
                if isinstance(rows, list) and len(rows) == 1 and isinstance(rows[0], list):
                    rows = rows[0]  # a batch of one, as generate returns it
                out = token_list(rows)
        except Exception:  # not a prompt or not token ids: this pair is not readable
            continue
        if len(out) > len(prompt) and out[: len(prompt)] == prompt:
            out = out[len(prompt) :]
        prompts.append(prompt)
        generated.append(out)
    return prompts, generated


def merged_stage_facts(profile: Profile, stage: str) -> Mapping[str, Any]:
    stages = profile.facts.get("llm", {}).get("stages", {})
    return stages.get(stage, {}) if isinstance(stages, Mapping) else {}
