"""The execution context: candidates are timed the way a plain script calls them, and a
recipe carries the thread settings its figures were measured under."""

from __future__ import annotations

import threading
import warnings

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import ExecutionContext
from pipetune.core.measure import execution
from pipetune.core.measure.comparison import CompareSettings, compare
from pipetune.core.measure.timed_pass import RuntimeSpec

torch = pytest.importorskip("torch", reason="the nlp extra (torch) is not installed")


def scorer(calls: list) -> Pipeline:
    """A small torch ranker that records which thread called it, under which torch
    thread count."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))

    def score(item, *, model):
        calls.append((threading.current_thread(), torch.get_num_threads()))
        with torch.inference_mode():
            return float(model(torch.full((1, 16), float(item))).item())

    return Pipeline("scorer", (Stage("score", score, kind="ranking", slots={"model": model}),))


def test_timed_passes_run_in_the_main_thread_under_the_process_thread_settings():
    assert threading.current_thread() is threading.main_thread()
    calls: list = []
    process_threads = torch.get_num_threads()
    settings = CompareSettings(rounds=2, items_per_round=5, bootstrap=100)
    result = compare(scorer(calls), scorer([]), list(range(20)), settings=settings)
    # the first call is the warm-up, on a worker thread under a deadline (a hang is named
    # there); the probe and every round (a fast side's short warm-up before each pass
    # too) run where a plain script calls pipeline.run
    timed = calls[4:]
    warmups = 2 * 2 * result.warmup_inputs["a"]
    assert len(timed) == 4 + 2 * 2 * 5 + warmups
    assert {thread for thread, _ in timed} == {threading.main_thread()}
    assert {count for _, count in timed} == {process_threads}
    assert result.runtime.describe()["calling_thread"] == "caller"


def test_the_worker_thread_model_is_still_available_and_recorded():
    calls: list = []
    settings = CompareSettings(rounds=2, items_per_round=5, bootstrap=100)
    runtime = RuntimeSpec(calling_thread="worker")
    compare(scorer(calls), scorer([]), list(range(20)), runtime=runtime, settings=settings)
    assert all(thread is not threading.main_thread() for thread, _ in calls[8:])


def test_capture_records_the_thread_settings_in_force():
    context = execution.capture(mode="offline")
    assert context.calling_thread == "main" and context.threads_requested is None
    assert context.torch_intra_op == torch.get_num_threads()
    assert "main thread" in context.describe()
    again = ExecutionContext.from_dict(context.to_dict())
    assert again == context


def _pinned(count: int) -> ExecutionContext:
    return ExecutionContext(
        threads_requested=count,
        torch_intra_op=count,
        torch_inter_op=torch.get_num_interop_threads(),
    )


def test_a_pinned_recipe_context_is_applied_with_a_warning_naming_both_settings():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    try:
        with pytest.warns(execution.ExecutionContextWarning) as caught:
            said = execution.reconcile(_pinned(other), "apply", what="recipe r.json")
        assert torch.get_num_threads() == other
        message = str(caught[0].message)
        assert f"torch intra-op threads: {other} measured, {before} here" in message
        assert "applied to this process" in message and said == [message]
        # now the process matches: nothing to say
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert execution.reconcile(_pinned(other), "apply") == []
    finally:
        torch.set_num_threads(before)


def test_warn_only_and_ignore_leave_the_process_alone():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with pytest.warns(execution.ExecutionContextWarning, match="may not hold here"):
        execution.reconcile(_pinned(other), "warn")
    assert torch.get_num_threads() == before
    assert execution.reconcile(_pinned(other), "ignore") == []
    assert execution.reconcile(None, "apply") == []
    # measured under the measuring process's own defaults: compared, never pinned here
    unpinned = ExecutionContext(torch_intra_op=other)
    with pytest.warns(execution.ExecutionContextWarning, match="other thread settings"):
        execution.reconcile(unpinned, "apply")
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError, match="apply, warn or ignore"):
        execution.reconcile(unpinned, "sometimes")  # type: ignore[arg-type]


def test_the_plan_in_force_is_recorded_and_put_back_where_missing():
    calls: list = []
    planned = execution.apply_stages(
        ExecutionContext(stages={"score": {"threads": 1}}), scorer(calls)
    )
    assert execution.stage_plans(planned) == {"score": {"threads": 1}}
    planned.run(1.0)
    assert calls[-1][1] == 1
    recorded = ExecutionContext(stages={"score": {"threads": 2}})
    assert execution.plan_differences(recorded, planned) == [
        "stage 'score': 2 threads measured, 1 threads here"
    ]
    assert execution.plan_differences(recorded, scorer([])) == [
        "stage 'score': 2 threads measured, the process's settings here"
    ]
    assert execution.apply_stages(None, planned) is planned
    again = execution.apply_stages(ExecutionContext(stages={"score": {"threads": 1}}), planned)
    assert again is planned  # already in force: nothing to redo


def test_pools_are_recorded_and_an_older_faiss_field_still_compares():
    old = ExecutionContext(faiss_omp=2)
    new = ExecutionContext(pools={"faiss": 1})
    assert old.all_pools() == {"faiss": 2}
    assert execution.differences(old, new) == ["faiss threads: 2 measured, 1 here"]
    assert "faiss 1" in new.describe()
    planned = ExecutionContext(stages={"encode": {"threads": 1}, "rank": {"threads": 2}})
    assert planned.describe().endswith("thread plan: encode 1, rank 2")
    assert ExecutionContext.from_dict(new.to_dict()) == new
