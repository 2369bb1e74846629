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


def test_no_proposal_when_the_list_is_used_otherwise(example_pm):
    pipeline = make_pipeline(
        make_stage("count", count_stopwords, slots={"stopwords": STOPWORDS}), output_kind="any"
    )
    assert_no_proposal(example_pm, pipeline, make_workload(n=20), plugin="example")


def test_no_proposal_for_a_short_list_or_a_set(example_pm):
    for stopwords in (["the", "a"], frozenset(STOPWORDS)):
        pipeline = make_pipeline(make_stage("f", drop_stopwords, slots={"stopwords": stopwords}))
        assert_no_proposal(example_pm, pipeline, make_workload(n=10), plugin="example")


GLOBAL_STOPWORDS = list(STOPWORDS)


def drop_global_stopwords(text):
    return [token for token in text.split() if token not in GLOBAL_STOPWORDS]


def test_hints_at_a_global_list(pm, hook_recorder):
    pm.load_plugin("example", plugin)
    pipeline = make_pipeline(make_stage("filter", drop_global_stopwords))
    from pipetune.testing import quick_profile

    profile = quick_profile(pm, pipeline, make_workload(n=5))
    assert any("GLOBAL_STOPWORDS" in hint for hint in profile.hints)
    hook_recorder.assert_called("stage_hints", plugin="example", times=1)
