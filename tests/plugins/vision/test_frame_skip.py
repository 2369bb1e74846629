"""Motion gating, event detection, and threshold tuning on a real (small) video."""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import pytest

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change, Proposal
from pipetune.plugins.vision import fidelity, frame_skip
from pipetune.plugins.vision.changes.frame_stride import ID as STRIDE
from pipetune.plugins.vision.changes.motion_gate import ID as MOTION
from tests.plugins.vision.conftest import bright_model, write_video


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[list[str]]]:
    folder = tmp_path_factory.mktemp("clips")
    paths, truths = [], []
    for i, events in enumerate((((12, 22), (40, 50)), ((25, 35),), ((8, 16), (44, 54)))):
        path = folder / f"c{i}.mp4"
        truths.append(write_video(path, 64, events, seed=i))
        paths.append(str(path))
    return paths, truths


def frame_loop(path: str, *, capture: Any, model: Any) -> list[str]:
    """Plain user code: an OpenCV frame loop calling the model once per frame."""
    cap = capture(path)
    labels = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        labels.append(model(frame))
    cap.release()
    return labels


def loop_pipeline() -> Pipeline:
    import cv2

    stage = Stage(
        "loop",
        frame_loop,
        kind="inference",
        slots={"capture": cv2.VideoCapture, "model": bright_model},
    )
    return Pipeline("cam", (stage,), output_kind="frame_labels")


def test_gate_ignores_noise_and_drift_but_sees_the_object(clips: Any) -> None:
    import cv2

    paths, _ = clips
    state = frame_skip.MotionGate(threshold=0.01).start()
    cap = cv2.VideoCapture(paths[1])
    runs = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        runs.append(state.should_run(frame))
    cap.release()
    runs = np.array(runs)
    assert runs[0]  # the first frame always runs
    assert not runs[1:25].any()  # static, noisy, drifting: no model calls
    assert runs[25:28].any()  # the object appears at frame 25
    assert runs[36:].sum() <= 2  # after it leaves: one refresh, then static again


def test_event_detection_rejects_a_late_event() -> None:
    base = ["e"] * 10 + ["p"] * 8 + ["e"] * 10
    on_time = ["e"] * 12 + ["p"] * 6 + ["e"] * 10  # 2 frames late
    late = ["e"] * 14 + ["p"] * 4 + ["e"] * 10  # 4 frames late
    good = fidelity.frame_agreement([base], [on_time], None)
    bad = fidelity.frame_agreement([base], [late], None)
    assert good.details["events_ok"] and good.value == pytest.approx(26 / 28)
    assert not bad.details["events_ok"] and bad.value == 0.0
    assert bad.details["late_or_missed"][0]["start"] == 10
    assert bad.details["frame_agreement"] == pytest.approx(24 / 28)


def test_events_from_ground_truth_allow_a_slow_baseline() -> None:
    truth = ["empty"] * 5 + ["cat"] * 10 + ["empty"] * 5
    base = ["empty"] * 10 + ["cat"] * 5 + ["empty"] * 5  # the full model needs 5 frames
    cand = ["empty"] * 10 + ["cat"] * 5 + ["empty"] * 5
    result = fidelity.event_detection([base], [cand], [truth])
    assert result["events"] == 1 and result["late_count"] == 0
    assert result["event_source"] == "labels"


def tune(proposal: Proposal, pipeline: Pipeline, workload: Workload, context: TuneContext) -> Any:
    """Tune through the host, as the loop does (``context.workload`` is ``workload``)."""
    assert context.workload is workload
    return context.pm.tune(proposal, pipeline, context)


def materialize(change: Change, pipeline: Pipeline) -> Pipeline:
    return get_plugin_manager(entry_points=False).materialize(change, pipeline, ".")


def _context(pipeline: Pipeline, workload: Workload, drop: float = 0.02) -> TuneContext:
    pm = get_plugin_manager(entry_points=False)
    return TuneContext(
        pm,
        pipeline,
        workload,
        Requirements(max_accuracy_drop=drop),
        ArtifactStore(tempfile.mkdtemp()),
    )


def _proposal(pid: str, params: dict[str, Any]) -> Proposal:
    return Proposal(
        id=pid,
        plugin="vision",
        stage="loop",
        title="t",
        params=params,
        fidelity_kind="frame_labels",
    )


@pytest.mark.slow
def test_motion_threshold_is_tuned_and_gates_a_plain_loop(clips: Any) -> None:
    paths, truths = clips
    pipeline = loop_pipeline()
    workload = Workload(items=tuple(paths), labels=tuple(truths))
    context = _context(pipeline, workload)
    proposal = _proposal(MOTION, {"mode": "motion", "width": 64, "delta": 8.0, "max_interval": 150})
    tuned = tune(proposal, pipeline, workload, context)
    assert tuned.params["threshold"] > 0
    assert tuned.notes["run_fraction"] < 0.6  # most frames reuse the last result
    curve = tuned.notes["curve"]
    assert curve[0]["ok"] and any(point["ok"] for point in curve)
    gated = materialize(Change.from_proposal(proposal, tuned), pipeline)
    outputs = [gated.run(p) for p in paths]
    result = context.fidelity(outputs, "frame_labels")
    assert result.details["events_ok"] and result.value >= 0.98
    assert [len(o) for o in outputs] == [len(t) for t in truths]


def test_stride_tuning_keeps_events_within_three_frames(clips: Any) -> None:
    paths, truths = clips
    pipeline = loop_pipeline()
    workload = Workload(items=tuple(paths), labels=tuple(truths))
    proposal = _proposal(STRIDE, {"mode": "stride", "stride": 3})
    context = _context(pipeline, workload, drop=0.2)
    tuned = tune(proposal, pipeline, workload, context)
    assert tuned.params["stride"] >= 2
    gated = materialize(Change.from_proposal(proposal, tuned), pipeline)
    result = context.fidelity([gated.run(p) for p in paths], "frame_labels")
    assert result.details["events_ok"] and result.details["max_latency_frames"] <= 3
    # the next stride up fails (events late or agreement below the floor)
    bigger = [p for p in tuned.notes["curve"] if p["params"]["stride"] > tuned.params["stride"]]
    assert not bigger or not bigger[0]["ok"]


def test_tuning_rejects_when_nothing_meets_the_floor(clips: Any) -> None:
    paths, _ = clips

    def noisy(frame: np.ndarray) -> str:  # flickers on static frames: skipping cannot match
        return "object" if frame[0, 0, 0] % 2 else "empty"

    import cv2

    stage = Stage("loop", frame_loop, slots={"capture": cv2.VideoCapture, "model": noisy})
    pipeline = Pipeline("flicker", (stage,), output_kind="frame_labels")
    workload = Workload(items=tuple(paths))
    proposal = _proposal(STRIDE, {"mode": "stride", "stride": 3})
    with pytest.raises(Rejected, match="no stride"):
        tune(proposal, pipeline, workload, _context(pipeline, workload, drop=0.001))


def test_gate_rechecks_while_an_alert_is_up() -> None:
    gate = frame_skip.MotionGate(threshold=0.5, active_interval=4)
    static = np.full((36, 64), 100.0, dtype=np.float32)
    state = gate.start()
    assert state.should_run_small(static)
    state.note_result("empty")
    assert not any(state.should_run_small(static) for _ in range(20))  # resting: no re-runs
    for _ in range(3):
        state.note_result("empty")
    moved = static.copy()
    moved[:, :40] = 200.0  # something enters: the gate runs, the model says "person"
    assert state.should_run_small(moved)
    state.note_result("person")  # an alert: re-check every 4 frames until it clears
    runs = [state.should_run_small(moved) for _ in range(8)]
    assert runs == [False, False, False, True, False, False, False, True]
