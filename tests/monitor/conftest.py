from __future__ import annotations

import hashlib

import numpy as np
import pytest

from pipetune import Pipeline, Stage


def scale(x, *, weights):
    return float(np.dot(weights, np.full(len(weights), x)))


def check(x):
    if x < 0:
        raise ValueError("negative")
    if x > 1e6:
        raise OverflowError("too big")
    return round(x, 3)


@pytest.fixture
def weights() -> np.ndarray:
    return np.linspace(0.0, 1.0, 16)


@pytest.fixture
def toy(weights) -> Pipeline:
    return Pipeline(
        "toy",
        (
            Stage("scale", scale, kind="inference", slots={"weights": weights}),
            Stage("check", check, kind="postprocess"),
        ),
    )


def digest(array: np.ndarray) -> str:
    return hashlib.sha256(array.tobytes()).hexdigest()
