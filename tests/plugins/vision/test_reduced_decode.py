"""Reduced-resolution JPEG decode: the factor choice and the real decoders."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipetune.plugins.vision.fidelity import psnr
from pipetune.plugins.vision.inputs import jpeg_size
from pipetune.plugins.vision.reduced_decode import (
    DraftOpen,
    OpenCVDecoder,
    PillowDecoder,
    ReducedImdecode,
    ReducedImread,
    choose_factor,
)


@pytest.mark.parametrize(
    ("width", "height", "target", "expected"),
    [
        (4000, 3000, 224, 8),  # 500x375 >= 224
        (3000, 4000, 224, 8),
        (1600, 1200, 224, 4),  # /8 = 200x150 < 224; /4 = 400x300
        (1000, 800, 224, 2),  # /4 = 250x200: height too small
        (400, 300, 224, 1),
        (4000, 3000, (640, 480), 4),  # 1000x750 >= 640x480, 500x375 is not
        (1793, 1793, 224, 8),  # ceil(1793/8) = 225: libjpeg rounds up
    ],
)
def test_choose_factor(width: int, height: int, target: object, expected: int) -> None:
    assert choose_factor(width, height, target) == expected


def test_choose_factor_respects_max_factor() -> None:
    assert choose_factor(4000, 3000, 224, max_factor=4) == 4
    assert choose_factor(4000, 3000, 224, max_factor=1) == 1


@given(st.integers(16, 6000), st.integers(16, 6000), st.integers(8, 1024), st.integers(8, 1024))
def test_factor_never_decodes_below_the_model_input(w: int, h: int, tw: int, th: int) -> None:
    factor = choose_factor(w, h, (tw, th))
    if factor > 1:
        assert math.ceil(w / factor) >= tw and math.ceil(h / factor) >= th
        bigger = factor * 2
        if bigger <= 8:  # the next reduction would go below the input
            assert math.ceil(w / bigger) < tw or math.ceil(h / bigger) < th


def test_reduced_opencv_decode_is_real_and_close(jpegs: list[Path]) -> None:
    data = jpegs[0].read_bytes()
    assert jpeg_size(data) == (1600, 1200)
    full, reduced = OpenCVDecoder(), OpenCVDecoder(reduce=True)
    assert reduced.factor_for(data, (224, 224)) == 4
    a = full.decode_resize(data, (224, 224))
    b = reduced.decode_resize(data, (224, 224))
    assert a.shape == b.shape == (224, 224, 3)
    assert psnr(a, b) > 30


def test_reduced_imread_is_a_drop_in_for_cv2_imread(jpegs: list[Path]) -> None:
    image = ReducedImread(target=(224, 224))(str(jpegs[0]))
    assert image.shape == (300, 400, 3)  # 1/4 of 1600x1200, BGR like cv2.imread
    gray = ReducedImread(target=(224, 224))(str(jpegs[0]), cv2.IMREAD_GRAYSCALE)
    assert gray.shape == (300, 400)
    assert ReducedImread(target=(224, 224))("/nonexistent.jpg") is None  # like cv2.imread
    buf = np.frombuffer(jpegs[0].read_bytes(), dtype=np.uint8)
    assert ReducedImdecode(target=(500, 500))(buf, cv2.IMREAD_COLOR).shape == (600, 800, 3)


def test_png_is_decoded_at_full_size(tmp_path: Path, jpegs: list[Path]) -> None:
    png = tmp_path / "x.png"
    cv2.imwrite(str(png), cv2.imread(str(jpegs[0])))
    assert ReducedImread(target=(224, 224))(str(png)).shape == (1200, 1600, 3)


def test_pillow_draft(jpegs: list[Path]) -> None:
    pil = pytest.importorskip("PIL.Image", reason="Pillow is needed for draft decode")
    image = DraftOpen(target=(224, 224))(str(jpegs[0]))
    image.load()
    assert image.size == (400, 300)
    assert pil.open(str(jpegs[0])).size == (1600, 1200)
    data = jpegs[1].read_bytes()
    a = PillowDecoder().decode_resize(data, (224, 224))
    b = PillowDecoder(reduce=True).decode_resize(data, (224, 224))
    assert a.shape == b.shape == (224, 224, 3)
    assert psnr(a, b) > 30
