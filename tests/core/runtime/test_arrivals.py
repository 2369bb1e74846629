"""Arrival schedules of the open-loop modes: Poisson draws, traces, the request count."""

from __future__ import annotations

import numpy as np
import pytest

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Trace
from pipetune.core.runtime.arrivals import arrival_schedule, poisson_arrivals, schedule_requests


def test_poisson_arrivals_are_seeded_and_start_at_zero() -> None:
    a = poisson_arrivals(1000, rate=50, seed=3)
    assert a[0] == 0 and (np.diff(a) >= 0).all()
    assert np.array_equal(a, poisson_arrivals(1000, rate=50, seed=3))
    assert not np.array_equal(a, poisson_arrivals(1000, rate=50, seed=4))
    # The mean gap of 1,000 exponential draws is within 15 % of 1/rate.
    assert abs(np.diff(a).mean() - 1 / 50) < 0.15 / 50


def test_schedule_prefers_a_trace_and_needs_one_of_them() -> None:
    trace = Trace((1.0, 1.5, 3.0))
    offsets, source, offered = arrival_schedule(3, rate=100, trace=trace)
    assert source == "trace" and list(offsets) == [0.0, 0.5, 2.0] and offered == 1.0
    with pytest.raises(ConfigError, match="rate"):
        arrival_schedule(3)


def test_requests_default_to_the_items_or_the_trace() -> None:
    assert len(schedule_requests(4, trace=None, rate=10.0, seed=0, requests=None)[0]) == 4
    trace = Trace((0.0, 0.5, 1.0))
    assert len(schedule_requests(9, trace=trace, rate=None, seed=0, requests=None)[0]) == 3
    assert len(schedule_requests(9, trace=None, rate=10.0, seed=0, requests=2)[0]) == 2
    with pytest.raises(ConfigError, match="requests must be >= 1"):
        schedule_requests(4, trace=None, rate=10.0, seed=0, requests=0)
