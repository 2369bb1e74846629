import types

import pytest

from pipetune import PluginError, Proposal, get_plugin_manager, hookimpl
from pipetune.core.kernel.errors import DuplicateError


def _plugin(**hooks):
    module = types.ModuleType("fake_plugin")
    for name, fn in hooks.items():
        setattr(module, name, hookimpl(fn))
    return module


def test_builtins_load_through_the_public_path():
    pm = get_plugin_manager(entry_points=False)
    names = {status.name for status in pm.load_report if status.status == "loaded"}
    assert {"generic", "recsys", "nlp", "vision", "llm", "hardware"} <= names


def test_misspelled_hook_is_reported_and_others_load():
    def propose_change(pipeline):  # misspelled: propose_changes
        return []

    pm = get_plugin_manager(
        entry_points=False, plugins=[("typo", _plugin(propose_change=propose_change))]
    )
    status = next(s for s in pm.load_report if s.name == "typo")
    assert status.status == "failed" and "propose_changes" in status.error
    assert pm.get_plugin("generic") is not None


def test_strict_mode_fails_fast():
    def propose_change(pipeline):
        return []

    with pytest.raises(PluginError, match="typo"):
        get_plugin_manager(
            entry_points=False,
            strict=True,
            plugins=[("typo", _plugin(propose_change=propose_change))],
        )


def test_disable_by_name_and_env(monkeypatch):
    monkeypatch.setenv("PIPETUNE_DISABLE_PLUGINS", "vision, llm")
    pm = get_plugin_manager(entry_points=False, disable=["recsys"])
    disabled = {s.name for s in pm.load_report if s.status == "disabled"}
    assert disabled == {"vision", "llm", "recsys"}


def test_newer_api_plugin_is_incompatible():
    module = _plugin()
    module.PIPETUNE_API = 99
    pm = get_plugin_manager(builtins=False, entry_points=False, plugins=[("future", module)])
    status = pm.load_report[0]
    assert status.status == "incompatible" and "API 99" in status.error


def test_raising_plugin_is_isolated_in_call_each():
    def propose_changes(pipeline):
        raise RuntimeError("boom")

    def other(pipeline):
        return [Proposal(id="ok.x", plugin="ok", stage="s", title="t")]

    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[
            ("bad", _plugin(propose_changes=propose_changes)),
            ("ok", _plugin(propose_changes=other)),
        ],
    )
    results = pm.call_each("propose_changes", pipeline=None, profile=None, requirements=None)
    assert [name for name, _ in results] == ["ok"]
    assert pm.hook_failures[0].plugin == "bad" and "boom" in pm.hook_failures[0].error


def test_duplicate_backend_names_name_both_plugins():
    class B:
        name = "same"

    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[
            ("one", _plugin(register_backends=lambda: [B()])),
            ("two", _plugin(register_backends=lambda: [B()])),
        ],
    )
    with pytest.raises(DuplicateError, match=r"both '(one|two)' and '(one|two)'"):
        pm.backends()


def test_call_owner_calls_only_the_owner():
    calls = []

    def materialize_a(change, pipeline):
        calls.append("a")
        return "from-a"

    def materialize_b(change, pipeline):
        calls.append("b")
        return "from-b"

    pm = get_plugin_manager(
        builtins=False,
        entry_points=False,
        plugins=[
            ("a", _plugin(materialize_change=materialize_a)),
            ("b", _plugin(materialize_change=materialize_b)),
        ],
    )
    assert (
        pm.call_owner("materialize_change", "a", change=None, pipeline=None, artifacts_dir=None)
        == "from-a"
    )
    assert calls == ["a"]


def test_a_hook_over_its_bound_is_named_and_dropped():
    import threading

    def stage_hints(stage, pipeline):
        threading.Event().wait(5)

    pm = get_plugin_manager(
        builtins=False, entry_points=False, plugins=[("slow", _plugin(stage_hints=stage_hints))]
    )
    pm.cap_hook_timeouts(0.2)
    heard = []
    pm.failure_listeners.append(heard.append)
    assert pm.call_each("stage_hints", stage=None, pipeline=None) == []
    assert heard and heard[0].plugin == "slow" and "did not finish within 0.2 s" in heard[0].error
    assert "failed in stage_hints" in pm.problems()[0]


def test_sys_exit_and_wrong_shapes_are_recorded_failures():
    def stage_hints(stage, pipeline):
        return "one sentence"

    def inspect_pipeline(pipeline):
        raise SystemExit(3)

    plugin = _plugin(stage_hints=stage_hints, inspect_pipeline=inspect_pipeline)
    pm = get_plugin_manager(builtins=False, entry_points=False, plugins=[("odd", plugin)])
    assert pm.call_each("stage_hints", stage=None, pipeline=None) == [("odd", ["one sentence"])]
    assert pm.call_each("inspect_pipeline", pipeline=None) == []
    assert "called sys.exit(3)" in pm.hook_failures[0].error
    strict = get_plugin_manager(
        builtins=False, entry_points=False, strict=True, plugins=[("odd", plugin)]
    )
    with pytest.raises(PluginError, match=r"failed in inspect_pipeline: called sys.exit\(3\)"):
        strict.call_each("inspect_pipeline", pipeline=None)


def test_call_first_skips_a_result_of_the_wrong_type():
    from pipetune.core.kernel.results import Fidelity

    def compare_outputs(output_kind, baseline, candidate, labels):
        return 0.5  # not a Fidelity

    def good_compare(output_kind, baseline, candidate, labels):
        return Fidelity(metric="agreement", value=1.0)

    good = _plugin()
    good.compare_outputs = hookimpl(good_compare, specname="compare_outputs")
    pm = get_plugin_manager(
        entry_points=False,
        plugins=[("good", good), ("bad", _plugin(compare_outputs=compare_outputs))],
    )
    found = pm.call_first(
        "compare_outputs", returns=Fidelity, output_kind="labels", baseline=[1], candidate=[1],
        labels=None,
    )  # fmt: skip
    assert isinstance(found, Fidelity)  # the next plugin answered after the bad one
    assert any(f.plugin == "bad" and "not Fidelity" in f.error for f in pm.hook_failures)


def test_owner_calls_record_failures_and_strict_raises():
    def materialize_change(change, pipeline, artifacts_dir):
        raise RuntimeError("cannot build")

    plugin = _plugin(materialize_change=materialize_change)
    pm = get_plugin_manager(builtins=False, entry_points=False, plugins=[("own", plugin)])
    with pytest.raises(RuntimeError, match="cannot build"):
        pm.call_owner("materialize_change", "own", change=None, pipeline=None, artifacts_dir=None)
    assert pm.hook_failures[0].hook == "materialize_change"
    strict = get_plugin_manager(
        builtins=False, entry_points=False, strict=True, plugins=[("own", plugin)]
    )
    with pytest.raises(PluginError, match="own"):
        strict.call_owner(
            "materialize_change", "own", change=None, pipeline=None, artifacts_dir=None
        )
