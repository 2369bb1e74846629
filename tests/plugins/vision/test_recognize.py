"""Recognition of decode-and-resize steps, frame loops and the model input size, on the
plugin's blocks and on plain user code."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.plugins.vision.blocks import (
    classify_frames_stage,
    decode_resize_stage,
    frame_source_stage,
)
from pipetune.plugins.vision.recognize import (
    find_decode_steps,
    find_frame_loops,
    model_input_size,
    qualified_name,
)


def user_load(path: str, *, decoder: Any = cv2.imread, size: Any = (224, 224)) -> np.ndarray:
    image = decoder(path)
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def plain_load(path: str) -> np.ndarray:
    return cv2.resize(cv2.imread(path), (224, 224))


def _closure_loader() -> Any:
    import cv2  # a local name: the loader reads it from its closure, out of reach

    def load(path: str) -> np.ndarray:
        return cv2.resize(cv2.imread(path), (224, 224))

    return load


closure_load = _closure_loader()


def opaque_load(path: str) -> np.ndarray:
    return helper(path, cv2.imread)  # the decode happens in a helper


def helper(path: str, read: Any) -> np.ndarray:
    return cv2.resize(read(path), (224, 224))


def user_loop(path: str, *, capture: Any, model: Any) -> list[Any]:
    return []


def opaque_loop(path: str) -> list[Any]:
    cap = cv2.VideoCapture(path)
    cap.release()
    return []


class Model:
    input_size = (3, 160, 192)  # timm-style (C, H, W)

    def __call__(self, x: Any) -> Any:
        return x


def test_qualified_names_of_library_decoders() -> None:
    assert qualified_name(cv2.imread) == "cv2.imread"
    pil = __import__("PIL.Image", fromlist=["open"])
    assert qualified_name(pil.open) == "PIL.Image.open"


def test_block_and_plain_decode_steps() -> None:
    pipeline = Pipeline(
        "p",
        (
            decode_resize_stage("block", size=224),
            Stage(
                "plain", user_load, kind="decode", slots={"decoder": cv2.imread, "size": (320, 240)}
            ),
            Stage("code", plain_load, kind="decode"),
            Stage("opaque", opaque_load, kind="decode"),
        ),
    )
    steps = {s.stage: s for s in find_decode_steps(pipeline)}
    assert steps["block"].how == "block" and steps["block"].transformable
    assert steps["block"].target == (224, 224)
    assert steps["plain"].library == "opencv" and steps["plain"].transformable
    assert steps["plain"].target == (320, 240)
    # plain decode code: found from the source, reachable through its module-level name
    assert steps["code"].how == "code" and steps["code"].transformable
    assert steps["code"].decoder == "cv2.imread" and steps["code"].rebind == ("cv2.imread",)
    assert steps["code"].target == (224, 224)
    # decoding in a helper the stage calls: a hint only
    assert steps["opaque"].how == "code" and not steps["opaque"].transformable
    assert not steps["opaque"].code


def test_hints_for_opaque_steps() -> None:
    pm = get_plugin_manager(entry_points=False)
    pipeline = Pipeline(
        "p",
        (
            Stage("load", opaque_load, kind="decode"),
            Stage("closure", closure_load, kind="decode"),
            Stage("cam", opaque_loop, kind="inference"),
        ),
    )
    hints = [
        h
        for stage in pipeline
        for _, hs in pm.call_each("stage_hints", stage=stage, pipeline=pipeline)
        for h in hs
    ]
    assert any("decoder=cv2.imread" in h for h in hints)
    assert any("capture=cv2.VideoCapture" in h for h in hints)
    (closure,) = [h for h in hints if "'closure'" in h and "cv2.imread" in h]
    assert "test_recognize.py:" in closure and "closure" in closure
    assert "one-line change" in closure


def test_frame_loops() -> None:
    pipeline = Pipeline(
        "v",
        (
            frame_source_stage("frames"),
            classify_frames_stage("classify", model=Model(), classes=("a", "b"), size=96),
        ),
    )
    (loop,) = find_frame_loops(pipeline)
    assert loop.how == "block" and loop.source_stage == "frames" and loop.transformable
    plain = Pipeline(
        "v", (Stage("loop", user_loop, slots={"capture": cv2.VideoCapture, "model": Model()}),)
    )
    (loop,) = find_frame_loops(plain)
    assert loop.how == "slots" and loop.transformable
    (loop,) = find_frame_loops(Pipeline("v", (Stage("loop", opaque_loop),)))
    assert loop.how == "code" and not loop.transformable


def test_model_input_size_from_the_model() -> None:
    pipeline = Pipeline(
        "p",
        (
            Stage("load", user_load, kind="decode", slots={"decoder": cv2.imread}),
            Stage(
                "infer", lambda x, *, model: model(x), kind="inference", slots={"model": Model()}
            ),
        ),
    )
    assert model_input_size(pipeline) == (192, 160)
    (step,) = find_decode_steps(pipeline)
    assert step.target == (192, 160)


def test_inspect_pipeline_hook() -> None:
    pm = get_plugin_manager(entry_points=False)
    pipeline = Pipeline("p", (decode_resize_stage(size=128),))
    (facts,) = [
        f for name, f in pm.call_each("inspect_pipeline", pipeline=pipeline) if name == "vision"
    ]
    assert facts["decode_steps"][0]["target"] == [128, 128]
