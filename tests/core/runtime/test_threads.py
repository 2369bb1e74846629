"""Thread pinning: set, recorded, restored; libraries touched only when loaded."""

from __future__ import annotations

import os
import sys

import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.registry import ThreadPool
from pipetune.core.runtime import threads


def test_env_is_set_inside_and_restored_after(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with threads.pin_threads(3) as settings:
        assert all(os.environ[name] == "3" for name in threads.THREAD_ENV_VARS)
        assert settings["pinned"] is True
        assert settings["requested"] == 3
        assert settings["env"]["OMP_NUM_THREADS"] == "3"
        assert threads.pinned_count() == 3
    assert os.environ["OMP_NUM_THREADS"] == "7"
    assert "MKL_NUM_THREADS" not in os.environ
    assert threads.pinned_count() is None
    assert threads.thread_settings()["pinned"] is False


def test_nested_pins_restore_the_outer_one() -> None:
    with threads.pin_threads(2):
        with threads.pin_threads(1):
            assert os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["OMP_NUM_THREADS"] == "2"
        assert threads.pinned_count() == 2


def test_restored_even_when_the_block_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    with pytest.raises(RuntimeError), threads.pin_threads(2):
        raise RuntimeError("boom")
    assert "OMP_NUM_THREADS" not in os.environ


def test_bad_count_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="thread count"), threads.pin_threads(0):
        pass


def test_settings_identical_for_two_runs_in_one_pin() -> None:
    """What the validator relies on: baseline and candidate see the same settings."""
    with threads.pin_threads(1):
        first = threads.reapply()
        second = threads.reapply()
    assert first == second


def test_child_environment_carries_the_pin() -> None:
    assert threads.child_environment() == {}
    with threads.pin_threads(2):
        env = threads.child_environment()
    assert env["OMP_NUM_THREADS"] == "2" and env["MKL_NUM_THREADS"] == "2"


def test_torch_is_pinned_and_restored() -> None:
    torch = pytest.importorskip("torch", reason="torch extra not installed")
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    with threads.pin_threads(target) as settings:
        assert torch.get_num_threads() == target
        assert settings["torch_intra_op"] == target
    assert torch.get_num_threads() == before


class FakeLibrary:
    """A library with an OpenMP-like pool, as a plugin would declare it."""

    def __init__(self) -> None:
        self.count = 8

    def omp_get_max_threads(self) -> int:
        return self.count

    def omp_set_num_threads(self, n: int) -> None:
        self.count = n


def fake_pool(module: str = "fakelib", per_call: bool = True) -> ThreadPool:
    return ThreadPool(
        module,
        module=module,
        get=lambda: sys.modules[module].omp_get_max_threads(),
        set=lambda n: sys.modules[module].omp_set_num_threads(n),
        per_call=per_call,
    )


@pytest.fixture
def plugin_pools():
    """Registered plugin pools, restored after the test."""
    before = threads.set_plugin_pools(())
    yield threads.set_plugin_pools
    threads.set_plugin_pools(before)


def test_library_loaded_inside_the_pin_is_pinned_by_reapply(
    monkeypatch: pytest.MonkeyPatch, plugin_pools
) -> None:
    """A library imported after the pin started gets the count at the next run."""
    fake = FakeLibrary()
    plugin_pools([fake_pool()])
    monkeypatch.delitem(sys.modules, "fakelib", raising=False)
    with threads.pin_threads(2):
        monkeypatch.setitem(sys.modules, "fakelib", fake)  # "imported" inside the block
        assert fake.count == 8
        settings = threads.reapply()
        assert fake.count == 2
        assert settings["pools"] == {"fakelib": 2}
    assert fake.count == 8  # restored to its value before the pin touched it


def test_a_pool_is_never_touched_before_its_library_loads(plugin_pools) -> None:
    calls = []
    plugin_pools(
        [ThreadPool("absent", "never_imported_lib", get=lambda: calls.append(1) or 1, set=print)]
    )
    with threads.pin_threads(1) as settings:
        assert settings["pools"] == {}
    assert calls == [] and "never_imported_lib" not in sys.modules


def test_real_faiss_is_pinned_through_the_recsys_plugin_pool(plugin_pools) -> None:
    faiss = pytest.importorskip("faiss", reason="recsys extra (faiss) not installed")
    from pipetune.core.kernel.manager import get_plugin_manager

    pools = threads.use_plugin_pools(get_plugin_manager(entry_points=False))
    assert [(p.name, p.owner) for p in pools] == [("faiss", "recsys")]
    before = faiss.omp_get_max_threads()
    with threads.pin_threads(1) as settings:
        assert faiss.omp_get_max_threads() == 1
        assert settings["pools"]["faiss"] == 1
    assert faiss.omp_get_max_threads() == before


def test_a_plugin_may_not_register_the_built_in_torch_pool(plugin_pools) -> None:
    from pipetune import hookimpl
    from pipetune.core.kernel.errors import DuplicateError
    from pipetune.core.kernel.manager import get_plugin_manager

    class Greedy:
        @hookimpl
        def register_thread_pools(self):
            return [fake_pool("torch")]

    pm = get_plugin_manager(builtins=False, entry_points=False, plugins=[("greedy", Greedy())])
    with pytest.raises(DuplicateError, match="built into pipetune"):
        threads.use_plugin_pools(pm)


def test_unsettable_interop_is_noted_not_claimed(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeTorch:
        def __init__(self) -> None:
            self.intra, self.inter = 4, 4

        def get_num_threads(self) -> int:
            return self.intra

        def set_num_threads(self, n: int) -> None:
            self.intra = n

        def get_num_interop_threads(self) -> int:
            return self.inter

        def set_num_interop_threads(self, n: int) -> None:
            raise RuntimeError("cannot set number of interop threads after parallel work")

    fake = FakeTorch()
    monkeypatch.setitem(sys.modules, "torch", fake)
    with threads.pin_threads(2, interop=1) as settings:
        assert settings["torch_intra_op"] == 2
        assert settings["torch_inter_op"] == 4
        assert any("inter-op" in note for note in settings["notes"])
    assert fake.intra == 4


def test_default_count_freezes_what_is_in_force(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert threads.default_thread_count() == 5
    with threads.pin_threads() as settings:
        assert settings["requested"] == 5


# -- per-stage settings --------------------------------------------------------------------


def _count_stage(seen: list, pool: str = "fakelib"):
    from pipetune.core.kernel.model import Stage

    def count(item, *, factor):
        seen.append(sys.modules[pool].count)
        return item * factor

    return Stage("count", count, slots={"factor": 2, "unused": object()})


def test_a_planned_stage_sets_per_call_pools_around_each_call_and_restores_them(
    monkeypatch: pytest.MonkeyPatch, plugin_pools
) -> None:
    fake = FakeLibrary()
    monkeypatch.setitem(sys.modules, "fakelib", fake)
    plugin_pools([fake_pool()])
    seen: list = []
    stage = _count_stage(seen)
    planned = threads.with_stage_threads(stage, {"threads": 3, "spinning": False})
    assert planned(5) == 10 and seen == [3] and fake.count == 8
    assert planned.call_batch([1, 2]) == [2, 4] and seen == [3, 3, 3]
    # the user's function, its slots and its stage are as they were
    assert planned.injects("factor") and not planned.injects("unused")
    assert stage.fn.__name__ == planned.fn.__name__ == "count"
    assert "threads" not in stage.meta and stage(5) == 10 and seen[-1] == 8
    assert threads.stage_plan(planned) == {"threads": 3, "spinning": False}
    assert threads.stage_plan(stage) is None
    # a new plan replaces the old one instead of nesting in it
    again = threads.with_stage_threads(planned, {"threads": 1})
    assert again.fn.__wrapped__ is stage.fn and threads.stage_plan(again) == {"threads": 1}


def test_a_pool_that_allows_no_per_call_setting_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, plugin_pools
) -> None:
    fake = FakeLibrary()
    monkeypatch.setitem(sys.modules, "fakelib", fake)
    plugin_pools([fake_pool(per_call=False)])
    seen: list = []
    threads.with_stage_threads(_count_stage(seen), {"threads": 1})(1)
    assert seen == [8]


def test_torch_runs_a_planned_stage_at_its_count() -> None:
    torch = pytest.importorskip("torch", reason="torch extra not installed")
    from pipetune.core.kernel.model import Stage

    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    stage = Stage("t", lambda item: torch.get_num_threads())
    assert threads.with_stage_threads(stage, {"threads": target})(0) == target
    assert torch.get_num_threads() == before


def test_a_bad_plan_entry_is_a_config_error_naming_the_stage() -> None:
    from pipetune.core.kernel.model import Stage

    with pytest.raises(ConfigError, match=r"stage 'x'.*'threads' >= 1"):
        threads.with_stage_threads(Stage("x", lambda item: item), {"threads": 0})


def test_a_planned_stateful_callable_is_still_found_and_reset() -> None:
    import pickle

    from pipetune.core.kernel.model import Pipeline, Stage
    from pipetune.core.kernel.state import reset_state

    class Cached:
        def __init__(self) -> None:
            self.seen: set = set()

        def __call__(self, item):
            self.seen.add(item)
            return item

        def pipetune_reset(self) -> None:
            self.seen.clear()

    cached = Cached()
    stage = threads.with_stage_threads(Stage("c", cached), {"threads": 1})
    pipeline = Pipeline("p", (stage,))
    pipeline.run(1)
    assert reset_state(pipeline) and cached.seen == set()
    planned = threads.with_stage_threads(Stage("name", os.path.basename), {"threads": 2})
    copy = pickle.loads(pickle.dumps(planned.fn))  # a worker process receives it so
    assert copy("/a/b") == "b" and copy.count == 2 and copy.__wrapped__ is os.path.basename


def test_a_process_pin_outlives_its_context_manager() -> None:
    """A worker pins once for its whole life: the pin must hold after garbage collection
    (a pin_threads(...).__enter__() whose manager is dropped was undone at once)."""
    import gc

    outside = threads.pinned_count()
    try:
        threads.pin_for_process(1)
        gc.collect()
        assert threads.pinned_count() == 1
        assert os.environ["OMP_NUM_THREADS"] == "1"
    finally:
        while threads.pinned_count() != outside:
            threads._exit_pin(threads._STACK[-1])
    assert threads.pinned_count() == outside
