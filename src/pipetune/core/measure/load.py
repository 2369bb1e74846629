"""How loaded the host was while pipetune measured: run-queue wait and other processes' CPU.

A speedup measured while other processes compete for the CPUs is a measurement of that
contention as much as of the change: the same demo gave 11.3x on a quiet machine and 6.3x
under load. Every comparison, optimize run and check therefore records

* ``run_queue_wait``: the share of the time this process's threads were ready to run but
  waited for a CPU (Linux schedstat, the profiler's own probe summed over threads);
* ``other_cpu``: CPU cores used by every other process on average (``/proc/stat`` busy
  time less this process's own CPU time, which includes the children it started and
  waited for: the loop's fresh-process re-measurement is its own work, not another
  process's), and its share of the host's cores;

and calls the figures noisy above :data:`BUSY_RUN_QUEUE_WAIT` (or, where the wait cannot
be read, when other processes used more than :data:`BUSY_OTHER_CPU_SHARE` of the cores).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: Above this run-queue wait share the host was busy: figures are noisy.
BUSY_RUN_QUEUE_WAIT = 0.10
#: Where the wait is unknown: other processes above this share of the cores is busy.
BUSY_OTHER_CPU_SHARE = 0.5


@dataclass(frozen=True)
class HostLoad:
    """The host's load over one measurement window (``None``: not measurable here)."""

    seconds: float
    run_queue_wait: float | None
    other_cpu: float | None  # cores, on average
    other_cpu_share: float | None  # of the host's cores
    load_average: float | None  # 1-minute load average at the end of the window
    cores: int
    threshold: float = BUSY_RUN_QUEUE_WAIT

    @property
    def busy(self) -> bool:
        if self.run_queue_wait is not None:
            return self.run_queue_wait > self.threshold
        return self.other_cpu_share is not None and self.other_cpu_share > BUSY_OTHER_CPU_SHARE

    def describe(self) -> str:
        """``run-queue wait 23 %, other processes 1.4 of 2 cores``."""
        return describe(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["busy"] = self.busy
        return data


def judged_busy(data: Mapping[str, Any], threshold: float | None = None) -> bool:
    """Whether a recorded ``host_load`` counts as busy, at ``threshold`` (default: the
    one it was recorded with)."""
    if threshold is None:
        return bool(data.get("busy"))
    wait = data.get("run_queue_wait")
    if wait is not None:
        return float(wait) > threshold
    share = data.get("other_cpu_share")
    return share is not None and float(share) > BUSY_OTHER_CPU_SHARE


def describe(data: Mapping[str, Any]) -> str:
    """The sentence for a ``host_load`` object (a dict from :meth:`HostLoad.to_dict`)."""
    parts = []
    wait = data.get("run_queue_wait")
    parts.append("run-queue wait " + ("unknown" if wait is None else f"{wait:.0%}"))
    other = data.get("other_cpu")
    if other is not None:
        parts.append(f"other processes {other:.1f} of {data.get('cores')} cores")
    return ", ".join(parts)


def noisy_warning(data: Mapping[str, Any] | None, what: str = "figures") -> str:
    """The warning a busy window earns ('' when the host was quiet or unmeasured)."""
    if not data or not data.get("busy"):
        return ""
    return (
        f"the host was busy while measuring ({describe(data)}): the {what} are noisy; "
        "re-measure on a quiet machine before trusting them"
    )


def suggested_threads(load: HostLoad | None, usable: float | None = None) -> int:
    """A thread count that does not oversubscribe the host: the CPUs this process may use
    (``usable``, default: the host's) less what other processes used while ``load`` was
    measured, rounded to the nearest whole core, at least 1. Without a load figure, every
    usable CPU."""
    cores = float(usable or (load.cores if load is not None else os.cpu_count() or 1))
    other = load.other_cpu if load is not None else None
    if other is None:
        return max(1, int(cores))
    return max(1, min(int(cores), int(cores - other + 0.5)))


def sample_host_load(seconds: float = 0.3) -> HostLoad:
    """The host's load over a short idle window of this process (``seconds``): what other
    processes use when this one waits. For choosing a default thread count."""
    meter = HostLoadMeter().start()
    time.sleep(max(0.0, seconds))
    return meter.stop()


def auto_threads(seconds: float = 0.3) -> int:
    """``--threads auto``: the physical cores this process may use, less what other
    processes use now (measured over ``seconds``), at least 1."""
    from pipetune.core.runtime.machine import detect_machine

    machine = detect_machine()
    usable = machine.cores or machine.logical_cores or 1
    if machine.usable_cores:
        usable = min(usable, int(machine.usable_cores))
    return suggested_threads(sample_host_load(seconds), usable)


class HostLoadMeter:
    """Measures :class:`HostLoad` between :meth:`start` (or ``with``) and :meth:`stop`."""

    def __init__(self) -> None:
        self._started = 0.0
        self._queue: dict[int, tuple[float, float]] | None = None
        self._host: tuple[float, float] | None = None
        self._own = 0.0
        self.result: HostLoad | None = None

    def start(self) -> HostLoadMeter:
        from pipetune.core.runtime.observe import process_runqueue

        self._started = time.perf_counter()
        self._queue = process_runqueue()
        self._host = _host_cpu()
        self._own = _own_cpu()
        return self

    def stop(self) -> HostLoad:
        from pipetune.core.runtime.observe import process_runqueue

        seconds = time.perf_counter() - self._started
        cores = os.cpu_count() or 1
        wait = _wait_share(self._queue, process_runqueue())
        other = share = None
        host = _host_cpu()
        if self._host is not None and host is not None and seconds > 0:
            busy = host[0] - self._host[0]
            own = _own_cpu() - self._own
            other = max(0.0, (busy - own) / seconds)
            share = min(1.0, other / cores)
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):
            load = None
        return HostLoad(
            seconds=seconds,
            run_queue_wait=wait,
            other_cpu=other,
            other_cpu_share=share,
            load_average=load,
            cores=cores,
            threshold=BUSY_RUN_QUEUE_WAIT,  # read now: a caller may have set another
        )

    def __enter__(self) -> HostLoadMeter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.result = self.stop()


def _wait_share(
    before: dict[int, tuple[float, float]] | None, after: dict[int, tuple[float, float]] | None
) -> float | None:
    """Waiting / (waiting + on a CPU) over the threads seen at the end (a thread that ended
    in between is lost; one that started counts from zero)."""
    if before is None or after is None:
        return None
    on_cpu = waiting = 0.0
    for task, (cpu, wait) in after.items():
        cpu0, wait0 = before.get(task, (0.0, 0.0))
        on_cpu += max(0.0, cpu - cpu0)
        waiting += max(0.0, wait - wait0)
    total = on_cpu + waiting
    return waiting / total if total > 0 else None


def _host_cpu() -> tuple[float, float] | None:
    """(busy seconds, total seconds) of every CPU since boot (Linux ``/proc/stat``)."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    idle = ticks[3] + ticks[4]  # idle + iowait
    total = sum(ticks)
    return (total - idle) / hz, total / hz


def _own_cpu() -> float:
    """This process's CPU seconds, with those of its finished (waited-for) children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system
