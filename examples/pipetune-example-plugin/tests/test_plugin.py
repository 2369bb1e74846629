"""Tests of the example plugin, written with pipetune's testing kit (pipetune.testing).

The kit's fixtures (``make_pm``, ``pm``, ``hook_recorder``, ``pipetune_artifacts``) come
from the pytest plugin pipetune installs; nothing needs to be configured.
"""

from __future__ import annotations

from pathlib import Path

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


# -- example.lowercase_memo and example.word_count (written from CONTRIBUTING.md) -----------


def count_content_words(text, *, stopwords):
    # reads its input only as text.lower(): the memo applies
    return len([token for token in text.lower().split() if token not in stopwords])


def count_capitalized_content_words(text, *, stopwords):
    # reads its input as typed too (text.split()): inputs differing in case differ
    words = [token for token in text.lower().split() if token not in stopwords]
    return len(words) + sum(token[:1].isupper() for token in text.split())


def cased_repeats(n_distinct=10):
    """Each of ``n_distinct`` generated texts four times, in four casings: 75 % of the
    inputs repeat an earlier one up to case and none repeats it exactly."""
    base = list(make_workload(n=n_distinct, seed=3).items)
    variants = (str.upper, str.title, str.capitalize, alternating_case)
    return [variant(text) for variant in variants for text in base]


def alternating_case(text):
    return "".join(c.upper() if i % 2 else c.lower() for i, c in enumerate(text))


def count_pipeline(fn=count_content_words, output_kind="example.word_count"):
    return make_pipeline(
        make_stage("count", fn, slots={"stopwords": STOPWORDS}), output_kind=output_kind
    )


def test_the_memo_change_type_is_registered_with_typed_params(example_pm):
    from pipetune_example_plugin.lowercase_memo import DEFAULT_CAPACITY, LowercaseMemoParams

    from pipetune import ParamsError

    registered = example_pm.change_types()["example.lowercase_memo"]
    assert registered.owner == "example" and not registered.lossy and registered.version == 1
    assert registered.tune is not None
    assert LowercaseMemoParams.of({}) == LowercaseMemoParams(DEFAULT_CAPACITY)
    assert LowercaseMemoParams.of({"capacity": 8}).capacity == 8
    with pytest.raises(ParamsError, match="unknown parameter 'size'"):
        LowercaseMemoParams.of({"size": 8})
    with pytest.raises(ParamsError, match="capacity"):
        LowercaseMemoParams.of({"capacity": "big"})


def test_only_a_function_reading_its_input_lowercased_is_case_insensitive():
    from pipetune_example_plugin.case_folding import is_case_insensitive

    assert is_case_insensitive(count_content_words)
    assert not is_case_insensitive(count_capitalized_content_words)
    assert not is_case_insensitive(drop_stopwords)  # text.split(): case matters
    assert not is_case_insensitive(len)  # no source to read


def test_the_memo_answers_case_variants_once_and_hands_out_copies():
    from pipetune_example_plugin.lowercase_memo import LowercaseMemo

    calls = []

    def words(text, *, stopwords):
        calls.append(text)
        return [token for token in text.lower().split() if token not in stopwords]

    memo = LowercaseMemo(words, capacity=2)
    stage = make_stage("words", memo, slots={"stopwords": STOPWORDS})
    first = stage("The Cat")
    first.append("mutated by a later stage")
    assert stage("THE CAT") == ["cat"] and calls == ["The Cat"]
    assert memo.pipetune_cache_stats() == {"hits": 1, "misses": 1}
    # another slot object (another change replaced it) is never answered from the old one
    assert stage.with_slots(stopwords=["cat"])("the cat") == ["the"]
    memo.pipetune_reset()
    assert memo.pipetune_cache_stats() == {"hits": 0, "misses": 0}
    stage("the cat")
    assert len(calls) == 3  # cold again after the reset
    stage("a dog"), stage("a bird"), stage("A DOG")
    assert calls[-2:] == ["a dog", "a bird"]  # capacity 2: "the cat" was evicted
    stage("The cat")
    assert calls[-1] == "The cat"
    # inputs that are not text are passed straight through, never remembered
    sizes = LowercaseMemo(lambda item: len(item), capacity=4)
    assert [sizes([1, 2]), sizes([1, 2])] == [2, 2] and sizes.pipetune_cache_stats()["hits"] == 0


def test_pipetune_finds_the_memo_and_resets_it_before_a_measured_pass():
    from pipetune_example_plugin import lowercase_memo

    from pipetune import Change
    from pipetune.core.kernel.state import cache_stats, reset_state

    change = Change("example.lowercase_memo", "example", "count", {"capacity": 64})
    new = lowercase_memo.materialize(change, count_pipeline(), Path("unused"))
    for item in cased_repeats():
        new.run(item)
    assert cache_stats(new)["count"]["hit_rate"] == pytest.approx(0.75)
    assert reset_state(new) == ["count: fn"]
    assert cache_stats(new)["count"]["hits"] == 0


@pytest.mark.slow
def test_proposes_the_memo_where_inputs_repeat_up_to_case(example_pm):
    proposal = assert_proposes(
        example_pm,
        count_pipeline(),
        make_workload(cased_repeats()),
        id="example.lowercase_memo",
        stage="count",
    )
    assert proposal.est_stage_speedup >= plugin.MIN_SPEEDUP
    assert proposal.params == {"capacity": 4096}
    assert proposal.evidence["repeat_share"] == pytest.approx(0.75)


@pytest.mark.slow
def test_no_memo_when_case_matters_or_nothing_repeats(example_pm):
    workload = make_workload(cased_repeats())
    pipeline = count_pipeline(count_capitalized_content_words)
    assert_no_proposal(example_pm, pipeline, workload, id="example.lowercase_memo")
    distinct = make_workload(n=40, seed=5)
    assert_no_proposal(example_pm, count_pipeline(), distinct, id="example.lowercase_memo")


@pytest.mark.slow
def test_applying_the_memo_gives_the_same_counts_and_leaves_the_stage_alone(
    example_pm, pipetune_artifacts
):
    from pipetune_example_plugin.lowercase_memo import LowercaseMemo

    pipeline = count_pipeline()
    workload = make_workload(cased_repeats())
    proposal = assert_proposes(example_pm, pipeline, workload, id="example.lowercase_memo")
    with assert_unchanged(STOPWORDS):
        new, change = apply_proposal(example_pm, proposal, pipeline, workload, pipetune_artifacts)
    memo = new.stage("count").fn
    assert isinstance(memo, LowercaseMemo)
    assert not isinstance(pipeline.stage("count").fn, LowercaseMemo)
    assert new.stage("count").meta["applied"] == ["example.lowercase_memo"]
    memo.pipetune_reset()
    items = list(workload.items)
    new_counts, old_counts = [new.run(x) for x in items], [pipeline.run(x) for x in items]
    assert new_counts == old_counts
    assert memo.pipetune_cache_stats() == {"hits": 30, "misses": 10}
    fidelity = example_pm.compare("example.word_count", old_counts, new_counts)
    assert fidelity.value == 1.0 and fidelity.details["exact"] == len(items)
    assert change.params == {"capacity": 4096}
    # applied once: the memoized stage is not proposed again
    assert_no_proposal(example_pm, new, workload, id="example.lowercase_memo")


def test_the_memo_is_refused_when_the_tuning_split_never_repeats(example_pm, pipetune_artifacts):
    from pipetune import Proposal, Rejected

    proposal = Proposal(
        id="example.lowercase_memo",
        plugin="example",
        stage="count",
        title="Memoize count by its lower-cased input",
        params={"capacity": 16},
    )
    distinct = make_workload(n=12, seed=5)
    with pytest.raises(Rejected, match="repeats an earlier one up to case"):
        apply_proposal(example_pm, proposal, count_pipeline(), distinct, pipetune_artifacts)


@pytest.mark.slow
def test_a_recipe_reapplies_the_memo_without_the_plugin_searching(example_pm, pipetune_artifacts):
    from pipetune_example_plugin.lowercase_memo import LowercaseMemo

    from pipetune import load_recipe
    from pipetune.core.loop.recipes import make_recipe

    pipeline = count_pipeline()
    workload = make_workload(cased_repeats())
    proposal = assert_proposes(example_pm, pipeline, workload, id="example.lowercase_memo")
    _, change = apply_proposal(example_pm, proposal, pipeline, workload, pipetune_artifacts)
    recipe = make_recipe(pipeline, [change])
    saved = recipe.to_dict()["changes"][0]
    assert (saved["proposal"], saved["params_version"]) == ("example.lowercase_memo", 1)
    loaded = load_recipe(
        pipeline, recipe.to_dict(), pm=example_pm, artifacts_dir=pipetune_artifacts
    )
    assert isinstance(loaded.stage("count").fn, LowercaseMemo)
    assert [loaded.run(x) for x in workload.items] == [pipeline.run(x) for x in workload.items]


def test_word_counts_are_compared_by_exact_match_and_judged_by_this_plugin(example_pm):
    from pipetune import PipelineError

    same = example_pm.compare("example.word_count", [3, 0, 7], [3, 0, 7])
    assert (same.value, same.metric, same.judged_by) == (1.0, "exact_match_rate", "example")
    assert same.n == 3 and same.output_kind == "example.word_count"
    off = example_pm.compare("example.word_count", [3, 0, 7, 2], [3, 1, 7, 5])
    assert off.value == 0.5
    assert off.details["first_difference"] == 1 and off.details["mean_abs_difference"] == 1.0
    labelled = example_pm.compare("example.word_count", [3, 0], [3, 1], labels=[3, 0])
    assert labelled.details["accuracy_drop"] == pytest.approx(0.5)
    summary = labelled.details["summary"]
    assert "50.0% exactly right against the labels (100.0% before)" in summary
    with pytest.raises(PipelineError, match=r"candidate output #1 is 'two'"):
        example_pm.compare("example.word_count", [1, 2], [1, "two"])


@pytest.mark.slow
def test_the_set_lookup_keeps_word_counts_identical(example_pm, pipetune_artifacts):
    pipeline = count_pipeline(output_kind="example.word_count")
    workload = make_workload(n=40)
    proposal = assert_proposes(example_pm, pipeline, workload, id="example.set_lookup")
    new, _ = apply_proposal(example_pm, proposal, pipeline, workload, pipetune_artifacts)
    items = list(workload.items)
    fidelity = example_pm.compare(
        "example.word_count", [pipeline.run(x) for x in items], [new.run(x) for x in items]
    )
    assert fidelity.value == 1.0 and fidelity.details["exact"] == len(items)
