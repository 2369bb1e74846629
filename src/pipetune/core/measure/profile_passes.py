"""The profiler's bounded passes after the timing pass: the GIL check, the concurrency
sweep, hot functions (cProfile), per-layer time (forward hooks), the Python heap per stage
(tracemalloc) and CPU<->GPU transfers (torch profiler). Each runs on its own, over a
bounded number of inputs, from cold state; a pass that fails is recorded with a warning
and never loses what the timing pass measured. The probes themselves live in
:mod:`pipetune.core.measure.probes` and :mod:`pipetune.core.measure.gpu`; this module
sequences them, reports progress, and records what each found. It is mixed into the
profiler's session, whose state it declares below."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from pipetune.core.kernel.errors import PipetuneError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.results import ConcurrencyPoint, Profile, StageStats
from pipetune.core.kernel.state import reset_state
from pipetune.core.measure import gpu as _gpu
from pipetune.core.measure import probes
from pipetune.core.measure.progress_units import ProgressUnits
from pipetune.core.runtime.observe import percentiles_ms
from pipetune.core.runtime.offline import RunResult, run_offline

#: Stages below this share of the time are not worth a GIL check.
GIL_CHECK_MIN_SHARE = 0.05
#: Stages slower than this per call skip the GIL check (it would take too long).
GIL_CHECK_MAX_CALL_S = 0.5
#: The most inputs one level of the concurrency sweep may queue (its time box ends it).
MAX_SWEEP_INPUTS = 200_000

_Found = TypeVar("_Found")


class ProfilePasses:
    """The bounded passes of one profile (see the module docstring). The profiler's
    session sets the state declared here; each pass adds its findings to ``extras`` and
    its record to ``passes``, and hints to ``notes`` or ``warnings``."""

    pipeline: Pipeline
    items: list[Any]
    o: dict[str, Any]  # the profile's keyword options
    mode: str
    levels: tuple[int, ...]
    cores: int
    cuda: bool
    units: ProgressUnits
    passes: dict[str, Any]
    notes: list[str]
    warnings: list[str]
    stopped: bool

    def _announce(self, text: str) -> None:
        if self.o["on_pass"] is not None:
            self.o["on_pass"](text)

    def _optional_passes(
        self,
        prof: Profile,
        runs: list[RunResult],
        stage_stats: list[StageStats],
        extras: dict[str, Any],
    ) -> None:
        for name, body in self._wanted_passes(prof, runs, stage_stats, extras):
            if not self._run_bounded(name, body):
                return

    def _wanted_passes(
        self,
        prof: Profile,
        runs: list[RunResult],
        stage_stats: list[StageStats],
        extras: dict[str, Any],
    ) -> list[tuple[str, Callable[[], None]]]:
        """The passes the options ask for, in order, each as a call."""
        passes: list[tuple[str, Callable[[], None]]] = []
        if self.o["gil_check"] and self.mode != "stream":
            passes.append(("gil", lambda: self._gil(runs, stage_stats)))
        if self.levels:
            passes.append(("sweep", lambda: self._sweep(prof, extras)))
        if self.o["hot_functions"]:
            passes.append(("hot_functions", lambda: self._hot(extras)))
        if self.o["layers"]:
            passes.append(("layers", lambda: self._layers(extras)))
        if self.o["memory"]:
            passes.append(("memory", lambda: self._heap(extras)))
        if self.cuda:
            passes.append(("transfers", lambda: self._transfers(extras)))
        return passes

    def _run_bounded(self, name: str, body: Callable[[], None]) -> bool:
        """Run one pass; a failure is recorded and warned about. False when Ctrl-C stopped
        it (the profile then stops)."""
        started = time.perf_counter()
        try:
            body()
        except KeyboardInterrupt:
            self.stopped = True
            self.passes.setdefault(name, {})["stopped"] = True
            return False
        except PipetuneError as exc:
            self.passes[name] = {"error": str(exc)}
            self.warnings.append(f"the {name} pass failed: {exc}")
        except Exception as exc:  # a probe must never lose the timing pass's results
            message = f"{type(exc).__name__}: {exc}"
            self.passes[name] = {"error": message}
            self.warnings.append(f"the {name} pass failed: {message}")
        entry = self.passes.setdefault(name, {})
        entry.setdefault("seconds", time.perf_counter() - started)
        return True

    # -- the GIL check -----------------------------------------------------------------------
    def _gil(self, runs: list[RunResult], stage_stats: list[StageStats]) -> None:
        observed = runs[0].observed if runs else None
        checked: dict[str, Any] = {}
        size = 50
        advance = self.units.begin(size)
        candidates = [
            (i, s)
            for i, s in enumerate(stage_stats[: len(self.pipeline)])
            if s.share >= GIL_CHECK_MIN_SHARE
        ]
        if candidates:
            self._announce(f"GIL check ({len(candidates)} stage(s), 1 vs 2 threads)")
        for position, (column, stats) in enumerate(candidates, start=1):
            stage = self.pipeline.stages[column]
            inputs = observed.inputs_of(stage.name)[:64] if observed is not None else []
            evidence = self._gil_evidence(stage, stats, inputs)
            scaling = evidence.get("scaling")
            # The check's own CPU ratio is corrected for the host's run-queue wait; the
            # timing pass's is corrected (to first order) by the pass's overall wait.
            ratio = evidence.get("cpu_ratio") or self._corrected(stats.cpu_ratio)
            verdict = probes.classify_gil(ratio, scaling, self.cores)
            stage_stats[column] = stats.evolve(holds_gil=verdict, gil_scaling=scaling)
            checked[stage.name] = evidence
            self._note_gil(stage.name, evidence, verdict, ratio, scaling)
            advance(position * size // len(candidates))
        # Stages not checked keep what CPU time alone can say.
        for column, stats in enumerate(stage_stats[: len(self.pipeline)]):
            if stats.holds_gil is None and stats.name not in checked:
                verdict = probes.classify_gil(self._corrected(stats.cpu_ratio), None, self.cores)
                stage_stats[column] = stats.evolve(holds_gil=verdict)
        self.units.end(size)
        self.passes["gil"] = {
            "stages": checked,
            "criterion": (
                "CPU/wall < 0.5 (waits) or > 1.5 (native threads): no; otherwise 2 threads "
                f"< {probes.GIL_SCALING_THRESHOLD}x one thread's throughput: yes"
            ),
            "cores": self.cores,
        }

    def _gil_evidence(self, stage: Stage, stats: StageStats, inputs: list[Any]) -> dict[str, Any]:
        """One stage called from 1 thread, then 2 at once; or why it was skipped."""
        if self.cores < 2:
            return {"skipped": "one CPU: two threads cannot overlap"}
        if not inputs:
            return {"skipped": "no recorded inputs for this stage"}
        if stats.p50_ms / 1000 > GIL_CHECK_MAX_CALL_S:
            return {"skipped": f"a call takes {stats.p50_ms:.0f} ms: too slow to check"}
        reset_state(self.pipeline)  # every probe pass starts cold, like timing
        return probes.scaling_check(stage, inputs, self.o["gil_budget_s"])

    def _note_gil(
        self,
        name: str,
        evidence: dict[str, Any],
        verdict: bool | None,
        ratio: float | None,
        scaling: float | None,
    ) -> None:
        """The hints a stage's GIL check gives: not thread-safe, or holds the GIL."""
        if "error" in evidence:
            self.notes.append(
                f"stage {name!r} failed when called from two threads at once "
                f"({evidence['error']}): it is not thread-safe, so thread-level parallelism "
                "or dynamic batching across threads needs a lock or one instance per thread"
            )
        if verdict:
            self.notes.append(
                f"stage {name!r} holds the GIL: it keeps one core busy "
                f"(CPU/wall {ratio:.2f}) and two threads run it only "
                f"{scaling:.2f}x as fast as one. Threads will not speed it up: use "
                "processes (executor='process' with a factory) or move the work to "
                "native code that releases the GIL"
            )

    def _corrected(self, ratio: float | None) -> float | None:
        """A timing-pass CPU/wall ratio over the time the process could run (wall minus
        the pass's run-queue wait share), so a busy host does not read as waiting."""
        wait = self.passes.get("timing", {}).get("runqueue_wait_share")
        if ratio is None or not wait or wait >= 0.95:
            return ratio
        return ratio / (1.0 - wait)

    # -- the concurrency sweep ---------------------------------------------------------------
    def _sweep(self, prof: Profile, extras: dict[str, Any]) -> None:
        points: list[ConcurrencyPoint] = []
        budget = self.o["sweep_budget_s"]
        self._announce(f"concurrency sweep {list(self.levels)} ({budget:g} s per level)")
        errors: dict[int, int] = {}
        for level in self.levels:
            advance = self.units.begin(100)
            if self.mode == "offline" and level == self.o["workers"] and prof.samples:
                # The timing pass already measured this level, on more inputs: reuse it.
                points.append(_timing_point(prof, level))
                self.units.end(100)
                continue
            result = self._sweep_level(prof, level, budget, advance)
            self.units.end(100)
            ok = result.ok_mask
            pct = percentiles_ms(result.latency_s[ok])
            points.append(
                ConcurrencyPoint(
                    concurrency=level,
                    throughput_rps=result.throughput_rps,
                    p50_ms=pct["p50"],
                    p95_ms=pct["p95"],
                    p99_ms=pct["p99"],
                    samples=int(ok.sum()),
                    errors=len(result.errors),
                )
            )
            if result.errors:
                errors[level] = len(result.errors)
                if level > 1 and prof.errors.count == 0:
                    first = result.errors[0]
                    self.notes.append(
                        f"stage {first.stage!r} raised with {level} concurrent workers "
                        f"({first.error}); check that it is thread-safe"
                    )
            if result.stopped:
                raise KeyboardInterrupt
        extras["points"] = points
        self.passes["sweep"] = {
            "levels": list(self.levels),
            "budget_s_per_level": budget,
            "errors": errors,
            "kind": "closed loop, worker threads",
            "reused_timing_pass_for": self.o["workers"] if self.mode == "offline" else None,
        }

    def _sweep_level(
        self, prof: Profile, level: int, budget: float, advance: Callable[[int], None]
    ) -> RunResult:
        """One level of the sweep: ``level`` workers, closed loop, time-boxed."""
        started = time.perf_counter()
        # Inputs (cycled) for every worker to stay busy past the time box, which ends
        # the level; at least a few per worker even when one input outlasts the box.
        per_input = max(prof.latency_ms.mean / 1000, 1e-5)
        wanted = min(MAX_SWEEP_INPUTS, int(2 * level * budget / per_input) + 1)
        cycled = [self.items[i % len(self.items)] for i in range(max(wanted, 4 * level))]

        def tick(
            _: int, started: float = started, advance: Callable[[int], None] = advance
        ) -> None:
            advance(int(99 * min(1.0, (time.perf_counter() - started) / budget)))

        reset_state(self.pipeline)
        return run_offline(
            self.pipeline,
            cycled,
            workers=level,
            on_error="skip",
            timeout_s=self.o["timeout_s"],
            max_duration_s=budget,
            min_items=2 * level,
            progress=tick,
        )

    # -- the probes: hot functions, layers, heap, transfers ----------------------------------
    def _hot(self, extras: dict[str, Any]) -> None:
        limit = self.o["hot_items"]
        hot, used = self._per_item_probe(
            probes.hot_functions, limit, f"hot functions (cProfile, up to {limit} inputs)"
        )
        extras["hot"] = {name: funcs for name, funcs in hot.items() if funcs}
        self.passes["hot_functions"] = {"inputs": used, "tool": "cProfile (self time)"}

    def _layers(self, extras: dict[str, Any]) -> None:
        limit = self.o["layer_items"]
        if not any(probes.torch_modules(stage) for stage in self.pipeline.stages):
            self.passes["layers"] = {"skipped": "no torch module in any stage slot"}
            self.units.end(limit)
            return
        found, used = self._per_item_probe(
            probes.layer_times, limit, f"per-layer time (forward hooks, up to {limit} inputs)"
        )
        extras["layers"] = found
        self.passes["layers"] = {"inputs": used, "stages": sorted(found)}

    def _per_item_probe(self, probe: Callable[..., _Found], limit: int, what: str) -> _Found:
        """Announce ``what`` and run ``probe`` on up to ``limit`` inputs from a fresh
        pipeline state, the progress bar advancing per input; its (findings, inputs used)."""
        self._announce(what)
        advance = self.units.begin(limit)
        reset_state(self.pipeline)
        found = probe(
            self.pipeline,
            self.items,
            max_items=limit,
            budget_s=self.o["pass_budget_s"],
            on_item=advance,
        )
        self.units.end(limit)
        return found

    def _heap(self, extras: dict[str, Any]) -> None:
        limit = self.o["memory_items"]
        self._announce(f"Python heap per stage (tracemalloc, up to {limit} inputs)")
        self.units.begin(limit)
        reset_state(self.pipeline)
        peaks, used = probes.python_heap_by_stage(
            self.pipeline, self.items, max_items=limit, budget_s=self.o["pass_budget_s"]
        )
        self.units.end(limit)
        memory = dict(extras.get("memory", {}))
        memory["python_peak_mb_by_stage"] = peaks
        memory["python_peak_note"] = (
            "peak Python-heap growth inside each stage (tracemalloc): numpy arrays are "
            "traced; torch tensors and other native allocations are not"
        )
        extras["memory"] = memory
        self.passes["memory"] = {"inputs": used, "tool": "tracemalloc"}

    def _transfers(self, extras: dict[str, Any]) -> None:
        self._announce("CPU<->GPU transfers (torch profiler)")
        self.units.begin(8)
        reset_state(self.pipeline)
        figures = _gpu.transfer_times(self.pipeline, self.items[:8])
        self.units.end(8)
        gpu = dict(extras.get("gpu", {}))
        gpu["transfers"] = figures
        extras["gpu"] = gpu
        self.passes["transfers"] = {"inputs": min(8, len(self.items))}


def _timing_point(prof: Profile, level: int) -> ConcurrencyPoint:
    """The sweep point the timing pass measured already (offline, at its worker count)."""
    return ConcurrencyPoint(
        concurrency=level,
        throughput_rps=prof.throughput_rps,
        p50_ms=prof.latency_ms.p50,
        p95_ms=prof.latency_ms.p95,
        p99_ms=prof.latency_ms.p99,
        samples=prof.samples,
        errors=prof.errors.count,
    )
