"""GPU measurements for the profiler: CUDA-event stage timing, NVML utilization sampling
and CPU<->GPU transfer time.

Everything here is optional and skips cleanly: without torch loaded, without a CUDA device,
without NVML (``nvidia-ml-py``) or without a driver, each function says why in a ``reason``
instead of raising. torch is never imported here: a pipeline that runs on CUDA has already
imported it, and one that has not does not use CUDA.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Pipeline


def cuda_status() -> tuple[bool, str]:
    """(usable, reason or device name). Never imports torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False, "torch is not loaded by this pipeline, so nothing runs on CUDA"
    try:
        if not torch.cuda.is_available():
            return False, "torch sees no CUDA device (CPU build, no GPU, or no driver)"
        return True, str(torch.cuda.get_device_name(0))
    except Exception as exc:  # a broken driver must not stop the profile
        return False, f"torch.cuda failed: {type(exc).__name__}: {exc}"


def pipeline_on_cuda(pipeline: Pipeline) -> bool:
    """True when a slot holds a torch module or tensor that lives on a CUDA device."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    for stage in pipeline.stages:
        for value in stage.slots.values():
            for candidate in (value, getattr(value, "model", None)):
                if _on_cuda(torch, candidate):
                    return True
    return False


def _on_cuda(torch: Any, value: Any) -> bool:
    try:
        if isinstance(value, torch.Tensor):
            return bool(value.is_cuda)
        if isinstance(value, torch.nn.Module):
            for tensor in (*value.parameters(), *value.buffers()):
                return bool(tensor.is_cuda)
    except Exception:
        return False
    return False


class CudaStageTimer:
    """A :class:`~pipetune.core.runtime.offline.StageInstrument` timing each stage with CUDA events.

    Each stage is bracketed by two events on the current stream, then the device is
    synchronized so the stage's wall time covers the GPU work it launched (without this,
    an asynchronous launch is charged to whichever later stage first waits for the
    result). ``result()`` gives per-input, per-stage GPU seconds (NaN where not measured).
    """

    def __init__(self, n: int, stages: int, torch: Any = None):
        self.torch = torch if torch is not None else sys.modules["torch"]
        self.gpu_s = np.full((n, stages), np.nan)
        self._start: Any = None
        self._pending: list[tuple[int, Any, Any]] = []

    def before(self, column: int) -> None:
        if column == 0:
            self._pending.clear()
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        self._start = event

    def after(self, column: int) -> None:
        event = self.torch.cuda.Event(enable_timing=True)
        event.record()
        self.torch.cuda.synchronize()
        self._pending.append((column, self._start, event))

    def finish(self, rows: Any) -> None:
        for column, start, end in self._pending:
            self.gpu_s[rows, column] = start.elapsed_time(end) / 1000.0
        self._pending.clear()

    def result(self) -> np.ndarray:
        return self.gpu_s.copy()


class NvmlSampler:
    """Samples GPU utilization and memory through NVML in a background thread.

    ``with NvmlSampler() as sampler: ...`` then ``sampler.summary()``. Without
    ``nvidia-ml-py`` or a driver, ``summary()`` says why and has no samples. ``nvml`` may be
    given (a module-like object) for tests.
    """

    def __init__(self, interval_s: float = 0.1, device: int = 0, nvml: Any = None):
        self.interval_s = interval_s
        self.device = device
        self._nvml = nvml
        self.reason = ""
        self.samples: list[tuple[float, float, float]] = []  # (gpu %, memory %, used MB)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None

    def __enter__(self) -> NvmlSampler:
        nvml = self._nvml
        if nvml is None:
            try:
                import pynvml as nvml  # type: ignore[no-redef]  # from nvidia-ml-py
            except ImportError:
                self.reason = 'NVML not installed (pip install "pipetune[nvidia]")'
                return self
        try:
            nvml.nvmlInit()
            self._handle = nvml.nvmlDeviceGetHandleByIndex(self.device)
        except Exception as exc:
            self.reason = f"NVML unavailable: {type(exc).__name__}: {exc}"
            return self
        self._nvml = nvml
        self._thread = threading.Thread(target=self._loop, name="pipetune-nvml", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        nvml = self._nvml
        while not self._stop.wait(self.interval_s):
            try:
                rates = nvml.nvmlDeviceGetUtilizationRates(self._handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(self._handle)
                self.samples.append((float(rates.gpu), float(rates.memory), memory.used / 2**20))
            except Exception as exc:
                self.reason = f"NVML sampling stopped: {type(exc).__name__}: {exc}"
                return

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2 * self.interval_s + 1)
            with contextlib.suppress(Exception):
                self._nvml.nvmlShutdown()

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {"available": False, "reason": self.reason or "no samples (run too short)"}
        util = np.array([s[0] for s in self.samples])
        mem_util = np.array([s[1] for s in self.samples])
        used = np.array([s[2] for s in self.samples])
        return {
            "available": True,
            "samples": len(self.samples),
            "interval_ms": self.interval_s * 1000,
            "util_mean_pct": float(util.mean()),
            "util_max_pct": float(util.max()),
            "memory_util_mean_pct": float(mem_util.mean()),
            "memory_used_max_mb": float(used.max()),
        }


def transfer_times(pipeline: Pipeline, items: Sequence[Any]) -> dict[str, Any]:
    """CPU<->GPU copy time per input, from a torch profiler pass over ``items`` (its own
    pass: the profiler's tracing would distort the timing pass)."""
    usable, reason = cuda_status()
    if not usable:
        return {"available": False, "reason": reason}
    torch = sys.modules["torch"]
    from torch.profiler import ProfilerActivity, profile  # torch is already loaded

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for item in items:
            pipeline.run(item)
        torch.cuda.synchronize()
    htod = dtoh = dtod = total = 0.0
    copies = 0
    for event in prof.key_averages():
        device_us = _device_time(event, self_time=True)
        total += device_us
        name = str(event.key)
        if "Memcpy HtoD" in name:
            htod += _device_time(event)
            copies += int(event.count)
        elif "Memcpy DtoH" in name:
            dtoh += _device_time(event)
            copies += int(event.count)
        elif "Memcpy DtoD" in name:
            dtod += _device_time(event)
    n = max(1, len(items))
    return {
        "available": True,
        "inputs": len(items),
        "htod_ms_per_input": htod / 1000 / n,
        "dtoh_ms_per_input": dtoh / 1000 / n,
        "dtod_ms_per_input": dtod / 1000 / n,
        "copies_per_input": copies / n,
        "share_of_gpu_time": (htod + dtoh) / total if total > 0 else 0.0,
    }


def _device_time(event: Any, self_time: bool = False) -> float:
    """Device microseconds of a profiler event (torch renamed cuda_* to device_*)."""
    names = (
        ("self_device_time_total", "self_cuda_time_total")
        if self_time
        else ("device_time_total", "cuda_time_total")
    )
    for name in names:
        value = getattr(event, name, None)
        if value is not None:
            return float(value)
    return 0.0


def cuda_peak_memory() -> tuple[Any, Any] | None:
    """(reset, read) callables for torch's CUDA peak-memory counter, or None."""
    usable, _ = cuda_status()
    if not usable:
        return None
    torch = sys.modules["torch"]

    def reset() -> None:
        torch.cuda.reset_peak_memory_stats()

    def read() -> float:
        return float(torch.cuda.max_memory_allocated()) / 2**20

    return reset, read
