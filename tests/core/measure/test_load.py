"""Host load: run-queue wait and other processes' CPU while measuring."""

from __future__ import annotations

import sys
import time

import pytest

from pipetune.core.measure import load


def test_the_meter_reads_the_run_queue_wait_and_other_processes_cpu():
    meter = load.HostLoadMeter().start()
    deadline = time.perf_counter() + 0.2
    while time.perf_counter() < deadline:
        sum(range(1000))
    measured = meter.stop()
    assert measured.seconds >= 0.2 and measured.cores >= 1
    if sys.platform.startswith("linux"):
        assert measured.run_queue_wait is not None and 0 <= measured.run_queue_wait <= 1
        assert measured.other_cpu is not None and measured.other_cpu >= 0
    data = measured.to_dict()
    assert set(data) >= {"run_queue_wait", "other_cpu", "other_cpu_share", "busy", "threshold"}
    assert data["busy"] == measured.busy


@pytest.mark.parametrize(
    ("wait", "share", "busy"),
    [(0.02, 0.9, False), (0.3, 0.0, True), (None, 0.8, True), (None, 0.2, False)],
)
def test_busy_is_the_run_queue_wait_else_other_processes_cpu(wait, share, busy):
    figures = load.HostLoad(
        seconds=1.0,
        run_queue_wait=wait,
        other_cpu=None if share is None else share * 2,
        other_cpu_share=share,
        load_average=None,
        cores=2,
    )
    assert figures.busy is busy
    warning = load.noisy_warning(figures.to_dict())
    assert bool(warning) is busy
    if busy:
        assert "noisy" in warning and "quiet machine" in warning


def test_a_recorded_load_is_judged_at_another_threshold():
    data = {"run_queue_wait": 0.2, "busy": True, "cores": 2, "other_cpu": 1.0}
    assert load.judged_busy(data) and not load.judged_busy(data, 0.5)
    assert load.describe(data) == "run-queue wait 20%, other processes 1.0 of 2 cores"
    assert load.noisy_warning(None) == "" and load.noisy_warning({"busy": False}) == ""


def _load(other: float | None, cores: int = 2) -> load.HostLoad:
    return load.HostLoad(
        seconds=1.0,
        run_queue_wait=None,
        other_cpu=other,
        other_cpu_share=None if other is None else other / cores,
        load_average=None,
        cores=cores,
    )


@pytest.mark.parametrize(
    ("other", "usable", "expected"),
    [(None, 2, 2), (0.0, 2, 2), (0.3, 2, 2), (0.9, 2, 1), (1.9, 2, 1), (3.0, 2, 1), (2.2, 8, 6)],
)
def test_the_suggested_count_leaves_other_processes_their_cores(other, usable, expected):
    assert load.suggested_threads(_load(other, max(usable, 2)), usable) == expected


def test_auto_threads_is_a_whole_count_within_the_usable_cores():
    from pipetune.core.runtime.machine import detect_machine

    count = load.auto_threads(seconds=0.05)
    assert isinstance(count, int) and 1 <= count <= max(1, detect_machine().cores)


def test_a_child_process_this_one_waited_for_is_its_own_cpu_not_another_process() -> None:
    # the loop's final re-measurement runs in a child process: its CPU is the loop's work
    import subprocess
    import sys

    from pipetune.core.measure import load

    before = load._own_cpu()
    busy = "import time\nwhile time.process_time() < 0.3:\n    pass\n"
    subprocess.run([sys.executable, "-c", busy], check=True)
    assert load._own_cpu() - before >= 0.25
