"""Bad input is skipped and counted per item with its reason: never a crash, never a
silently shorter result."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipetune.core.kernel.model import Pipeline
from pipetune.plugins.vision.blocks import (
    decode_resize_batch,
    decode_resize_stage,
    frame_source,
)
from pipetune.plugins.vision.inputs import BadInput, Skipped, count_skipped, read_image_bytes
from pipetune.plugins.vision.reduced_decode import OpenCVDecoder


@pytest.fixture
def bad_files(tmp_path: Path, jpegs: list[Path]) -> dict[str, Path]:
    good = jpegs[0].read_bytes()
    files = {
        "truncated": good[: len(good) // 2],
        "corrupt": b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9",
        "text": b"this is not an image\n",
        "empty": b"",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name}.jpg"
        paths[name].write_bytes(data)
    paths["missing"] = tmp_path / "missing.jpg"
    return paths


def test_each_bad_image_has_its_reason(bad_files: dict[str, Path]) -> None:
    reasons = {}
    for name, path in bad_files.items():
        with pytest.raises(BadInput) as info:
            OpenCVDecoder().decode_resize(read_image_bytes(path), (64, 64), str(path))
        reasons[name] = info.value.reason
    assert "truncated" in reasons["truncated"]
    assert "corrupt" in reasons["corrupt"]
    assert "not an image" in reasons["text"]
    assert "empty" in reasons["empty"]
    assert "not found" in reasons["missing"]


def test_pipeline_keeps_one_output_per_input(jpegs: list[Path], bad_files: dict[str, Path]) -> None:
    items = [str(jpegs[0]), *map(str, bad_files.values()), str(jpegs[1])]
    pipeline = Pipeline("p", (decode_resize_stage(size=64),), output_kind="image")
    for outputs in (
        [pipeline.run(item) for item in items],
        pipeline.run_batch(items),
        decode_resize_batch(items, decoder=OpenCVDecoder(reduce=True), size=64, workers=2),
    ):
        assert len(outputs) == len(items)
        assert outputs[0].shape == outputs[-1].shape == (64, 64, 3)
        skipped = outputs[1:-1]
        assert all(isinstance(o, Skipped) for o in skipped)
        assert sum(count_skipped(outputs).values()) == len(bad_files)


def test_on_error_raise_names_the_file(bad_files: dict[str, Path]) -> None:
    stage = decode_resize_stage(size=64, on_error="raise")
    with pytest.raises(BadInput, match="truncated"):
        stage(str(bad_files["truncated"]))


def test_bad_videos_are_skipped_with_reasons(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(bytes(range(256)) * 64)
    results = {
        "empty": frame_source(str(empty)),
        "garbage": frame_source(str(garbage)),
        "missing": frame_source(str(tmp_path / "nope.mp4")),
    }
    assert all(isinstance(r, Skipped) for r in results.values())
    assert "empty" in results["empty"].reason
    assert "OpenCV" in results["garbage"].reason
    assert "not found" in results["missing"].reason
    with pytest.raises(BadInput):
        frame_source(str(empty), on_error="raise")


def test_zero_frame_video_is_skipped(tmp_path: Path) -> None:
    import cv2

    path = tmp_path / "zero.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (64, 48))
    writer.release()
    result = frame_source(str(path))
    assert isinstance(result, Skipped)
