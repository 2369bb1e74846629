"""Helpers for the scale tests: a toy pipeline file (as a user's TARGET) and input files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pipetune.core.kernel.results import LatencyStats, Machine, Profile, StageStats

TOY = """
from pipetune import Pipeline, Stage
from pipetune.core.runtime.serving import with_serving


def clean(row):
    return row["text"].strip().lower()


def score(text, *, weight):
    if text == "poison":
        raise ValueError("poisoned input")
    return {"words": len(text.split()), "score": round(len(text) * weight, 3)}


def score_batch(texts, *, weight):
    if "poison" in texts:
        raise ValueError("a poisoned batch")
    return [score(t, weight=weight) for t in texts]


pipeline = Pipeline("toy-run", (
    Stage("clean", clean),
    Stage("score", score, slots={"weight": 0.5}, batch_fn=score_batch),
))
batched = with_serving(pipeline, batch_size=3)
workload = [{"id": i, "text": f"Text number {i}"} for i in range(10)]
"""


@pytest.fixture
def toy_target(tmp_path: Path) -> Path:
    path = tmp_path / "toy_run.py"
    path.write_text(TOY)
    return path


@pytest.fixture
def write_jsonl(tmp_path: Path) -> Callable[..., Path]:
    def write(rows: list, name: str = "in.jsonl", extra: tuple[str, ...] = ()) -> Path:
        path = tmp_path / name
        lines = [json.dumps(row) for row in rows] + list(extra)
        path.write_text("\n".join(lines) + "\n")
        return path

    return write


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def stage_profile(stages: dict[str, tuple[float, float | None]], batch: int = 1) -> Profile:
    """A profile whose stages take ``(mean ms, cpu ratio)``."""
    total = sum(ms for ms, _ in stages.values())
    stats = (
        *(
            StageStats(name, "other", ms / total, ms, mean_ms=ms, cpu_ratio=ratio)
            for name, (ms, ratio) in stages.items()
        ),
        StageStats("other", "other", 0.0, 0.0),
    )
    return Profile(
        pipeline="planned",
        mode="offline",
        samples=40,
        throughput_rps=1000.0 * batch / total,
        latency_ms=LatencyStats(total, total, total, total, total),
        stages=stats,
        machine=Machine(cpu="test cpu", cores=2),
        stage_ms=tuple((*(ms for ms, _ in stages.values()), 0.0) for _ in range(40)),
        workload={"name": "run-sample"},
    )
