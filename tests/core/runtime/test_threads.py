"""Thread pinning: set, recorded, restored; libraries touched only when loaded."""

from __future__ import annotations

import os
import sys

import pytest

from pipetune.core.kernel.errors import ConfigError
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


def test_library_loaded_inside_the_pin_is_pinned_by_reapply(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library imported after the pin started gets the count at the next run."""

    class FakeFaiss:
        def __init__(self) -> None:
            self.count = 8

        def omp_get_max_threads(self) -> int:
            return self.count

        def omp_set_num_threads(self, n: int) -> None:
            self.count = n

    fake = FakeFaiss()
    real = sys.modules.get("faiss")
    monkeypatch.delitem(sys.modules, "faiss", raising=False)
    with threads.pin_threads(2):
        monkeypatch.setitem(sys.modules, "faiss", fake)  # "imported" inside the block
        assert fake.count == 8
        settings = threads.reapply()
        assert fake.count == 2
        assert settings["faiss_omp"] == 2
    assert fake.count == 8  # restored to its value before the pin touched it
    if real is not None:
        monkeypatch.setitem(sys.modules, "faiss", real)


def test_real_faiss_is_pinned_and_restored() -> None:
    faiss = pytest.importorskip("faiss", reason="recsys extra (faiss) not installed")
    before = faiss.omp_get_max_threads()
    with threads.pin_threads(1) as settings:
        assert faiss.omp_get_max_threads() == 1
        assert settings["faiss_omp"] == 1
    assert faiss.omp_get_max_threads() == before


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
