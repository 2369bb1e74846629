"""A recorded arrival process (:class:`Trace`), replayed by a workload in online mode.

It owns the trace's checks (finite, increasing offsets; sizes one per arrival) and its JSON
round trip, so a trace recorded by the monitor or by hand loads with errors that say what
is wrong with it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import ConfigError, read_json_file


@dataclass(frozen=True)
class Trace:
    """A recorded arrival process: offsets in seconds from the first request.

    ``sizes`` optionally records each request's input size, ``pipeline`` the pipeline it
    was recorded on (a trace from another pipeline is refused).
    """

    arrivals_s: tuple[float, ...]
    sizes: tuple[int, ...] | None = None
    pipeline: str | None = None

    def __post_init__(self) -> None:
        arrivals = tuple(float(a) for a in self.arrivals_s)
        if not arrivals:
            raise ConfigError("a trace needs at least one arrival")
        if any(not math.isfinite(a) or a < 0 for a in arrivals):
            raise ConfigError("trace arrivals must be finite, non-negative offsets in seconds")
        if any(b < a for a, b in itertools.pairwise(arrivals)):
            raise ConfigError("trace arrivals must be in increasing order")
        object.__setattr__(self, "arrivals_s", arrivals)
        if self.sizes is not None:
            if len(self.sizes) != len(arrivals):
                raise ConfigError("a trace's sizes must match its arrivals one for one")
            object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))

    @property
    def rate(self) -> float:
        span = self.arrivals_s[-1] - self.arrivals_s[0]
        return (len(self.arrivals_s) - 1) / span if span > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        return {
            "arrivals_s": list(self.arrivals_s),
            "sizes": self.sizes and list(self.sizes),
            "pipeline": self.pipeline,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Trace:
        try:
            return cls(
                arrivals_s=tuple(data["arrivals_s"]),
                sizes=tuple(data["sizes"]) if data.get("sizes") is not None else None,
                pipeline=data.get("pipeline"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed trace: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        data = read_json_file(path, "trace")
        if not isinstance(data, Mapping):
            raise ConfigError(f"trace {path}: expected a JSON object with 'arrivals_s'")
        return cls.from_dict(data)
