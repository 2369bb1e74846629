"""Fixtures for the vision plugin tests: small real JPEGs and videos, written per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2", reason="the vision tests need OpenCV (pipetune[vision])")


@pytest.fixture(scope="session", autouse=True)
def _vision_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Demo data and trained demo models go to a per-session cache, not ~/.cache."""
    mp = pytest.MonkeyPatch()
    mp.setenv("PIPETUNE_CACHE", str(tmp_path_factory.mktemp("pipetune-cache")))
    # The test models are tiny: one intra-op thread avoids oversubscribed, spinning
    # OpenMP threads on a shared CI machine.
    try:
        import torch
    except ImportError:
        torch = None
    threads = torch.get_num_threads() if torch else 0
    if torch:
        torch.set_num_threads(1)
    yield
    if torch:
        torch.set_num_threads(threads)
    mp.undo()


def textured(width: int, height: int, seed: int = 0) -> np.ndarray:
    """A natural-looking BGR test image: smooth colour gradients plus fine texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            128 + 80 * np.sin(xx / (width / 3) + seed),
            128 + 80 * np.cos(yy / (height / 4)),
            128 + 60 * np.sin((xx + yy) / (width / 5)),
        ],
        axis=2,
    )
    base += rng.normal(0, 6, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, width: int, height: int, seed: int = 0, quality: int = 90) -> Path:
    ok, buf = cv2.imencode(
        ".jpg", textured(width, height, seed), [cv2.IMWRITE_JPEG_QUALITY, quality]
    )
    assert ok
    path.write_bytes(buf.tobytes())
    return path


@pytest.fixture(scope="session")
def jpegs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("jpegs")
    return [write_jpeg(folder / f"img{i}.jpg", 1600, 1200, seed=i) for i in range(3)]


def write_video(
    path: Path, frames: int = 60, events: tuple[tuple[int, int], ...] = ((20, 32),), seed: int = 0
) -> list[str]:
    """A static noisy scene with slow lighting drift; a bright square moves across during
    each (start, end) event. Returns the per-frame ground truth."""
    rng = np.random.default_rng(seed)
    width, height = 160, 96
    background = cv2.GaussianBlur(textured(width, height, seed), (0, 0), 2).astype(np.float32) * 0.7
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 15, (width, height))
    assert writer.isOpened()
    truth = []
    for t in range(frames):
        frame = background * (1.0 + 0.05 * t / frames) + rng.normal(0, 2.5, background.shape)
        label = "empty"
        for start, end in events:
            if start <= t <= end:
                x = 10 + (t - start) * 8
                frame[30:60, x : x + 30] = 250
                label = "object"
        truth.append(label)
        writer.write(np.clip(frame, 0, 255).astype(np.uint8))
    writer.release()
    return truth


def bright_model(frame: np.ndarray) -> str:
    """A deterministic stand-in classifier for frame loops: 'object' when bright pixels
    cover more than 2 % of the frame."""
    return "object" if float((frame.min(axis=2) > 230).mean()) > 0.02 else "empty"
