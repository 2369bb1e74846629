"""The optimize loop's record of a run in the run store.

It owns opening the store (or none: ``store=False``), starting the run, writing each
profile, trial and recipe the moment it exists, and finishing the run with its summary and
report. A write that fails mid-run (the store locked for longer than its timeout, the disk
full) is said once in the run's warnings and recording stops there: the run itself, its
report and its recipe are not lost because the record could not be written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipetune.core.kernel.errors import StoreError
from pipetune.core.kernel.results import Profile, Recipe, Trial
from pipetune.core.loop.store import RunStore
from pipetune.core.report.model import Report


def open_store(store: RunStore | str | Path | bool | None) -> tuple[RunStore | None, bool]:
    """The run store ``optimize(store=...)`` names, and whether the loop opened it (and so
    closes it): ``False`` is none, a :class:`RunStore` is the caller's, anything else a
    folder (``None``/``True``: the default one)."""
    if store is False:
        return None, False
    if isinstance(store, RunStore):
        return store, False
    folder = None if store is None or store is True else store
    return RunStore(folder), True


class RunRecorder:
    """Writes one run to ``store`` (``None``: records nothing).

    ``warnings`` is the run's list of warnings (a failed write adds one), ``log`` its
    progress messages. :attr:`run_id` stays set after a failed write: the report names
    the run all the same."""

    def __init__(self, store: RunStore | None, *, warnings: list[str], log: Callable[[str], None]):
        self.store = store
        self.run_id: str | None = None
        self._warnings = warnings
        self._log = log

    def start(
        self,
        pipeline: str,
        *,
        machine_fingerprint: str,
        target: str | None,
        requirements: Mapping[str, Any],
    ) -> None:
        """Start the run (a store that cannot be written now is an error, not a warning)."""
        if self.store is not None:
            self.run_id = self.store.start_run(
                pipeline,
                machine_fingerprint=machine_fingerprint,
                target=target,
                requirements=requirements,
            )

    def profile(self, label: str, profile: Profile) -> None:
        self._write("add_profile", label, profile)

    def trial(self, seq: int, trial: Trial) -> None:
        self._write("add_trial", seq, trial)

    def recipe(self, recipe: Recipe) -> None:
        self._write("add_recipe", recipe)

    def finish(
        self,
        status: str,
        *,
        report: Report | None,
        trials: int,
        accepted: int,
        metric: str,
    ) -> None:
        """Close the run with its status, a summary for ``pipetune history`` and the
        report (``None``: the run ended before it had one)."""
        if self.store is None or self.run_id is None:
            return
        report_data = None  # (the write below is guarded: a store error loses nothing)
        summary: dict[str, Any] = {"trials": trials}
        if report is not None:
            report_data = report.to_dict()
            summary.update(
                accepted=accepted,
                requirements_met=report.requirements_met,
                speedup=report_data["speedup"],
                metric=metric,
                stopped=report.stopped,
                baseline=report_data["baseline"],
                final=report_data["final"],
            )
        self._write("finish_run", status, summary=summary, report=report_data)

    def _write(self, method: str, *args: Any, **kwargs: Any) -> None:
        """Call ``store.<method>(run_id, ...)``; if it fails, say so and record no more."""
        if self.store is None or self.run_id is None:
            return
        try:
            getattr(self.store, method)(self.run_id, *args, **kwargs)
        except StoreError as exc:
            self._warnings.append(
                f"the run store could not be written ({exc}); the rest of this run is not "
                "recorded there, but the report and the recipe are produced as usual"
            )
            self._log(f"run store: {exc}")
            self.store = None
