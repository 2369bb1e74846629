"""GPU measurements: skip cleanly without CUDA/NVML; logic checked with fakes; the real
paths run only where a CUDA device exists."""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pipetune.core.kernel.model import Pipeline, Stage, Workload
from pipetune.core.measure import gpu
from pipetune.core.runtime.offline import run_offline


def cuda_available() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        try:
            import torch
        except ImportError:
            return False
    return bool(torch.cuda.is_available())


def test_cuda_status_without_torch_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    usable, reason = gpu.cuda_status()
    assert usable is False and "torch is not loaded" in reason
    assert gpu.cuda_peak_memory() is None
    assert gpu.transfer_times(Pipeline("p", (Stage("s", str),)), [1])["available"] is False


def test_cuda_status_with_a_cpu_only_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = SimpleNamespace(cuda=SimpleNamespace(is_available=lambda: False))
    monkeypatch.setitem(sys.modules, "torch", fake)
    usable, reason = gpu.cuda_status()
    assert usable is False and "no CUDA device" in reason


def test_cuda_status_survives_a_broken_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise RuntimeError("driver too old")

    monkeypatch.setitem(
        sys.modules, "torch", SimpleNamespace(cuda=SimpleNamespace(is_available=broken))
    )
    usable, reason = gpu.cuda_status()
    assert usable is False and "driver too old" in reason


class FakeNvml:
    """Just enough of pynvml for the sampler."""

    def __init__(self, fail_init: bool = False):
        self.fail_init = fail_init
        self.shut = False
        self.calls = 0

    def nvmlInit(self) -> None:
        if self.fail_init:
            raise RuntimeError("NVML Shared Library Not Found")

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:
        return f"gpu{index}"

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> Any:
        self.calls += 1
        return SimpleNamespace(gpu=40 + 20 * (self.calls % 2), memory=10)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> Any:
        return SimpleNamespace(used=512 * 2**20)

    def nvmlShutdown(self) -> None:
        self.shut = True


def test_nvml_sampler_summarizes_samples() -> None:
    nvml = FakeNvml()
    with gpu.NvmlSampler(interval_s=0.005, nvml=nvml) as sampler:
        time.sleep(0.08)
    summary = sampler.summary()
    assert summary["available"] is True and summary["samples"] >= 3
    assert 40 <= summary["util_mean_pct"] <= 60 and summary["util_max_pct"] == 60
    assert summary["memory_used_max_mb"] == 512
    assert nvml.shut is True


def test_nvml_sampler_without_a_driver_says_why() -> None:
    with gpu.NvmlSampler(nvml=FakeNvml(fail_init=True)) as sampler:
        pass
    summary = sampler.summary()
    assert summary == {
        "available": False,
        "reason": "NVML unavailable: RuntimeError: NVML Shared Library Not Found",
    }


def test_real_nvml_skips_cleanly_here() -> None:
    """nvidia-ml-py may be installed on a machine without a driver: no crash, a reason."""
    with gpu.NvmlSampler(interval_s=0.01) as sampler:
        time.sleep(0.03)
    summary = sampler.summary()
    assert summary["available"] in (True, False)
    if not summary["available"]:
        assert summary["reason"]


class FakeEvent:
    clock = 0.0

    def __init__(self, enable_timing: bool = False):
        self.t = 0.0

    def record(self) -> None:
        FakeEvent.clock += 0.004  # each record: 4 ms later on the "device"
        self.t = FakeEvent.clock

    def elapsed_time(self, other: FakeEvent) -> float:
        return (other.t - self.t) * 1000.0  # milliseconds, like torch


def test_cuda_stage_timer_records_event_times_per_stage() -> None:
    synced: list[int] = []
    fake_torch = SimpleNamespace(
        cuda=SimpleNamespace(Event=FakeEvent, synchronize=lambda: synced.append(1))
    )
    timer = gpu.CudaStageTimer(n=3, stages=2, torch=fake_torch)
    p = Pipeline("p", (Stage("a", lambda x: x + 1), Stage("b", lambda x: x * 2)))
    result = run_offline(p, [1, 2, 3], instrument=timer)
    assert result.outputs == [4, 6, 8]
    assert result.gpu_stage_s is not None and result.gpu_stage_s.shape == (3, 2)
    assert np.allclose(result.gpu_stage_s, 0.004)
    assert len(synced) == 6  # one synchronize after every stage call


def test_instrument_needs_one_worker() -> None:
    from pipetune.core.kernel.errors import ConfigError

    timer = gpu.CudaStageTimer(n=2, stages=1, torch=SimpleNamespace(cuda=None))
    with pytest.raises(ConfigError, match="workers=1"):
        run_offline(Pipeline("p", (Stage("a", str),)), [1, 2], workers=2, instrument=timer)


def test_pipeline_on_cuda_is_false_for_cpu_modules() -> None:
    torch = pytest.importorskip("torch", reason="torch extra not installed")
    model = torch.nn.Linear(2, 2)
    p = Pipeline("p", (Stage("m", lambda x, model: model(x), slots={"model": model}),))
    assert gpu.pipeline_on_cuda(p) is False


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_profile_on_cuda_records_gpu_figures() -> None:
    import torch

    from pipetune.core.measure.profiler import profile

    model = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.ReLU()).cuda().eval()

    def upload(x: Any) -> Any:
        return x.cuda()

    def infer(x: Any, *, model: Any) -> Any:
        with torch.inference_mode():
            return model(x)

    def download(x: Any) -> Any:
        return x.cpu()

    p = Pipeline(
        "cuda",
        (
            Stage("upload", upload),
            Stage("infer", infer, kind="inference", slots={"model": model}),
            Stage("download", download),
        ),
    )
    items = tuple(torch.randn(64, 256) for _ in range(32))
    prof = profile(p, Workload(items=items, repeats=1), sweep=False, gil_check=False)
    assert prof.gpu["available"] is True
    assert prof.stage("infer").gpu_ms is not None and prof.stage("infer").gpu_ms > 0
    transfers = prof.gpu["transfers"]
    assert transfers["available"] is True and transfers["htod_ms_per_input"] > 0
    assert prof.memory["cuda_peak_mb"] > 0
    assert "infer" in prof.layers
