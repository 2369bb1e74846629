"""The driver's side of a job: results arrive, are written once each, and are counted.

Both engines hand every finished row to one :class:`Collector`. It writes outputs and
errors as they come, and it is where "exactly once" is checked: a second row with a key
already written is either the same input delivered twice (same source: counted as
``redelivered`` and not written again) or a duplicate id in the input (another source:
written to the errors file, naming where the id was first seen). Neither is silent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from pipetune.scale.rows import INPUT_STAGE, InputRow
from pipetune.scale.sinks import ErrorSink, OutputSink, error_record


@dataclass
class JobSummary:
    """What a job did: counts, time, per-stage cost, where the results are."""

    engine: str
    pipeline: str
    rows: int = 0
    outputs: int = 0
    errors: int = 0
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    duplicates: int = 0
    redelivered: int = 0
    wall_s: float = 0.0
    #: Seconds from the job's start to its first written row (workers starting, models
    #: loading, the first batch): a job's fixed cost, beside its steady rate.
    first_row_s: float | None = None
    stage_ms_per_row: dict[str, float] = field(default_factory=dict)
    output: str = ""
    errors_path: str | None = None
    stopped: bool = False
    plan: dict[str, Any] | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": self.rows_per_s}

    def lines(self) -> list[str]:
        state = "interrupted" if self.stopped else "done"
        out = [
            f"{state}: {self.rows:,} rows in {self.wall_s:.1f} s ({self.rows_per_s:,.1f} rows/s) "
            f"on {self.engine}"
            + (f"; first rows after {self.first_row_s:.1f} s" if self.first_row_s else ""),
            f"  outputs: {self.outputs:,} -> {self.output}",
        ]
        if self.errors:
            stages = ", ".join(f"{k} {v:,}" for k, v in sorted(self.errors_by_stage.items()))
            out.append(f"  errors: {self.errors:,} ({stages}) -> {self.errors_path}")
        else:
            out.append("  errors: none")
        if self.redelivered:
            out.append(f"  rows delivered twice by the engine (written once): {self.redelivered}")
        if self.stage_ms_per_row:
            cost = ", ".join(f"{k} {v:.2f}" for k, v in self.stage_ms_per_row.items())
            out.append(f"  stage time, ms per row (worker time, summed over workers): {cost}")
        return out


class Collector:
    """Writes what the engines finish; thread-safe (the local engine reports from worker
    threads)."""

    def __init__(
        self,
        output: OutputSink,
        errors: ErrorSink,
        stages: Sequence[str],
        progress: Callable[[int], None] | None = None,
    ):
        self.output = output
        self.errors = errors
        self.stages = tuple(stages)
        self.progress = progress
        self.rows = 0
        self.malformed = 0
        self.duplicates = 0
        self.redelivered = 0
        self.stage_s = dict.fromkeys(self.stages, 0.0)
        self._seen: dict[str, str] = {}
        self._duplicates: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.started = time.perf_counter()
        self.first_row_at: float | None = None

    # -- arriving rows -----------------------------------------------------------------------
    def add(
        self,
        finished: Sequence[tuple[str, str, Any]],
        failed: Sequence[Mapping[str, Any]] = (),
        malformed: Sequence[InputRow] = (),
    ) -> None:
        """Rows that finished (``key, source, output``), failed (error records with
        ``key`` and ``source``), or could not be read."""
        with self._lock:
            outputs = [row for row in finished if self._claim(row[0], row[1])]
            records: list[dict[str, Any]] = []
            for record in failed:
                if self._claim(record["key"], record["source"]):
                    records.append(_record(record))
            for row in malformed:
                if self._claim(row.key, row.source):
                    records.append(
                        error_record(
                            row.key,
                            row.source,
                            INPUT_STAGE,
                            "MalformedRow",
                            row.error or "",
                            row.raw,
                        )
                    )
                    self.malformed += 1
            records.extend(self._duplicates)
            self._duplicates.clear()
            records.extend(self.output.write(outputs))
            self.errors.write(records)
            counted = len(outputs) + len(records)
            self.rows += counted
            if counted and self.first_row_at is None:
                self.first_row_at = time.perf_counter()
        if self.progress is not None and counted:
            self.progress(counted)

    def add_stage_seconds(self, seconds: Mapping[str, float]) -> None:
        with self._lock:
            for name, value in seconds.items():
                if name in self.stage_s:
                    self.stage_s[name] += float(value)

    def _claim(self, key: str, source: str) -> bool:
        """True the first time ``key`` is seen; see the module docstring otherwise."""
        first = self._seen.get(key)
        if first is None:
            self._seen[key] = source
            return True
        if first == source:
            self.redelivered += 1
            return False
        self.duplicates += 1
        self._duplicates.append(
            error_record(
                key,
                source,
                INPUT_STAGE,
                "DuplicateId",
                f"the id of this row was already used by {first}",
            )
        )
        return False

    # -- the end ---------------------------------------------------------------------------------
    def close(self) -> None:
        self.output.close()
        self.errors.close()

    def summary(self, engine: str, pipeline: str, **extra: Any) -> JobSummary:
        per_row = {
            name: 1000.0 * seconds / self.rows if self.rows else 0.0
            for name, seconds in self.stage_s.items()
        }
        return JobSummary(
            engine=engine,
            pipeline=pipeline,
            rows=self.rows,
            outputs=self.output.count,
            errors=self.errors.count,
            errors_by_stage=dict(self.errors.by_stage),
            malformed=self.malformed,
            duplicates=self.duplicates,
            redelivered=self.redelivered,
            stage_ms_per_row=per_row,
            output=str(self.output.path),
            errors_path=str(self.errors.path) if self.errors.count else None,
            first_row_s=None if self.first_row_at is None else self.first_row_at - self.started,
            **extra,
        )


def _record(record: Mapping[str, Any]) -> dict[str, Any]:
    return error_record(
        record["key"],
        record["source"],
        record["stage"],
        record.get("exception") or "Exception",
        record.get("error") or "",
        record.get("raw"),
    )
