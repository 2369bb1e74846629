"""Thread counts: what this machine allows, advice for serving, and a module pinned per call.

Hyper-threads share a core's vector units, so a matrix-heavy model gains nothing from a
second thread per core and loses to the contention; a container whose CPU quota is below
the host's CPU count must size its pools to the quota, not to what ``os.cpu_count()``
reports, or its threads time-slice against each other; and on a host other processes are
using, a pool sized to every core waits for the cores they hold. With concurrent requests,
the cores are split between streams instead of every request fighting for all of them.

The counts a pipeline actually runs with are chosen by measurement: ``hardware.threads``
tries every count per stage (:mod:`.thread_tune`). :func:`advise_threads` is the
unmeasured default, and takes the host's load into account when given it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pipetune.core.kernel.results import Machine
from pipetune.core.measure.load import HostLoad, suggested_threads
from pipetune.core.runtime.machine import detect_machine


def default_intra_op_threads(machine: Machine | None = None) -> int:
    """Physical cores, capped by what this process may use (affinity, cgroup quota)."""
    machine = machine or detect_machine()
    cores = machine.cores or machine.logical_cores or 1
    if machine.usable_cores:
        cores = min(cores, int(machine.usable_cores))
    return max(1, int(cores))


def current_intra_op_threads() -> int:
    """The intra-op thread count this process runs torch with (the runtime pins it, the
    same for baseline and candidate), else the physical cores. Compiled backends get the
    same count, so a compile trial measures the backend, not a thread change
    (``hardware.threads`` is its own change, measured)."""
    threads = torch_threads()
    return threads["intra_op"] if threads else default_intra_op_threads()


@dataclass(frozen=True)
class ThreadAdvice:
    """Thread settings for a stage, with the reason and how to set them by hand."""

    intra_op: int
    inter_op: int
    streams: int
    reason: str
    env: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "intra_op": self.intra_op,
            "inter_op": self.inter_op,
            "streams": self.streams,
            "reason": self.reason,
            "env": dict(self.env),
        }


def advise_threads(
    machine: Machine, concurrency: int = 1, load: HostLoad | None = None
) -> ThreadAdvice:
    """Intra-op threads per stream and the number of streams for ``concurrency``
    concurrent requests on ``machine``; with ``load`` (the host's load, measured), the
    cores other processes were using are left to them."""
    cores = default_intra_op_threads(machine)
    parts = [f"{machine.cores} physical cores"]
    if machine.logical_cores > machine.cores:
        parts.append(f"{machine.logical_cores} logical CPUs (hyper-threads not used)")
    if machine.usable_cores and machine.usable_cores < machine.logical_cores:
        parts.append(f"{machine.usable_cores:g} CPUs usable by this process")
    if load is not None and load.other_cpu is not None:
        free = suggested_threads(load, cores)
        if free < cores:
            parts.append(f"other processes use {load.other_cpu:.1f} of them")
        cores = free
    streams = max(1, min(int(concurrency), cores))
    intra = max(1, cores // streams)
    reason = ", ".join(parts)
    if streams > 1:
        reason += f"; {streams} concurrent requests share them: {intra} threads each"
    return ThreadAdvice(
        intra_op=intra,
        inter_op=1,
        streams=streams,
        reason=reason,
        env={"OMP_NUM_THREADS": str(intra), "MKL_NUM_THREADS": str(intra)},
    )


def torch_threads() -> dict[str, int] | None:
    """torch's current pools, when torch is already imported (never imported here)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return None
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}


class ThreadPinned:
    """An eager torch module called with torch's intra-op pool set to ``threads``.

    torch's pool is process-wide, so the setting is applied for the duration of each
    call (under a lock: two calls must not change it under each other) and restored
    after. The module itself is not copied or changed.
    """

    pipetune_stand_in = True
    _lock = threading.RLock()

    def __init__(self, source: Any, threads: int):
        self.source = source
        self.threads = int(threads)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        import torch

        with self._lock:
            previous = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                return self.source(*args, **kwargs)
            finally:
                torch.set_num_threads(previous)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "source":
            raise AttributeError(name)
        return getattr(self.__dict__["source"], name)

    def __repr__(self) -> str:
        return f"ThreadPinned({type(self.source).__name__}, threads={self.threads})"
