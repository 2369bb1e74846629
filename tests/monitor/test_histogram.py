"""The shared log-spaced buckets: edges, quantiles from binned data, merging, files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.monitor.histogram import (
    BUCKETS,
    OVERFLOW,
    PER_DECADE,
    Histogram,
    bucket_of,
    lower_edge_ns,
    upper_edge_ns,
)


def test_bucket_edges_are_log_spaced_and_contain_their_values() -> None:
    assert bucket_of(0) == 0
    assert bucket_of(1) == 1
    for ns in (1, 7, 999, 1000, 1001, 123_456, 10**9, 10**10 + 3):
        index = bucket_of(ns)
        assert lower_edge_ns(index) <= ns * (1 + 1e-12)
        assert ns < upper_edge_ns(index) * (1 + 1e-12)
    # 24 buckets per decade: a decade later is 24 buckets higher
    assert bucket_of(10**6) - bucket_of(10**5) == PER_DECADE
    ratio = upper_edge_ns(100) / lower_edge_ns(100)
    assert ratio == pytest.approx(10 ** (1 / PER_DECADE))
    assert bucket_of(10**12) == OVERFLOW  # above 100 s
    assert upper_edge_ns(OVERFLOW) == math.inf


def test_quantiles_from_bins_are_within_a_bucket_of_the_exact_ones() -> None:
    rng = np.random.default_rng(1)
    values_ms = rng.lognormal(mean=np.log(5.0), sigma=0.6, size=20_000)
    histogram = Histogram.from_ms(values_ms)
    assert histogram.count == 20_000
    exact = np.percentile(values_ms, [50, 95, 99])
    binned = histogram.percentiles_ms()
    for value, (key, _) in zip(exact, (("p50", 0), ("p95", 0), ("p99", 0)), strict=True):
        # geometric interpolation: far better than the 10 % bucket width on smooth data
        assert binned[key] == pytest.approx(value, rel=0.02)
    assert binned["mean"] == pytest.approx(values_ms.mean(), rel=1e-6)  # exact sum kept
    assert binned["max"] >= values_ms.max()
    assert binned["max"] <= values_ms.max() * 10 ** (1 / PER_DECADE) * 1.0001


def test_merge_adds_bucket_for_bucket() -> None:
    a = Histogram.from_ms([1.0, 2.0, 3.0])
    b = Histogram.from_ms([2.0, 50.0])
    merged = Histogram.merged([a, b])
    assert merged.count == 5
    assert merged.sum_ns == a.sum_ns + b.sum_ns
    assert merged.counts == tuple(x + y for x, y in zip(a.counts, b.counts, strict=True))


def test_round_trip_is_sparse_and_exact() -> None:
    histogram = Histogram.from_ms([0.5, 0.5, 12.0, 3000.0])
    data = histogram.to_dict()
    assert data["count"] == 4 and len(data["counts"]) == 3
    again = Histogram.from_dict(data)
    assert again.counts == histogram.counts and again.sum_ns == histogram.sum_ns


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nope": 1}, "expected an object"),
        ({"counts": {"x": 1}}, "not a number"),
        ({"counts": {str(BUCKETS + 5): 1}}, "outside"),
        ({"counts": {"3": -1}}, "negative"),
        ({"counts": {"3": 2}, "count": 7}, "damaged"),
    ],
)
def test_a_damaged_histogram_is_refused_with_the_reason(data: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Histogram.from_dict(data)


def test_an_empty_histogram_has_zero_percentiles() -> None:
    assert Histogram.empty().percentiles_ms()["p99"] == 0.0
    assert Histogram.empty().quantile_ms(0.5) == 0.0
