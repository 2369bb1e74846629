"""Materialized changes are new pipelines: the original and its components never change,
and the changed pipeline really runs the new decoder."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import Change
from pipetune.plugins.vision.blocks import decode_resize_stage
from pipetune.plugins.vision.fidelity import psnr
from pipetune.plugins.vision.frame_skip import GatedCapture, GatedModel, MotionGate
from pipetune.plugins.vision.proposals import DALI_DECODE, MOTION, PARALLEL, REDUCED
from pipetune.plugins.vision.reduced_decode import OpenCVDecoder, ReducedImread


def user_load(path: str, *, decoder: Any, size: Any) -> np.ndarray:
    return cv2.resize(decoder(path), size, interpolation=cv2.INTER_AREA)


def _digest(pipeline: Pipeline) -> str:
    return hashlib.sha256(
        repr([(s.name, dict(s.slots), s.batch_fn, dict(s.meta)) for s in pipeline]).encode()
    ).hexdigest()


def materialize(change: Change, pipeline: Pipeline) -> Pipeline:
    """Build ``change`` through the host's dispatch by id, as a recipe does."""
    return get_plugin_manager(entry_points=False).materialize(change, pipeline, ".")


def _change(proposal: str, stage: str, params: dict[str, Any]) -> Change:
    return Change(proposal=proposal, plugin="vision", stage=stage, params=params)


@pytest.mark.slow
def test_reduced_decode_on_plain_code(jpegs: list[Path]) -> None:
    stage = Stage(
        "load", user_load, kind="decode", slots={"decoder": cv2.imread, "size": (224, 224)}
    )
    pipeline = Pipeline("p", (stage,), output_kind="image")
    before = _digest(pipeline)
    changed = materialize(
        _change(REDUCED, "load", {"max_factor": 8, "target": [224, 224]}), pipeline
    )
    assert _digest(pipeline) == before and pipeline.stage("load").slots["decoder"] is cv2.imread
    assert isinstance(changed.stage("load").slots["decoder"], ReducedImread)
    a, b = pipeline.run(str(jpegs[0])), changed.run(str(jpegs[0]))
    assert a.shape == b.shape and psnr(a, b) > 30


def test_block_changes_do_not_mutate(jpegs: list[Path]) -> None:
    pipeline = Pipeline("p", (decode_resize_stage("decode", size=96),), output_kind="image")
    before = _digest(pipeline)
    reduced = materialize(
        _change(REDUCED, "decode", {"max_factor": 8, "target": [96, 96]}), pipeline
    )
    assert reduced.stage("decode").slots["decoder"] == OpenCVDecoder(reduce=True)
    parallel = materialize(_change(PARALLEL, "decode", {"workers": 2}), pipeline)
    assert parallel.stage("decode").slots["workers"] == 2
    items = [str(p) for p in jpegs]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(parallel.run_batch(items), pipeline.run_batch(items), strict=True)
    )
    if pytest.importorskip("nvidia.dali", reason="DALI not installed") is not None:
        dali = materialize(
            _change(DALI_DECODE, "decode", {"device": "cpu", "threads": 1}), pipeline
        )
        assert dali.stage("decode").slots["decoder"].name == "dali"
    assert _digest(pipeline) == before
    assert pipeline.stage("decode").slots["decoder"] == OpenCVDecoder()


def test_gating_a_plain_loop_wraps_copies(tmp_path: Path) -> None:
    model = object()
    stage = Stage(
        "loop", lambda p, *, capture, model: [], slots={"capture": cv2.VideoCapture, "model": model}
    )
    pipeline = Pipeline("v", (stage,), output_kind="frame_labels")
    before = _digest(pipeline)
    gated = materialize(_change(MOTION, "loop", {"mode": "motion", "threshold": 0.01}), pipeline)
    assert isinstance(gated.stage("loop").slots["capture"], GatedCapture)
    wrapped = gated.stage("loop").slots["model"]
    assert isinstance(wrapped, GatedModel) and wrapped.model is model
    assert wrapped.signal.gate == MotionGate(threshold=0.01)
    assert _digest(pipeline) == before and pipeline.stage("loop").slots["model"] is model


@pytest.mark.slow
def test_model_weights_untouched_by_demo_changes() -> None:
    torch = pytest.importorskip("torch", reason="torch is needed for the demo classifier")
    from pipetune.demos.vision.demo import build_vision

    setup = build_vision(quick=True)
    model = setup.pipeline.stage("classify").slots["model"]

    def weights() -> str:
        return hashlib.sha256(
            b"".join(t.numpy().tobytes() for t in model.state_dict().values())
        ).hexdigest()

    before = weights()
    changed = materialize(
        _change(REDUCED, "decode", {"max_factor": 8, "target": [64, 64]}), setup.pipeline
    )
    with torch.inference_mode():
        changed.run_batch(list(setup.workload.items[:4]))
    assert weights() == before
