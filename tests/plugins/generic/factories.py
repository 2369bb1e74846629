"""Importable factories for the process-pool tests (spawned workers import them)."""

from __future__ import annotations

from pipetune.core.kernel.model import Pipeline, Stage


def square(x: int) -> int:
    total = 0
    for _ in range(2000):  # pure-Python work: holds the GIL
        total += x
    return x * x


def build_stage() -> Stage:
    return Stage("square", square, kind="preprocess", meta={"factory": __name__ + ":build_stage"})


def build_pipeline() -> Pipeline:
    return Pipeline("squares", (build_stage(), Stage("neg", lambda v: -v)))
