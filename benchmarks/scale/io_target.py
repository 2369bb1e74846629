"""A pipeline with an I/O-bound fetch stage, then a model stage, as a TARGET.

``fetch`` stands for a call to a remote store: its latency is **simulated** (a sleep of
``PIPETUNE_BENCH_FETCH_MS`` milliseconds, 20 by default) and it returns the item's features
(16 x 256 floats, a function of the id). ``model`` is a real torch MLP (3 layers of 2,048),
mean-pooled to one of 10 classes: CPU-bound, and too big to ship to tasks (so Ray builds it
once per actor).
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from pipetune import Pipeline, Stage

FETCH_MS = float(os.environ.get("PIPETUNE_BENCH_FETCH_MS", "20"))


def fetch(row: dict) -> np.ndarray:
    time.sleep(FETCH_MS / 1000.0)  # simulated network latency
    rng = np.random.default_rng(int(row["id"]))
    return rng.standard_normal((16, 256)).astype(np.float32)


def build_model() -> torch.nn.Module:
    torch.manual_seed(0)
    width = 2048
    return torch.nn.Sequential(
        torch.nn.Linear(256, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, width),
        torch.nn.ReLU(),
        torch.nn.Linear(width, 10),
    ).eval()


def classify(features: np.ndarray, *, model: torch.nn.Module) -> int:
    with torch.inference_mode():
        logits = model(torch.from_numpy(features)).mean(dim=0)
    return int(logits.argmax())


pipeline = Pipeline(
    "fetch-then-model",
    (
        Stage("fetch", fetch, kind="retrieval"),
        Stage("model", classify, kind="inference", slots={"model": build_model()}),
    ),
    output_kind="labels",
)
