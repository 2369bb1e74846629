"""Tests of the example plugin, written with pipetune's testing kit (pipetune.testing).

The kit's fixtures (``make_pm``, ``pm``, ``hook_recorder``, ``pipetune_artifacts``) come
from the pytest plugin pipetune installs; nothing needs to be configured.
"""

from __future__ import annotations

import pytest
from pipetune_example_plugin import plugin

from pipetune.testing import (
    apply_proposal,
    assert_no_proposal,
    assert_proposes,
    assert_unchanged,
    make_pipeline,
    make_stage,
    make_workload,
)

STOPWORDS = [f"word{i}" for i in range(300)] + ["the", "a", "of"]


def drop_stopwords(text, *, stopwords):
    return [token for token in text.split() if token not in stopwords]


def count_stopwords(text, *, stopwords):
    # indexes the list: a frozenset would break this, so no proposal
    return sum(1 for token in text.split() if token in stopwords) + len(stopwords[0])


@pytest.fixture
def example_pm(make_pm):
    # The name must match the entry point's: it is the prefix of the proposal ids.
    return make_pm(("example", plugin))


@pytest.mark.slow
def test_proposes_the_swap_with_a_measured_speedup(example_pm):
    pipeline = make_pipeline(
        make_stage("filter", drop_stopwords, kind="tokenize", slots={"stopwords": STOPWORDS}),
        output_kind="any",
    )
    proposal = assert_proposes(
        example_pm, pipeline, make_workload(n=40), id="example.set_lookup", stage="filter"
    )
    assert proposal.est_stage_speedup >= plugin.MIN_SPEEDUP
    assert proposal.params == {"slots": ["stopwords"]}
    assert proposal.evidence["inputs"] == 40


@pytest.mark.slow
def test_applying_gives_the_same_outputs_and_leaves_the_list_alone(example_pm, pipetune_artifacts):
    pipeline = make_pipeline(
        make_stage("filter", drop_stopwords, slots={"stopwords": STOPWORDS}), output_kind="any"
    )
    workload = make_workload(n=40)
    proposal = assert_proposes(example_pm, pipeline, workload, id="example.set_lookup")
    with assert_unchanged(STOPWORDS):
        new, change = apply_proposal(example_pm, proposal, pipeline, workload, pipetune_artifacts)
    assert isinstance(new.stage("filter").slots["stopwords"], frozenset)
    assert pipeline.stage("filter").slots["stopwords"] is STOPWORDS
    assert [new.run(x) for x in workload.items] == [pipeline.run(x) for x in workload.items]
    assert change.params == {"slots": ["stopwords"]}


@pytest.mark.slow
def test_no_proposal_when_the_list_is_used_otherwise(example_pm):
    pipeline = make_pipeline(
        make_stage("count", count_stopwords, slots={"stopwords": STOPWORDS}), output_kind="any"
    )
    assert_no_proposal(example_pm, pipeline, make_workload(n=20), plugin="example")


@pytest.mark.slow
def test_no_proposal_for_a_short_list_or_a_set(example_pm):
    for stopwords in (["the", "a"], frozenset(STOPWORDS)):
        pipeline = make_pipeline(make_stage("f", drop_stopwords, slots={"stopwords": stopwords}))
        assert_no_proposal(example_pm, pipeline, make_workload(n=10), plugin="example")


GLOBAL_STOPWORDS = list(STOPWORDS)


def drop_global_stopwords(text):
    return [token for token in text.split() if token not in GLOBAL_STOPWORDS]


@pytest.mark.slow
def test_hints_at_a_global_list(pm, hook_recorder):
    pm.load_plugin("example", plugin)
    pipeline = make_pipeline(make_stage("filter", drop_global_stopwords))
    from pipetune.testing import quick_profile

    profile = quick_profile(pm, pipeline, make_workload(n=5))
    assert any("GLOBAL_STOPWORDS" in hint for hint in profile.hints)
    hook_recorder.assert_called("stage_hints", plugin="example", times=1)


# -- the change type and the output kind (written from pipetune's CONTRIBUTING.md) ---------


def test_the_change_type_is_registered_with_typed_params(example_pm):
    from pipetune_example_plugin.set_lookup import SetLookupParams

    from pipetune import ParamsError

    registered = example_pm.change_types()["example.set_lookup"]
    assert registered.owner == "example" and not registered.lossy
    assert SetLookupParams.of({"slots": ["stopwords"]}) == SetLookupParams(("stopwords",))
    with pytest.raises(ParamsError, match="unknown parameter 'slot'"):
        SetLookupParams.of({"slot": "stopwords"})


@pytest.mark.slow
def test_a_recipe_reapplies_the_change_without_the_plugin_searching(example_pm, pipetune_artifacts):
    from pipetune import load_recipe
    from pipetune.core.loop.recipes import make_recipe

    pipeline = make_pipeline(
        make_stage("filter", drop_stopwords, slots={"stopwords": STOPWORDS}), output_kind="any"
    )
    workload = make_workload(n=40)
    proposal = assert_proposes(example_pm, pipeline, workload, id="example.set_lookup")
    _, change = apply_proposal(example_pm, proposal, pipeline, workload, pipetune_artifacts)
    recipe = make_recipe(pipeline, [change])
    assert recipe.to_dict()["changes"][0]["params_version"] == 1
    loaded = load_recipe(
        pipeline, recipe.to_dict(), pm=example_pm, artifacts_dir=pipetune_artifacts
    )
    assert isinstance(loaded.stage("filter").slots["stopwords"], frozenset)


def test_word_sets_are_compared_by_jaccard_and_judged_by_this_plugin(example_pm):
    same = example_pm.compare("word_sets", [["a", "b"], []], [["b", "a"], []])
    assert (same.value, same.metric, same.judged_by) == (1.0, "mean_jaccard", "example")
    half = example_pm.compare("word_sets", [["a", "b"]], [["a", "c"]])
    assert half.value == pytest.approx(1 / 3) and half.details["first_difference"] == 0


@pytest.mark.slow
def test_the_set_lookup_keeps_word_sets_identical(example_pm, pipetune_artifacts):
    pipeline = make_pipeline(
        make_stage("filter", drop_stopwords, slots={"stopwords": STOPWORDS}),
        output_kind="word_sets",
    )
    workload = make_workload(n=40)
    proposal = assert_proposes(example_pm, pipeline, workload, id="example.set_lookup")
    new, _ = apply_proposal(example_pm, proposal, pipeline, workload, pipetune_artifacts)
    items = list(workload.items)
    fidelity = example_pm.compare(
        "word_sets", [pipeline.run(x) for x in items], [new.run(x) for x in items]
    )
    assert fidelity.value == 1.0 and fidelity.details["identical"] == len(items)
