"""Frames fed as workload items: detected from the workload (one size, in order, nearly
identical neighbours), proposed the motion gate and the stride on the costliest
frame-taking stage, tuned on the frames in order, and judged per frame with the event
check, like the capture loop."""

from __future__ import annotations

import pickle
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.kernel.state import reset_state
from pipetune.core.measure.profiler import profile
from pipetune.plugins.vision import fidelity, frame_items
from pipetune.plugins.vision.frame_items import GatedFrames
from tests.plugins.vision.conftest import bright_model, write_video


def _frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str]]:
    """One clip's frames extracted as JPEG files (frame_0000.jpg...) and their truth."""
    folder = tmp_path_factory.mktemp("frames")
    truth = write_video(folder / "clip.mp4", 90, ((15, 27), (55, 67)), seed=3)
    paths = []
    for i, frame in enumerate(_frames(folder / "clip.mp4")):
        path = folder / f"frame_{i:04d}.jpg"
        cv2.imwrite(str(path), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(str(path))
    return paths, truth


def classify_file(path: str, *, model: Any) -> str:
    """Plain user code: one frame file in, one label out."""
    return model(cv2.imread(path))


def read_frame(path: str) -> np.ndarray:
    return cv2.imread(path)


def classify_array(frame: np.ndarray, *, model: Any) -> str:
    return model(frame)


def file_pipeline() -> Pipeline:
    stage = Stage("classify", classify_file, kind="inference", slots={"model": bright_model})
    return Pipeline("frames", (stage,), output_kind="labels")


def test_detected_on_frames_not_on_photos(clip: Any, jpegs: list[Path]) -> None:
    paths, _ = clip
    found = frame_items.detect(paths)
    assert found is not None and found["source"] == "files" and found["named_in_order"]
    assert found["similar_pair_share"] > 0.8 and found["gate_run_fraction_at_0.01"] < 0.6
    arrays = frame_items.detect([cv2.imread(p) for p in paths[:40]])
    assert arrays is not None and arrays["source"] == "ndarray"
    assert frame_items.detect([str(p) for p in jpegs] * 4) is None  # one size, unrelated
    assert frame_items.detect(["some text"] * 20) is None
    assert frame_items.detect([np.random.default_rng(0).random((40, 64))] * 20) is None


def test_signals_of_the_forms_a_frame_takes(clip: Any) -> None:
    paths, _ = clip
    bgr = cv2.imread(paths[0])
    chw = (bgr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0 - 0.45) / 0.22
    for value in (paths[0], Path(paths[0]).read_bytes(), bgr, chw):
        small = frame_items.frame_signal(value)
        assert small is not None and small.shape[1] == 64 and small.dtype == np.float32


def _context(pipeline: Pipeline, workload: Workload) -> TuneContext:
    pm = get_plugin_manager(entry_points=False)
    return TuneContext(
        pm,
        pipeline,
        workload,
        Requirements(max_accuracy_drop=0.02),
        ArtifactStore(tempfile.mkdtemp()),
    )


@pytest.mark.slow
def test_profiled_proposed_tuned_and_gated(clip: Any) -> None:
    paths, truth = clip
    pipeline = file_pipeline()
    workload = Workload(items=tuple(paths), labels=tuple(truth), repeats=1)
    pm = get_plugin_manager(entry_points=False)
    prof = profile(pipeline, workload, pm=pm, sweep=False)
    facts = prof.facts["vision"]["frame_items"]
    assert facts["stage"] == "classify" and facts["est_stage_speedup"] > 1
    proposals = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "vision"
    }
    motion = proposals["vision.motion_gate"]
    assert motion.params["frames"] == "items" and motion.fidelity_kind == "frame_labels"
    assert proposals["vision.frame_stride"].params["frames"] == "items"
    tune_split, _ = workload.split(0.6, seed=1)  # sorted: the frames stay in order
    context = _context(pipeline, tune_split)
    tuned = pm.tune(motion, pipeline, context)
    assert tuned.notes["run_fraction"] < 0.7
    assert tuned.in_flight is not None and tuned.in_flight.in_order
    gated = pm.materialize(Change.from_proposal(motion, tuned), pipeline, ".")
    assert isinstance(gated.stage("classify").fn, GatedFrames)
    assert pipeline.stage("classify").fn is classify_file  # the original is untouched
    reset_state(gated)
    outputs = [gated.run(p) for p in paths]
    result = fidelity.frame_agreement([pipeline.run(p) for p in paths], outputs, list(truth))
    assert result.details["events_ok"] and result.value >= 0.98
    assert result.details["events"] == 2
    stats = gated.stage("classify").fn.pipetune_stats()
    assert stats["frames"] == len(paths) and stats["runs"] < len(paths)


def test_the_gate_passes_slots_resets_and_pickles(clip: Any) -> None:
    paths, _ = clip
    calls: list[str] = []

    def counting(frame: np.ndarray) -> str:
        calls.append("x")
        return bright_model(frame)

    stage = Stage("classify", classify_array, slots={"model": bright_model})
    gated = stage.evolve(fn=GatedFrames(stage.fn, {"mode": "motion", "threshold": 0.05}))
    swapped = gated.with_slots(model=counting)  # a later change replacing the model slot
    frames = [cv2.imread(p) for p in paths[:12]]
    labels = [swapped(f) for f in frames]
    assert labels == [bright_model(f) for f in frames]
    assert 1 <= len(calls) < len(frames)
    gated.fn.pipetune_reset()
    assert gated.fn.pipetune_stats() == {"frames": 0, "runs": 0}
    copy = pickle.loads(pickle.dumps(gated.fn))
    assert isinstance(copy, GatedFrames) and copy.params == gated.fn.params


def test_per_input_labels_read_as_one_clip() -> None:
    base = ["e"] * 10 + ["p"] * 8 + ["e"] * 10
    late = ["e"] * 14 + ["p"] * 4 + ["e"] * 10
    assert fidelity.frame_agreement(base, base, None).details["events"] == 1
    bad = fidelity.frame_agreement(base, late, base)
    assert not bad.details["events_ok"] and bad.value == 0.0


def test_a_gate_over_frames_is_timed_on_frames_in_order() -> None:
    from pipetune.core.measure.coverage import merge_in_flight, plan_rounds
    from pipetune.plugins.vision.changes.motion_gate import FRAMES_IN_ORDER

    plan = plan_rounds(300, 3, (0.01, 0.01), round_target_s=0.5, in_flight=FRAMES_IN_ORDER)
    assert plan.chunk(0) == list(range(plan.size))  # contiguous, in the workload's order
    assert plan.chunk(1)[0] == plan.size
    spread = plan_rounds(300, 3, (0.01, 0.01), round_target_s=0.5)
    assert spread.chunk(0) != sorted(spread.chunk(0))  # other changes: spread over the split
    assert merge_in_flight(None, FRAMES_IN_ORDER) is FRAMES_IN_ORDER
