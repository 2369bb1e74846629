"""What the scale benchmarks share: jobs on a TARGET file, input files, reading outputs."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from pipetune.core.kernel.model import Pipeline
from pipetune.scale.job import JobSpec

HERE = Path(__file__).resolve().parent


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder for a part's inputs and outputs, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def job_for(
    module: str,
    attribute: str,
    pipeline: str,
    stages: Sequence[str],
    *,
    recipe: Path | None = None,
) -> JobSpec:
    return JobSpec(
        factory=f"{HERE / module}:{attribute}",
        pipeline=pipeline,
        stages=tuple(stages),
        recipe=str(recipe) if recipe else None,
        artifacts=str(recipe.parent) if recipe else None,
        sys_path=(str(HERE.parents[1] / "src"), str(HERE)),
        threads=1,
    )


def driver_pipeline(job: JobSpec) -> Pipeline:
    """The pipeline as the CLI's driver builds it, with this process's own threads."""
    from pipetune.scale.job import load_pipeline

    return load_pipeline(job)


def write_inputs(rows: Sequence[dict[str, Any]], folder: Path, files: int = 1) -> list[str]:
    """``rows`` as ``files`` JSONL files (round robin); returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(files):
        path = folder / f"part-{index:03d}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows[index::files]))
        paths.append(str(path))
    return paths


def read_outputs(path: Path) -> tuple[dict[Any, Any], int]:
    """Outputs by id, and how many ids were written more than once."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    counts = Counter(row["id"] for row in rows)
    return {row["id"]: row["output"] for row in rows}, sum(1 for c in counts.values() if c > 1)


class Clock:
    """A progress callback that timestamps rows: the job's steady rate, without start-up."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.marks: list[tuple[float, int]] = []
        self.done = 0

    def __call__(self, count: int) -> None:
        self.done += count
        self.marks.append((time.perf_counter(), self.done))

    def first_row_s(self) -> float | None:
        return self.marks[0][0] - self.started if self.marks else None

    def steady_rows_per_s(self) -> float | None:
        """Rows per second from the first rows written to the last."""
        if len(self.marks) < 2:
            return None
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def exactly_once(outputs: dict[Any, Any], repeats: int, expected: Sequence[Any]) -> dict[str, Any]:
    missing = sorted(set(expected) - set(outputs))
    return {
        "expected": len(expected),
        "present": len(set(outputs) & set(expected)),
        "missing": len(missing),
        "written_twice": repeats,
        "every_input_exactly_once": not missing and repeats == 0,
    }


Log = Callable[[str], None]
