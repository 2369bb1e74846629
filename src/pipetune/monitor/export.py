"""The monitor's export file: what ``pipetune monitor show`` and ``pipetune compare`` read.

One JSON object (``"format": "pipetune-monitor"``, ``"version": 1``)::

    {"format": "pipetune-monitor", "version": 1, "pipeline": "document-classifier",
     "stages": ["sections", "tokenize", "embed", "classify"],
     "buckets": {"scheme": "log10", "per_decade": 24, "unit": "ns", "buckets": 266},
     "started": "2025-01-01T10:00:00+00:00", "exported": "...", "window_s": 3600.0,
     "active_s": 3598.2, "requests": {"ok": 120000, "failed": 12},
     "throughput_rps": 33.3, "active_rps": 33.4,
     "latency": {"count": 120000, "sum_ns": ..., "counts": {"146": 12, ...}},
     "stage_latency": {"embed": {...}, ...},
     "errors": {"embed": {"RuntimeError": 12}},
     "summary": {"latency_ms": {"p50": .., "p95": .., "p99": .., "max": .., "mean": ..},
                 "stages": {"embed": {"p50": ..}}},
     "trace": {"arrivals_s": [...], "sizes": [...], "pipeline": "document-classifier"},
     "trace_sampling": {"share": 0.05, "block": 100, "sampled": 6000, "limit": 100000},
     "machine": {"fingerprint": "...", "cpu": "...", "cores": 8},
     "recipe": null, "pipetune_version": "0.1.0"}

Histograms are sparse (bucket index -> count) on the shared buckets of
:mod:`pipetune.monitor.histogram`; ``summary`` is derived from them for readers that do
not want to decode buckets. ``trace`` is a :class:`pipetune.core.kernel.model.Trace` (so
``pipetune profile --trace EXPORT.json`` replays it); ``null`` when no requests were
sampled. Latency histograms hold the requests that succeeded; failures are counted in
``requests.failed`` and, per stage and exception type, in ``errors``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune.core.kernel.atomic import write_text_atomic
from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Trace
from pipetune.monitor.histogram import SCHEME, Histogram

FORMAT = "pipetune-monitor"
VERSION = 1


@dataclass(frozen=True)
class MonitorExport:
    """A snapshot of a monitor: histograms, counts, errors, the sampled trace."""

    pipeline: str
    stages: tuple[str, ...]
    latency: Histogram
    stage_latency: Mapping[str, Histogram]
    ok: int
    failed: int
    errors: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    started: str = ""
    exported: str = ""
    window_s: float = 0.0
    active_s: float = 0.0
    trace: Trace | None = None
    trace_sampling: Mapping[str, Any] = field(default_factory=dict)
    machine: Mapping[str, Any] = field(default_factory=dict)
    recipe: Mapping[str, Any] | None = None
    pipetune_version: str = ""
    source: str = ""  # the file it was read from (not written)

    @property
    def requests(self) -> int:
        return self.ok + self.failed

    @property
    def throughput_rps(self) -> float:
        """Successful requests per second over the monitored window."""
        return self.ok / self.window_s if self.window_s > 0 else 0.0

    @property
    def active_rps(self) -> float:
        """Successful requests per second from the first request to the last."""
        return self.ok / self.active_s if self.active_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "latency_ms": self.latency.percentiles_ms(),
            "stages": {name: h.percentiles_ms() for name, h in self.stage_latency.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "pipeline": self.pipeline,
            "stages": list(self.stages),
            "buckets": dict(SCHEME),
            "started": self.started,
            "exported": self.exported,
            "window_s": self.window_s,
            "active_s": self.active_s,
            "requests": {"ok": self.ok, "failed": self.failed},
            "throughput_rps": self.throughput_rps,
            "active_rps": self.active_rps,
            "latency": self.latency.to_dict(),
            "stage_latency": {name: h.to_dict() for name, h in self.stage_latency.items()},
            "errors": {stage: dict(kinds) for stage, kinds in self.errors.items()},
            "summary": self.summary(),
            "trace": None if self.trace is None else self.trace.to_dict(),
            "trace_sampling": dict(self.trace_sampling),
            "machine": dict(self.machine),
            "recipe": None if self.recipe is None else dict(self.recipe),
            "pipetune_version": self.pipetune_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "monitor export") -> MonitorExport:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ConfigError(
                f'{where} is not a pipetune monitor export (no "format": "{FORMAT}"); '
                "write one with Monitor.export(path)"
            )
        version = data.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ConfigError(
                f"{where}: monitor export version {version!r} is not one this pipetune reads "
                f"(up to {VERSION}); upgrade pipetune"
            )
        buckets = data.get("buckets")
        if not isinstance(buckets, Mapping) or any(buckets.get(k) != v for k, v in SCHEME.items()):
            raise ConfigError(
                f"{where}: histogram buckets {buckets!r} differ from this pipetune's "
                f"({SCHEME}); histograms with other buckets cannot be compared bucket by bucket"
            )
        try:
            pipeline = str(data["pipeline"])
            stages = tuple(str(s) for s in data.get("stages", ()))
            requests = data.get("requests") or {}
            ok, failed = int(requests.get("ok", 0)), int(requests.get("failed", 0))
            window_s, active_s = float(data.get("window_s", 0)), float(data.get("active_s", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: malformed monitor export ({exc})") from None
        if ok < 0 or failed < 0 or not math.isfinite(window_s) or window_s < 0:
            raise ConfigError(f"{where}: negative counts or window in a monitor export")
        latency = Histogram.from_dict(data.get("latency"), f"{where}: latency")
        stage_data = data.get("stage_latency") or {}
        if not isinstance(stage_data, Mapping):
            raise ConfigError(f"{where}: stage_latency must map stage names to histograms")
        stage_latency = {
            str(name): Histogram.from_dict(h, f"{where}: stage {name!r}")
            for name, h in stage_data.items()
        }
        errors_data = data.get("errors") or {}
        if not isinstance(errors_data, Mapping) or not all(
            isinstance(v, Mapping) for v in errors_data.values()
        ):
            raise ConfigError(f"{where}: errors must map stage -> exception type -> count")
        errors = {
            str(stage): {str(k): int(v) for k, v in kinds.items()}
            for stage, kinds in errors_data.items()
        }
        trace = None
        if data.get("trace") is not None:
            try:
                trace = Trace.from_dict(data["trace"])
            except ConfigError as exc:
                raise ConfigError(f"{where}: its trace is malformed: {exc}") from None
        return cls(
            pipeline=pipeline,
            stages=stages,
            latency=latency,
            stage_latency=stage_latency,
            ok=ok,
            failed=failed,
            errors=errors,
            started=str(data.get("started", "")),
            exported=str(data.get("exported", "")),
            window_s=window_s,
            active_s=active_s,
            trace=trace,
            trace_sampling=dict(data.get("trace_sampling") or {}),
            machine=dict(data.get("machine") or {}),
            recipe=data.get("recipe"),
            pipetune_version=str(data.get("pipetune_version", "")),
            source=where,
        )


def is_export(data: Any) -> bool:
    return isinstance(data, Mapping) and data.get("format") == FORMAT


def read_json(path: str | Path, what: str) -> Any:
    """Parse a JSON file, with errors that name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a folder, not a file") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not a UTF-8 text file") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} {path} is not valid JSON: {exc}") from None


def load_export(path: str | Path, *, require_samples: bool = False) -> MonitorExport:
    """Read a monitor export. ``require_samples``: refuse one with no successful request
    (nothing to compute a percentile from)."""
    data = read_json(path, "monitor export")
    export = MonitorExport.from_dict(data, where=str(path))
    if require_samples and export.latency.count == 0:
        raise ConfigError(
            f"monitor export {path} has no samples: {export.ok} successful requests recorded "
            f"({export.failed} failed) between {export.started or '?'} and "
            f"{export.exported or '?'}; export after the monitored pipeline has served traffic"
        )
    return export


def write_json_atomic(path: str | Path, data: Mapping[str, Any]) -> Path:
    """Write JSON to ``path`` through a temporary file and a rename, so a reader (or a
    crash) never sees half a file."""
    return write_text_atomic(path, json.dumps(data, separators=(",", ":")))
