"""Fixed log-spaced latency histograms: cheap to record, exact to merge, easy to compare.

Every histogram in pipetune uses the same buckets, so histograms from different threads,
processes, exports and bench runs add up and compare bucket for bucket:

* values are durations in **nanoseconds** (``time.perf_counter_ns`` differences);
* bucket 0 holds 0 ns; bucket ``i`` (1 <= i <= 264) holds
  ``[10^((i-1)/24), 10^(i/24))`` ns: 24 buckets per decade from 1 ns to 100 s, each
  10^(1/24) = 1.10 times wider than the one before (a bucket is about 10 % wide);
* the last bucket (265) holds everything from 100 s up.

Recording is one ``math.log10`` and a list increment (:func:`bucket_of`); there is no lock:
each thread records into its own counts (see :mod:`pipetune.monitor.core`) and readers add
the threads' counts up, so a reader may see a count that is one request stale, never a
torn or lost one.

Quantiles from binned data assume the values inside a bucket are spread log-uniformly
(they are interpolated geometrically between the bucket's edges), so a quantile is off by
at most one bucket width (10 %) and typically by much less; two histograms binned the same
way are compared with that resolution in mind (:mod:`pipetune.monitor.compare`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError

#: Buckets per decade of nanoseconds.
PER_DECADE = 24
#: Decades covered by regular buckets: 1 ns .. 10^11 ns (100 s).
DECADES = 11
#: Index of the last regular bucket; ``OVERFLOW`` holds everything above 100 s.
LAST_REGULAR = PER_DECADE * DECADES
OVERFLOW = LAST_REGULAR + 1
#: Number of buckets (0 ns, the regular ones, overflow).
BUCKETS = OVERFLOW + 1
#: Identifies the bucket layout in exports; a file with another layout is refused.
SCHEME = {"scheme": "log10", "per_decade": PER_DECADE, "unit": "ns", "buckets": BUCKETS}

_log10 = math.log10


def bucket_of(ns: int) -> int:
    """The bucket index of a duration in nanoseconds."""
    if ns < 1:
        return 0
    index = int(_log10(ns) * PER_DECADE) + 1
    return index if index < OVERFLOW else OVERFLOW


def lower_edge_ns(index: int) -> float:
    """The smallest value bucket ``index`` holds, in nanoseconds."""
    if index <= 0:
        return 0.0
    return 10.0 ** ((index - 1) / PER_DECADE)


def upper_edge_ns(index: int) -> float:
    """The value above bucket ``index`` (exclusive), in nanoseconds; ``inf`` for overflow."""
    if index <= 0:
        return 1.0
    if index >= OVERFLOW:
        return math.inf
    return 10.0 ** (index / PER_DECADE)


#: Bucket edges as arrays, for vectorized quantiles.
_LOWER = np.array([lower_edge_ns(i) for i in range(BUCKETS)])
_UPPER = np.array([upper_edge_ns(i) for i in range(BUCKETS)])
_UPPER[OVERFLOW] = _LOWER[OVERFLOW]  # overflow: report its lower edge, never inf


def empty_counts() -> list[int]:
    return [0] * BUCKETS


@dataclass(frozen=True, eq=False)
class Histogram:
    """An immutable latency histogram on the shared buckets.

    ``counts[i]`` observations fell in bucket ``i``; ``sum_ns`` is their exact sum (for the
    mean and for Prometheus ``_sum``).
    """

    counts: tuple[int, ...]
    sum_ns: int = 0

    def __post_init__(self) -> None:
        counts = tuple(int(c) for c in self.counts)
        if len(counts) != BUCKETS:
            raise ConfigError(f"a histogram needs {BUCKETS} buckets, got {len(counts)}")
        if any(c < 0 for c in counts):
            raise ConfigError("histogram counts must be non-negative")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "sum_ns", int(self.sum_ns))

    # -- building ------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> Histogram:
        return cls(tuple(empty_counts()), 0)

    @classmethod
    def from_ns(cls, values_ns: Iterable[int | float]) -> Histogram:
        counts = empty_counts()
        total = 0
        for value in values_ns:
            ns = int(value)
            counts[bucket_of(ns)] += 1
            total += ns
        return cls(tuple(counts), total)

    @classmethod
    def from_seconds(cls, values_s: Iterable[float]) -> Histogram:
        return cls.from_ns(round(v * 1e9) for v in values_s)

    @classmethod
    def from_ms(cls, values_ms: Iterable[float]) -> Histogram:
        return cls.from_ns(round(v * 1e6) for v in values_ms)

    @classmethod
    def merged(cls, parts: Iterable[Histogram | tuple[Sequence[int], int]]) -> Histogram:
        counts = np.zeros(BUCKETS, dtype=np.int64)
        total = 0
        for part in parts:
            if isinstance(part, Histogram):
                counts += np.asarray(part.counts, dtype=np.int64)
                total += part.sum_ns
            else:
                counts += np.asarray(part[0], dtype=np.int64)
                total += int(part[1])
        return cls(tuple(int(c) for c in counts), total)

    # -- reading -------------------------------------------------------------------------
    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def mean_ms(self) -> float:
        n = self.count
        return self.sum_ns / n / 1e6 if n else 0.0

    def array(self) -> np.ndarray:
        return np.asarray(self.counts, dtype=np.int64)

    def quantile_ms(self, q: float) -> float:
        """The ``q`` quantile (0 < q <= 1) in milliseconds, interpolated geometrically
        inside its bucket; 0.0 for an empty histogram."""
        if self.count == 0:
            return 0.0
        return float(quantiles_ns(self.array()[None, :], [q])[0, 0] / 1e6)

    def percentiles_ms(self) -> dict[str, float]:
        """P50/P95/P99/max/mean in milliseconds (``max``: the top of the highest bucket
        with an observation, the histogram's bound on the true maximum)."""
        if self.count == 0:
            return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
        values = quantiles_ns(self.array()[None, :], [0.5, 0.95, 0.99])[0] / 1e6
        top = max(i for i, c in enumerate(self.counts) if c)
        return {
            "p50": float(values[0]),
            "p95": float(values[1]),
            "p99": float(values[2]),
            "max": float(_UPPER[top] / 1e6),
            "mean": self.mean_ms,
        }

    def cumulative(self, edges_index: Sequence[int]) -> list[int]:
        """Cumulative counts at the upper edges of the given bucket indexes (Prometheus
        ``le`` buckets): observations in buckets ``0..index``."""
        running = np.cumsum(self.array())
        return [int(running[i]) for i in edges_index]

    # -- (de)serializing -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Sparse: ``{"counts": {index: count}, "sum_ns": int, "count": int}``."""
        return {
            "count": self.count,
            "sum_ns": self.sum_ns,
            "counts": {str(i): c for i, c in enumerate(self.counts) if c},
        }

    @classmethod
    def from_dict(cls, data: Any, where: str = "histogram") -> Histogram:
        if not isinstance(data, Mapping) or not isinstance(data.get("counts"), Mapping):
            raise ConfigError(f"{where}: expected an object with 'counts' (bucket -> count)")
        counts = empty_counts()
        for key, value in data["counts"].items():
            try:
                index, count = int(key), int(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: bucket {key!r} -> {value!r} is not a number") from None
            if not 0 <= index < BUCKETS or count < 0:
                raise ConfigError(
                    f"{where}: bucket {index} (count {count}) is outside 0..{BUCKETS - 1} "
                    "or negative"
                )
            counts[index] += count
        try:
            total = int(data.get("sum_ns", 0))
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: sum_ns must be a whole number of nanoseconds") from None
        declared = data.get("count")
        if declared is not None and int(declared) != sum(counts):
            raise ConfigError(
                f"{where}: 'count' says {declared} but the buckets hold {sum(counts)}: "
                "the file is damaged"
            )
        return cls(tuple(counts), total)


def quantiles_ns(counts: np.ndarray, qs: Sequence[float]) -> np.ndarray:
    """Quantiles of many histograms at once: ``counts`` has shape (rows, BUCKETS); returns
    (rows, len(qs)) values in nanoseconds, interpolated geometrically inside the bucket
    where the cumulative count reaches ``q * n``. Rows with no observations give 0."""
    counts = np.asarray(counts, dtype=np.float64)
    totals = counts.sum(axis=1)
    running = np.cumsum(counts, axis=1)
    out = np.zeros((counts.shape[0], len(qs)))
    rows = np.arange(counts.shape[0])
    for column, q in enumerate(qs):
        target = np.clip(q, 1e-12, 1.0) * totals
        index = np.argmax(running >= target[:, None] - 1e-9, axis=1)
        before = running[rows, index] - counts[rows, index]
        inside = counts[rows, index]
        fraction = np.where(inside > 0, (target - before) / np.maximum(inside, 1), 0.5)
        fraction = np.clip(fraction, 0.0, 1.0)
        low, high = _LOWER[index], _UPPER[index]
        geometric = low * np.power(np.where(low > 0, high / np.maximum(low, 1e-300), 1.0), fraction)
        value = np.where(low > 0, geometric, high * fraction)  # bucket 0: linear in [0, 1)
        out[:, column] = np.where(totals > 0, value, 0.0)
    return out
