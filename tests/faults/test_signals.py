"""Ctrl-C and SIGTERM: exit 130 within 2 s at any phase, the run recorded as interrupted
with what finished kept; a second signal exits at once."""

from __future__ import annotations

import json
import signal
import sys

import pytest

from tests.faults.conftest import Project, marked_target

pytestmark = [
    pytest.mark.slow,  # subprocess fault tests
    pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals"),
]

#: Exit within this long of the signal (the target), with slack for a loaded CI machine.
WITHIN_S = 2.0 + 1.0


@pytest.mark.parametrize(
    ("after", "phase"),
    [(20, "baseline profile"), (140, "a trial's validation or later")],
)
def test_sigint_during_optimize_exits_130_and_records_the_run(project: Project, after, phase):
    target, marker = marked_target(project, after=after)
    proc = project.start("optimize", str(target), "--quick", "--json", "report.json")
    result, seconds = project.signal_when(proc, marker)
    result.assert_clean(130, "Interrupted")
    assert seconds < WITHIN_S, f"{phase}: exited {seconds:.2f} s after the signal"
    assert [status for _, status in project.runs()] == ["interrupted"], phase
    if (project.root / "report.json").exists():  # a report whenever a baseline finished
        report = json.loads((project.root / "report.json").read_text())
        assert report["interrupted"] is True and report["stopped"] == "interrupted"


def test_sigterm_is_handled_like_ctrl_c(project: Project):
    target, marker = marked_target(project, after=20)
    proc = project.start("optimize", str(target), "--quick")
    result, seconds = project.signal_when(proc, marker, signals=(signal.SIGTERM,))
    result.assert_clean(130, "SIGTERM")
    assert seconds < WITHIN_S
    assert [status for _, status in project.runs()] == ["interrupted"]


def test_a_second_ctrl_c_exits_at_once(project: Project):
    # a stage that ignores the first interrupt for a long time (a C call would too)
    marker = project.root / "marker"
    target = project.write(
        "stubborn.py",
        f"""
        import pathlib, time
        from pipetune import Pipeline, Stage, Workload

        def work(x):
            pathlib.Path({str(marker)!r}).touch()
            end = time.monotonic() + 30
            while time.monotonic() < end:
                try:
                    time.sleep(0.05)
                except KeyboardInterrupt:
                    pass  # swallowed: only the second signal can end this
            return x

        pipeline = Pipeline("stubborn", (Stage("work", work),))
        workload = Workload(items=(1, 2, 3), warmup=0, repeats=1)
        """,
    )
    proc = project.start("profile", str(target), "--timeout", "100")
    result, seconds = project.signal_when(proc, marker, signals=(signal.SIGINT,) * 2, gap_s=0.3)
    assert result.code == 130, result.text
    assert "again: exiting now" in result.err
    assert seconds < WITHIN_S


def test_ctrl_c_during_profile_keeps_the_json(project: Project):
    target, marker = marked_target(project, after=15, delay=0.02)
    proc = project.start("profile", str(target), "--json", "profile.json")
    result, seconds = project.signal_when(proc, marker)
    result.assert_clean(130, "Interrupted", "Kept: profile.json")
    assert seconds < WITHIN_S
    data = json.loads((project.root / "profile.json").read_text())
    assert data["stopped"] is True and data["samples"] > 0
