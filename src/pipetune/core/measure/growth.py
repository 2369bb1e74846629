"""The growth figures a capacity plan is made for (requests per second now, at peak, and in
12 and 24 months), checked before anything is measured: each refused with a message naming
the figure when it is negative, not a number, or inconsistent with the others (a peak below
now, 24 months below 12 months, nothing but zeros). ``pipetune capacity`` and
``pipetune serve`` both check them here."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Growth

GROWTH_FIELDS = (
    ("now_rps", "now"),
    ("peak_rps", "at peak"),
    ("in_12_months_rps", "in 12 months"),
    ("in_24_months_rps", "in 24 months"),
)


def check_growth(values: Mapping[str, Any] | Growth | None) -> Growth:
    """Growth figures, refused with a message naming the figure when negative, not a
    number, or inconsistent (peak below now, 24 months below 12 months, nothing given)."""
    if values is None:
        raise ConfigError(
            "no growth figures: give --now-rps (and --peak-rps, --in-12-months-rps, "
            "--in-24-months-rps) or set growth in the requirements "
            "([tool.pipetune.requirements.growth] or Requirements(growth=...))"
        )
    data = asdict(values) if isinstance(values, Growth) else dict(values)
    unknown = sorted(set(data) - {name for name, _ in GROWTH_FIELDS})
    if unknown:
        raise ConfigError(f"unknown growth figure(s): {', '.join(unknown)}")
    for name, label in GROWTH_FIELDS:
        _check_rate(label, data.get(name))
    if data.get("now_rps") is None:
        raise ConfigError("growth: the current rate (now_rps, --now-rps) is required")
    _check_consistent(data)
    if not any(data.get(name) for name, _ in GROWTH_FIELDS):
        raise ConfigError("growth: every rate is 0 requests/s; there is nothing to plan for")
    fields: dict[str, Any] = {name: data.get(name) for name, _ in GROWTH_FIELDS}
    return Growth(**fields)


def _check_rate(label: str, value: Any) -> None:
    """One figure, when given: a finite number >= 0."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"growth: the rate {label} must be a number, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(
            f"growth: the rate {label} is {value:g} requests/s; growth figures must be "
            "finite and >= 0"
        )


def _check_consistent(data: Mapping[str, Any]) -> None:
    """The figures together: the peak at least the current rate, 24 months at least 12."""
    now, peak = data["now_rps"], data.get("peak_rps")
    in12, in24 = data.get("in_12_months_rps"), data.get("in_24_months_rps")
    if peak is not None and peak < now:
        raise ConfigError(
            f"growth figures are inconsistent: the peak ({peak:g} rps) is below the current "
            f"rate ({now:g} rps); the peak is the busiest rate today"
        )
    if in12 is not None and in24 is not None and in24 < in12:
        raise ConfigError(
            f"growth figures are inconsistent: {in24:g} rps in 24 months is below {in12:g} rps "
            "in 12 months; plan a shrinking service one horizon at a time (give only "
            "--in-12-months-rps or only --in-24-months-rps)"
        )
