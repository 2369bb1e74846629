"""The headline demo in its quick size: it builds, caches its set-up, and its cached
baseline outputs are exactly what the baseline pipeline computes."""

from __future__ import annotations

import pytest

from pipetune.core.kernel.registry import DemoSetup
from pipetune.demos.nlp import demo

pytestmark = pytest.mark.slow  # builds the quick demo: MiniLM at 512 tokens, a head


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory, torch, transformers, minilm_path):
    import os

    cache = tmp_path_factory.mktemp("cache")
    old = os.environ.get("PIPETUNE_CACHE")
    os.environ["PIPETUNE_CACHE"] = str(cache)
    try:
        yield demo.build_demo(quick=True), cache
    finally:
        if old is None:
            os.environ.pop("PIPETUNE_CACHE", None)
        else:
            os.environ["PIPETUNE_CACHE"] = old


@pytest.mark.slow
def test_quick_demo_builds_with_its_baseline(quick_demo):
    setup, cache = quick_demo
    assert isinstance(setup, DemoSetup)
    pipeline, workload, requirements = setup.pipeline, setup.workload, setup.requirements
    assert pipeline.stage_names == ("sections", "tokenize", "embed", "classify")
    tok, emb = pipeline.stage("tokenize").slots, pipeline.stage("embed").slots
    assert type(tok["tokenizer"]).__name__ in ("BertTokenizerLegacy", "BertTokenizer")
    assert not getattr(tok["tokenizer"], "is_fast", False)
    assert (tok["max_length"], tok["padding"], emb["batch_size"], emb["grad_mode"]) == (
        512,
        "max_length",
        1,
        "no_grad",
    )
    outputs = setup.notes["baseline_outputs"]
    assert len(outputs) == len(workload.items) == len(workload.labels) >= 3
    assert requirements.cost_per_hour and requirements.monthly_volume
    assert requirements.min_speedup == 15 and requirements.max_accuracy_drop == 0.01
    assert pipeline.run(workload.items[0]) == outputs[0]
    assert list(cache.joinpath("nlp").glob("demo-head-*.npz"))
    # a case's revisions are one group: never split between tuning and validation
    assert len(workload.groups) == len(workload.items) and workload.group_count >= 2
    tune, holdout = workload.split(0.4)
    assert not set(tune.groups) & set(holdout.groups)


@pytest.mark.slow
def test_section_reuse_gives_exactly_the_baseline_outputs(quick_demo):
    setup, _ = quick_demo
    items = setup.workload.items[:1]
    reused, info = demo.run_baseline_with_reuse(setup.pipeline, items)
    assert reused == [setup.pipeline.run(item) for item in items]
    assert info["distinct_sections"] <= info["sections"]


def test_second_build_reuses_the_cache(quick_demo, monkeypatch):
    setup, _ = quick_demo

    def fail(*args, **kwargs):
        raise AssertionError("the head was retrained although it is cached")

    monkeypatch.setattr(demo, "train_head", fail)
    again = demo.build_demo(quick=True)
    assert again.notes["baseline_outputs"] == setup.notes["baseline_outputs"]
    assert again.workload.items == setup.workload.items
