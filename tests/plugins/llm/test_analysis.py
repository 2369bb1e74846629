"""Traffic analysis: copy rates, the prompt-lookup replay, bandwidth utilization."""

from __future__ import annotations

import pytest

from pipetune.plugins.llm.analysis import (
    bandwidth_utilization,
    ngram_copy_rate,
    peak_bandwidth,
    replay_prompt_lookup,
    traffic_facts,
)


def test_copy_rate_of_a_verbatim_copy_and_of_new_text():
    prompt = list(range(50))
    assert ngram_copy_rate(prompt, list(range(10, 30))) == 1.0
    assert ngram_copy_rate(prompt, [100 + i for i in range(20)]) == 0.0


def test_replay_of_prompt_lookup_over_a_copying_output():
    prompt = [9, 9, *range(10, 40)]
    output = list(range(10, 40))  # copies the prompt
    replay = replay_prompt_lookup(prompt, output, k=4)
    assert replay["tokens"] == len(output) - 1
    assert replay["accepted"] > 0.7 * replay["drafted"]
    # each pass yields accepted drafts + 1 token: fewer passes than tokens
    assert replay["passes"] < replay["tokens"] / 3
    fresh = replay_prompt_lookup(prompt, [100 + i for i in range(30)], k=4)
    assert fresh["accepted"] == 0 and fresh["passes"] == fresh["tokens"]


def test_traffic_facts_summarize_lengths_prefixes_and_lookup():
    system = list(range(200, 240))
    prompts = [[*system, i, i + 1] for i in range(6)]
    outputs = [[i, i + 1, 7, 8] for i in range(6)]
    facts = traffic_facts(prompts, outputs)
    assert facts["prompt_tokens"]["mean"] == 42
    assert facts["output_tokens"]["max"] == 4
    assert facts["shared_prefixes"]["lengths"] == [40]
    assert 0 <= facts["prompt_lookup"]["acceptance_rate"] <= 1


def test_bandwidth_utilization_against_a_known_gpu():
    assert peak_bandwidth("NVIDIA H200") == pytest.approx(4.8e12)
    assert peak_bandwidth("NVIDIA H100 80GB HBM3") == pytest.approx(3.35e12)
    assert peak_bandwidth("some cpu") is None
    facts = bandwidth_utilization(int(710e6), 770.0, "NVIDIA H200")
    assert facts["utilization"] == pytest.approx(710e6 * 770 / 4.8e12)
    assert facts["bound_tokens_per_s"] == pytest.approx(4.8e12 / 710e6)
    assert bandwidth_utilization(1000, 10.0, None) is None
