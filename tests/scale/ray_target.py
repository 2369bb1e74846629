"""Pipelines for the scale tests, loaded by file path (as a user's TARGET is) in workers.

``fetch`` stands for an I/O call (a short sleep) and raises on the input ``explode``;
``embed`` holds a component that cannot be pickled (a lock), so Ray must build it once per
actor. Every process that runs ``embed`` leaves its pid in ``$PIPETUNE_TEST_PID_DIR``, so a
test can kill a worker that is really serving.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from pipetune import Pipeline, Stage
from pipetune.core.runtime.serving import with_serving

EMBED_S = 0.01


class Model:
    """A stand-in model: a deterministic function of the text, unpicklable on purpose."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, text: str) -> dict[str, object]:
        return {"length": len(text), "code": sum(ord(c) for c in text) % 997}


def _record_pid() -> None:
    folder = os.environ.get("PIPETUNE_TEST_PID_DIR")
    if folder and Path(folder).is_dir():
        (Path(folder) / str(os.getpid())).touch()


def fetch(row: dict) -> str:
    time.sleep(0.001)
    if row["text"] == "explode":
        raise ValueError(f"cannot fetch {row['text']!r}")
    return row["text"]


def embed(text: str, *, model: Model) -> dict[str, object]:
    _record_pid()
    time.sleep(EMBED_S)
    return model(text)


def embed_batch(texts: list[str], *, model: Model) -> list[dict[str, object]]:
    _record_pid()
    time.sleep(EMBED_S * len(texts) / 2)
    return [model(text) for text in texts]


pipeline = Pipeline(
    "scale-toy",
    (
        Stage("fetch", fetch, kind="retrieval"),
        Stage("embed", embed, kind="inference", slots={"model": Model()}, batch_fn=embed_batch),
    ),
)
batched = with_serving(pipeline, batch_size=4, max_delay_ms=5.0)
