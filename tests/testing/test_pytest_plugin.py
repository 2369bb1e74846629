"""The kit's fixtures reach a third-party test suite through the pytest11 entry point."""

from __future__ import annotations

import pytest


def test_fixtures_are_available_without_a_conftest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_author="""
        import pytest
        from pipetune import Proposal, hookimpl
        from pipetune.testing import assert_proposes, make_pipeline, make_profile


        class Plugin:
            @hookimpl
            def propose_changes(self, pipeline, profile):
                return [Proposal(id="mine.x", plugin="mine", stage="a", title="t")]


        def test_empty_pm(pm):
            assert pm.plugin_names() == []


        def test_make_pm_and_recorder(make_pm):
            pm = make_pm(("mine", Plugin()))
            pipeline = make_pipeline("a")
            assert_proposes(pm, pipeline, profile=make_profile(pipeline), id="mine.x")


        def test_recorder(pm, hook_recorder):
            pm.load_plugin("mine", Plugin())
            pipeline = make_pipeline("a")
            pm.call_each("propose_changes", pipeline=pipeline, profile=make_profile(pipeline),
                         requirements=None)
            assert hook_recorder.plugins_called("propose_changes") == ["mine"]


        @pytest.mark.pipetune_builtins
        def test_builtins(pm):
            assert "generic" in pm.plugin_names()


        def test_artifacts(pipetune_artifacts):
            assert pipetune_artifacts.is_dir()
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=5)


def test_each_test_gets_a_fresh_manager(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_fresh="""
        import types
        seen = []

        def test_one(pm):
            pm.load_plugin("extra", types.SimpleNamespace())
            seen.append(pm)

        def test_two(pm):
            assert pm.plugin_names() == [] and pm is not seen[0]
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
