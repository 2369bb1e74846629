"""The DALI pipeline really runs (CPU operators here, created with device_id=None) and
matches OpenCV within tolerance; GPU paths run only where CUDA is."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nvidia.dali", reason="DALI is not installed (pip install pipetune[vision])")

from pipetune.plugins.vision.blocks import IMAGENET_MEAN, IMAGENET_STD, decode_resize_batch
from pipetune.plugins.vision.dali import DaliDecoder, cuda_available
from pipetune.plugins.vision.inputs import Skipped
from pipetune.plugins.vision.reduced_decode import OpenCVDecoder


def test_dali_cpu_matches_opencv(jpegs: list[Path]) -> None:
    items = [str(p) for p in jpegs]
    dali = decode_resize_batch(items, decoder=DaliDecoder(threads=1, max_batch=2), size=96)
    cv = decode_resize_batch(items, decoder=OpenCVDecoder(), size=96)
    assert len(dali) == len(cv) == 3
    for a, b in zip(dali, cv, strict=True):
        assert a.shape == b.shape == (96, 96, 3) and a.dtype == np.uint8
        diff = np.abs(a.astype(int) - b.astype(int))
        assert diff.mean() < 3.0, diff.mean()  # different resize kernels, same image


def test_dali_normalize_folds_the_classifier_normalization(jpegs: list[Path]) -> None:
    decoder = DaliDecoder(threads=1, normalize=(IMAGENET_MEAN, IMAGENET_STD))
    (out,) = decode_resize_batch([str(jpegs[0])], decoder=decoder, size=64)
    assert out.shape == (3, 64, 64) and out.dtype == np.float32
    (plain,) = decode_resize_batch([str(jpegs[0])], decoder=DaliDecoder(threads=1), size=64)
    manual = (plain / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.abs(manual.transpose(2, 0, 1) - out).max() < 1e-3


def test_dali_isolates_a_bad_image_in_a_batch(tmp_path: Path, jpegs: list[Path]) -> None:
    bad = tmp_path / "bad.jpg"
    data = bytearray(jpegs[0].read_bytes())
    data[200:4000] = b"\x00" * 3800  # header intact, entropy data destroyed
    bad.write_bytes(bytes(data))
    truncated = tmp_path / "trunc.jpg"
    truncated.write_bytes(jpegs[0].read_bytes()[:5000])
    items = [str(jpegs[0]), str(bad), str(truncated), str(jpegs[1])]
    out = decode_resize_batch(items, decoder=DaliDecoder(threads=1), size=64)
    assert len(out) == 4
    assert out[0].shape == out[3].shape == (64, 64, 3)
    assert isinstance(out[2], Skipped) and "truncated" in out[2].reason
    # DALI may or may not reject a JPEG with zeroed entropy data; either way one output
    assert isinstance(out[1], Skipped) or out[1].shape == (64, 64, 3)


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_dali_mixed_decoder_on_gpu(jpegs: list[Path]) -> None:
    items = [str(p) for p in jpegs]
    gpu = decode_resize_batch(items, decoder=DaliDecoder(device="gpu"), size=96)
    cpu = decode_resize_batch(items, decoder=DaliDecoder(), size=96)
    for a, b in zip(gpu, cpu, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0


@pytest.mark.gpu
@pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")
def test_nvjpeg_through_torchvision(jpegs: list[Path]) -> None:
    pytest.importorskip("torchvision", reason="torchvision is needed for nvJPEG decode")
    from pipetune.plugins.vision.gpu_decode import NvJpegDecoder

    items = [str(p) for p in jpegs]
    gpu = decode_resize_batch(items, decoder=NvJpegDecoder(), size=96)
    cpu = decode_resize_batch(items, decoder=OpenCVDecoder(), size=96)
    for a, b in zip(gpu, cpu, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3.0
