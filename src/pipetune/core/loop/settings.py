"""The optimize loop's budgets and knobs: :class:`LoopSettings`.

They are checked when made (an unknown ``on_error``, a negative budget), so a run never
starts on settings it cannot honour. The public entry (:mod:`.optimize`) and the run
itself (:mod:`.run`) both read them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.measure.validator import ValidatorSettings


@dataclass(frozen=True)
class LoopSettings:
    """Budgets and knobs of the loop.

    Args:
        max_trials: stop after this many trials (accepted or not).
        time_budget_s: start no new trial after this many seconds.
        tune_fraction: the share of the workload used for tuning (a calibration split of
            its own is carved out of it); the rest is held out for validation.
        validator: rounds, confidence, timeouts.
        final_compare: re-measure the final pipeline against the original side by side.
        detailed_profiles: give the baseline and the final pipeline every profiler pass
            (concurrency sweep, hot functions, layers, memory: for the report); profiles
            between trials always take only what planning needs.
        profile_options: extra keyword arguments for every
            :func:`~pipetune.core.measure.profiler.profile` call (``sweep_budget_s``,
            ``threads``...).
        stage_timeout_s: the longest one input may take through a pipeline in any run of
            the loop (per input, never a budget for a whole pass): an input over it is
            stopped with an error naming the stage and the input (a hung stage). The
            validator bounds candidates more tightly, from the measured time per input.
        on_error: ``stop`` (an input the original fails on is an error) or ``skip`` (such
            inputs are set aside before anything is measured, left out of both sides, and
            listed in the report: :mod:`pipetune.core.loop.screening`).
    """

    max_trials: int | None = None
    time_budget_s: float | None = None
    tune_fraction: float = 0.4
    validator: ValidatorSettings = field(default_factory=ValidatorSettings)
    final_compare: bool = True
    detailed_profiles: bool = True
    profile_options: Mapping[str, Any] = field(default_factory=dict)
    stage_timeout_s: float | None = 600.0
    on_error: str = "stop"

    def __post_init__(self) -> None:
        if self.on_error not in ("stop", "skip"):
            raise ConfigError(f"on_error must be 'stop' or 'skip', not {self.on_error!r}")
        if self.max_trials is not None and self.max_trials < 0:
            raise ConfigError("max_trials must be >= 0")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("time_budget_s must be positive")
