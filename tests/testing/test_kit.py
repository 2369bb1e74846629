"""The testing kit, used the way a plugin author uses it."""

from __future__ import annotations

import types

import numpy as np
import pytest

from pipetune import PluginError, Proposal, Requirements, Stage, hookimpl
from pipetune.core.kernel.errors import DuplicateError
from pipetune.core.kernel.results import Change
from pipetune.testing import (
    HookRecorder,
    apply_proposal,
    assert_no_proposal,
    assert_proposes,
    assert_unchanged,
    check_proposal,
    digest,
    make_pipeline,
    make_plugin_manager,
    make_profile,
    make_stage,
    make_workload,
)


class SlowStagePlugin:
    """Proposes caching any stage over half of the time; applies it with a dict cache."""

    @hookimpl
    def propose_changes(self, pipeline, profile):
        proposals = []
        for stats in profile.stages:
            if stats.name != "other" and stats.share > 0.5:
                proposals.append(
                    Proposal(
                        id="slowstage.cache",
                        plugin="slowstage",
                        stage=stats.name,
                        title=f"cache {stats.name}",
                        est_stage_speedup=2.0,
                    )
                )
        return proposals

    @hookimpl
    def materialize_change(self, change, pipeline):
        stage = pipeline.stage(change.stage)
        cache: dict = {}

        def cached(item, **slots):
            if item not in cache:
                cache[item] = stage(item)
            return cache[item]

        return pipeline.replace(change.stage, stage.evolve(fn=cached, slots={}))


def test_pm_fixture_is_fresh_strict_and_empty(pm):
    assert pm.plugin_names() == []
    assert pm.strict


@pytest.mark.pipetune_builtins
def test_pm_fixture_with_builtins(pm):
    assert "generic" in pm.plugin_names()


def test_make_pm_names_plugins_and_refuses_duplicates():
    module = types.ModuleType("my_pkg.plugin")
    pm = make_plugin_manager(module, ("other", SlowStagePlugin()))
    assert pm.plugin_names() == ["my_pkg", "other"]
    with pytest.raises(PluginError, match="two test plugins"):
        make_plugin_manager(SlowStagePlugin(), SlowStagePlugin())


def test_builders_make_varied_inputs_and_labels():
    texts = make_workload(n=30, labels=True)
    lengths = {len(t.split()) for t in texts.items}
    assert len(lengths) > 3 and set(texts.labels) == {"long", "short"}
    vectors = make_workload(n=10, kind="vector", labels=True)
    assert vectors.items[0].shape == (32,) and vectors.items[0].dtype == np.float32
    images = make_workload(n=5, kind="image")
    assert len({img.shape for img in images.items}) > 1
    with pytest.raises(ValueError, match="unknown kind"):
        make_workload(kind="audio")


def test_make_stage_passes_only_the_slots_fn_takes():
    def encode(text, *, tokenizer):
        return tokenizer(text)

    stage = make_stage("encode", encode, slots={"tokenizer": str.upper, "model": object()})
    assert stage("abc") == "ABC"
    assert stage.injects("tokenizer") and not stage.injects("model")
    assert stage.with_slots(tokenizer=str.lower)("ABC") == "abc"


def test_make_stage_fail_on_and_batchable():
    stage = make_stage("s", lambda x: x + 1, fail_on=lambda x: x == 3, batchable=True)
    assert stage.call_batch([1, 2]) == [2, 3]
    with pytest.raises(ValueError, match="cannot handle 3"):
        stage(3)


def test_make_profile_has_the_requested_shares():
    pipeline = make_pipeline("a", "b")
    profile = make_profile(pipeline, {"a": 8.0, "b": 1.0}, other_ms=1.0)
    assert profile.share("a") == pytest.approx(0.8, abs=0.03)
    assert sum(s.share for s in profile.stages) == pytest.approx(1.0)
    assert len(profile.stage_ms) == 200
    with pytest.raises(ValueError, match="no stage"):
        make_profile(pipeline, {"c": 1.0})


def test_assert_proposes_on_a_synthetic_profile():
    pm = make_plugin_manager(("slowstage", SlowStagePlugin()))
    pipeline = make_pipeline("fast", "slow")
    profile = make_profile(pipeline, {"slow": 5.0})
    proposal = assert_proposes(pm, pipeline, profile=profile, id="slowstage.cache")
    assert proposal.stage == "slow"
    assert_no_proposal(pm, pipeline, profile=make_profile(pipeline, {"fast": 1.0, "slow": 1.0}))


@pytest.mark.slow
def test_assert_proposes_on_a_real_run():
    pm = make_plugin_manager(("slowstage", SlowStagePlugin()))
    pipeline = make_pipeline(make_stage("fast"), make_stage("slow", cost_ms=2))
    assert_proposes(pm, pipeline, make_workload(n=8), id="slowstage.cache", stage="slow")


def test_assert_proposes_failure_lists_what_was_proposed():
    pm = make_plugin_manager(("slowstage", SlowStagePlugin()))
    pipeline = make_pipeline("fast", "slow")
    profile = make_profile(pipeline, {"slow": 5.0})
    with pytest.raises(AssertionError, match=r"proposed: slowstage.cache@slow"):
        assert_proposes(pm, pipeline, profile=profile, id="slowstage.other")
    with pytest.raises(AssertionError, match="expected no proposal"):
        assert_no_proposal(pm, pipeline, profile=profile, plugin="slowstage")


def test_check_proposal_lists_contract_breaks():
    pipeline = make_pipeline("a")
    bad = Proposal(id="nodot", plugin="x", stage="zzz", title="", est_stage_speedup=0)
    with pytest.raises(AssertionError) as info:
        check_proposal(bad, pipeline, plugin="y")
    message = str(info.value)
    for fragment in ("'<plugin>.<change>'", "came from plugin 'y'", "'zzz'", "no title", "> 0"):
        assert fragment in message
    with pytest.raises(AssertionError, match="unavailable without a reason"):
        check_proposal(
            Proposal(id="x.y", plugin="x", stage="a", title="t", status="unavailable"), pipeline
        )


def test_a_proposal_must_come_from_the_plugin_it_names():
    def propose(pipeline):
        return [Proposal(id="dup.x", plugin="dup", stage="a", title="t")]

    pipeline = make_pipeline("a")
    honest = make_plugin_manager(("dup", _module(propose_changes=propose)))
    assert_proposes(honest, pipeline, profile=make_profile(pipeline), id="dup.x")
    impostor = make_plugin_manager(("impostor", _module(propose_changes=propose)))
    with pytest.raises(AssertionError, match="came from plugin 'impostor'"):
        assert_proposes(impostor, pipeline, profile=make_profile(pipeline), id="dup.x")


def test_collect_refuses_the_same_id_for_a_stage_twice():
    from pipetune.testing import collect_proposals

    def propose(pipeline):
        return [
            Proposal(id="twice.x", plugin="twice", stage="a", title="t"),
            Proposal(id="twice.x", plugin="twice", stage="a", title="t"),
        ]

    pm = make_plugin_manager(("twice", _module(propose_changes=propose)))
    pipeline = make_pipeline("a")
    with pytest.raises(DuplicateError, match="'twice' and 'twice'"):
        collect_proposals(pm, pipeline, profile=make_profile(pipeline))


def test_apply_proposal_materializes_a_new_pipeline(pipetune_artifacts):
    pm = make_plugin_manager(("slowstage", SlowStagePlugin()))
    pipeline = make_pipeline(make_stage("slow", lambda x: x * 3))
    proposal = assert_proposes(
        pm, pipeline, profile=make_profile(pipeline, {"slow": 5.0}), id="slowstage.cache"
    )
    new, change = apply_proposal(
        pm, proposal, pipeline, make_workload(n=4, kind="int"), pipetune_artifacts
    )
    assert isinstance(change, Change) and change.proposal == "slowstage.cache"
    assert new is not pipeline and new.run(2) == 6 == pipeline.run(2)


def test_apply_proposal_catches_a_plugin_that_mutates(pipetune_artifacts):
    class Mutating:
        @hookimpl
        def materialize_change(self, change, pipeline):
            pipeline.stage("a").slots["weights"][0] = 99.0  # the bug the kit must catch
            return make_pipeline("a")

    weights = np.zeros(4)
    pipeline = make_pipeline(make_stage("a", slots={"weights": weights}))
    pm = make_plugin_manager(("mutating", Mutating()))
    proposal = Proposal(id="mutating.x", plugin="mutating", stage="a", title="t")
    with pytest.raises(AssertionError, match="mutated: Pipeline 'pipeline'"):
        apply_proposal(pm, proposal, pipeline, make_workload(n=2), pipetune_artifacts)


def test_digest_sees_array_and_nested_changes():
    array = np.arange(6.0)
    holder = {"a": [array, {"k": 1}]}
    before = digest(holder)
    array[2] = -1
    assert digest(holder) != before
    with pytest.raises(AssertionError, match="mutated"), assert_unchanged(holder):
        holder["a"][1]["k"] = 2


def test_digest_of_a_torch_module_follows_its_weights():
    torch = pytest.importorskip("torch", reason="torch is in the nlp/vision/llm extras")
    model = torch.nn.Linear(3, 2)
    before = digest(model)
    with torch.no_grad():
        model.weight[0, 0] += 1
    assert digest(model) != before


def test_hook_recorder_records_plugin_args_and_result(pm, hook_recorder):
    pm.load_plugin("slowstage", SlowStagePlugin())  # registered after the recorder: recorded
    pipeline = make_pipeline("fast", "slow")
    profile = make_profile(pipeline, {"slow": 5.0})
    pm.call_each("propose_changes", pipeline=pipeline, profile=profile, requirements=Requirements())
    (call,) = hook_recorder.assert_called("propose_changes", plugin="slowstage", times=1)
    assert call.kwargs == {"pipeline": pipeline, "profile": profile}
    assert call.result[0].id == "slowstage.cache"
    hook_recorder.assert_not_called("materialize_change")


def test_hook_recorder_sees_pluggy_calls_and_exceptions():
    def compare_outputs(output_kind):
        raise RuntimeError("broken metric")

    pm = make_plugin_manager(("broken", _module(compare_outputs=compare_outputs)))
    with HookRecorder(pm) as recorder, pytest.raises(RuntimeError):
        pm.hook.compare_outputs(output_kind="labels", baseline=[], candidate=[], labels=None)
    (call,) = recorder.calls_to("compare_outputs")
    assert call.raised and call.kwargs == {"output_kind": "labels"}
    # uninstalled: the original function is back
    assert pm.hook.compare_outputs.get_hookimpls()[0].function.__name__ == "compare_outputs"
    assert not hasattr(pm.hook.compare_outputs.get_hookimpls()[0].function, "__wrapped__")


@pytest.mark.slow
def test_hook_recorder_counts_stage_hints_per_stage(make_pm):
    def stage_hints(stage: Stage):
        return [f"hint for {stage.name}"]

    pm = make_pm(("hinter", _module(stage_hints=stage_hints)))
    pipeline = make_pipeline("a", "b", "c")
    with HookRecorder(pm) as recorder:
        from pipetune.testing import quick_profile

        profile = quick_profile(pm, pipeline, make_workload(n=3))
    assert [c.kwargs["stage"].name for c in recorder.calls_to("stage_hints")] == ["a", "b", "c"]
    ours = [hint for hint in profile.hints if hint.startswith("hint for")]
    assert ours == ["hint for a", "hint for b", "hint for c"]


def _module(**hooks):
    module = types.ModuleType("test_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_invoke_cli_runs_a_plugin_command():
    import click

    from pipetune.testing import invoke_cli

    class Commands:
        @hookimpl
        def register_commands(self, cli):
            @cli.command()
            @click.argument("who")
            def greet(who):
                click.echo(f"hello {who}")

    pm = make_plugin_manager(("commands", Commands()))
    result = invoke_cli(pm, "greet", "world")
    assert result.exit_code == 0 and result.output == "hello world\n"
    assert invoke_cli(pm, "plugins").exit_code == 0
