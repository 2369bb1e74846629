"""Shared fixtures. Plugin-author fixtures come from pipetune.testing (a pytest plugin)."""

try:  # property tests must not fail on a busy 2-core machine because one example was slow
    from hypothesis import settings

    settings.register_profile("pipetune", deadline=None)
    settings.load_profile("pipetune")
except ImportError:  # hypothesis is a dev extra
    pass


# Slow tests of tests/plugins/llm (see the `slow` marker in pyproject.toml). Those modules
# are being reworked on the llm branch (issue 18), so the marks are applied here for now;
# they move into the modules as `@pytest.mark.slow` once that branch lands.
_SLOW_LLM_TESTS = {
    "tests/plugins/llm/test_demo.py::test_quick_demo_builds_and_runs",
    "tests/plugins/llm/test_demo.py::test_smollm2_loads_from_the_conversion_cache_when_present",
    "tests/plugins/llm/test_cuda_graphs.py::test_the_graph_tune_step_measures_both_captures_and_keeps_the_faster",
    "tests/plugins/llm/test_cuda_graphs.py::test_a_compiled_static_decode_step_gives_the_same_tokens",
    "tests/plugins/llm/test_plugin.py::test_profile_facts_for_a_generate_block",
    "tests/plugins/llm/test_plugin.py::test_kv_cache_change_tunes_materializes_and_keeps_tokens",
    "tests/plugins/llm/test_plugin.py::test_serving_changes_keep_tokens_and_never_mutate",
    "tests/plugins/llm/test_plugin.py::test_cached_pipeline_gets_the_serving_proposals",
    "tests/plugins/llm/test_plugin.py::test_user_stage_with_use_cache_false_gets_the_proxy",
    "tests/plugins/llm/test_stream.py::test_profile_in_stream_mode_has_the_llm_facts",
    "tests/plugins/llm/test_engine.py::test_kv_cache_gives_identical_greedy_tokens",
    "tests/plugins/llm/test_scheduler.py::test_batched_outputs_equal_one_at_a_time",
    "tests/plugins/llm/test_speculative.py::test_speculative_decoding_is_lossless_and_counts_acceptance",
}


def pytest_collection_modifyitems(config, items):  # type: ignore[no-untyped-def]
    import pytest

    for item in items:
        if item.nodeid.split("[")[0] in _SLOW_LLM_TESTS:
            item.add_marker(pytest.mark.slow)
