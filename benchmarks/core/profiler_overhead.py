"""Profiler overhead on a 1 ms stage, and the accuracy of the online mode.

Run from the repository root::

    python -m benchmarks.core.profiler_overhead          # about a minute
    python -m benchmarks.core.profiler_overhead --quick  # a smoke run, a few seconds

Part 1 - overhead. The same pipeline runs as

* ``bare``: ``for item in items: pipeline.run(item)`` (no per-stage timing at all: the
  uninstrumented reference),
* ``profiled``: the profiler's timing pass, ``run_offline(..., measure_cpu=True,
  observe=256)`` (per-stage wall and CPU time, glue, observations for plugins), and
* ``traced``: the same plus span recording for the Chrome trace (``spans=True``).

The direct overhead goes through the project's comparison harness
(:func:`pipetune.core.measure.comparison.compare`): each input of the comparison is a
chunk of the pipeline's inputs, run bare on one side and through the timing pass on the
other, in paired ABBA/BAAB rounds with equal passes and a 95 % interval; the overhead is
(bare speed / profiled speed - 1). Four ~1 ms pipelines: a busy-wait stage (pure Python,
exact duration), a fixed amount of pure-Python work, a numpy stage (calibrated matrix
products), and three stages of 0.5 + 0.3 + 0.2 ms (per-stage cost x3). Each comparison
records the chunks it timed (``inputs_timed`` of ``inputs_total``; x ``inputs_per_chunk``:
the distinct inputs), its latency samples per side (one a chunk) and the host's load
(run-queue wait) while it ran.

The instrumentation's own CPU cost per input is measured beside it, and not through
``compare``: it is a CPU-time cost (no-op stages, bare and profiled passes over the same
inputs interleaved, process CPU time), the figure a busy host does not inflate, while
``compare`` times wall clock, where a few microseconds per input drown in the host's noise.
It records its inputs per pass and its rounds (one pass per side a round).
Target: <= 3 % on a 1 ms stage.

Part 2 - online mode. Poisson arrivals at several offered rates into one worker serving a
1 ms stage (a sleep, which releases the GIL, and a busy-wait, which holds it and so competes
with the load generator). Reported: offered, scheduled (the Poisson draw's own rate),
submitted (what the generator achieved), completed rate; generator lag; the measured mean
queue wait against the M/G/1 (Pollaczek-Khinchine) prediction Wq = lambda E[S^2] / (2(1 - rho))
computed from the service times the same run measured; and the overload verdict (one rate is
set above capacity on purpose).

Results: a table on stdout and the ``profiler_overhead`` section of
``benchmarks/results/core.json`` (``profiler_overhead_quick`` for a smoke run), with the
host's load over the whole run.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.offline import run_offline
from pipetune.core.runtime.online import run_online
from pipetune.core.runtime.threads import thread_settings

RESULTS = Path(__file__).resolve().parents[1] / "results" / "core.json"


def busy(seconds: float) -> Callable[[Any], Any]:
    def stage(item: Any) -> Any:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return item

    stage.__name__ = f"busy_{seconds * 1000:g}ms"
    return stage


def numpy_stage(target_s: float = 0.001) -> Callable[[Any], Any]:
    """Matrix products sized so one call takes about ``target_s`` on this machine."""
    rng = np.random.default_rng(0)
    size = 64
    a = rng.normal(size=(size, size))
    repeats = 1
    for _ in range(20):  # calibrate the repeat count
        start = time.perf_counter()
        for _ in range(5):
            x = a
            for _ in range(repeats):
                x = np.tanh(x @ a)
        per_call = (time.perf_counter() - start) / 5
        if 0.9 * target_s <= per_call <= 1.1 * target_s:
            break
        repeats = max(1, round(repeats * target_s / max(per_call, 1e-7)))

    def stage(item: Any, *, matrix: np.ndarray = a, times: int = repeats) -> Any:
        x = matrix
        for _ in range(times):
            x = np.tanh(x @ matrix)
        return item

    return stage


def python_stage(target_s: float = 0.001) -> Callable[[Any], Any]:
    """A fixed amount of pure-Python work taking about ``target_s`` here (its CPU time is
    the same on every call, unlike a busy-wait, so CPU-time comparisons are exact)."""

    def work(n: int) -> int:
        total = 0
        for i in range(n):
            total += i * i
        return total

    n = 1000
    for _ in range(10):
        start = time.process_time()
        for _ in range(5):
            work(n)
        per_call = (time.process_time() - start) / 5
        if per_call > 0 and 0.9 * target_s <= per_call <= 1.1 * target_s:
            break
        n = max(100, round(n * target_s / max(per_call, 1e-7)))

    def stage(item: Any, *, iterations: int = n) -> Any:
        work(iterations)
        return item

    return stage


def cpu_cost(pipeline: Pipeline, items: list[int], rounds: int) -> dict[str, Any]:
    """The instrumentation's own CPU cost per input: bare and profiled passes over the
    same inputs, interleaved (the order alternates between rounds), in process CPU time.

    A cost, not a speed comparison: ``compare`` times wall clock, and on a busy host wall
    time also counts the time spent waiting for a CPU; CPU time does not, so this is the
    figure that stays put there. The direct comparison is :func:`overhead`."""
    clock = time.process_time

    def bare() -> tuple[float, float]:
        c0, start = clock(), time.perf_counter()
        for item in items:
            pipeline.run(item)
        return time.perf_counter() - start, clock() - c0

    def profiled() -> tuple[float, float]:
        c0 = clock()
        wall = run_offline(pipeline, items, measure_cpu=True, observe=256).wall_s
        return wall, clock() - c0

    def traced() -> tuple[float, float]:
        c0 = clock()
        wall = run_offline(pipeline, items, measure_cpu=True, observe=256, spans=True).wall_s
        return wall, clock() - c0

    variants = {"bare": bare, "profiled": profiled, "traced": traced}
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(rounds):
        for name in names if round_ % 2 == 0 else names[::-1]:
            wall, spent = variants[name]()
            times[name].append(wall)
            cpu[name].append(spent)
    result: dict[str, Any] = {
        "stages": list(pipeline.stage_names),
        "inputs_per_pass": len(items),
        "rounds": rounds,
        "bare_us_per_input_min": min(times["bare"]) * 1e6 / len(items),
    }
    for name in ("profiled", "traced"):
        added = [v - b for v, b in zip(cpu[name], cpu["bare"], strict=True)]
        result[name] = {
            "added_cpu_us_per_input_median": statistics.median(added) * 1e6 / len(items),
            "added_us_per_input_of_minimums": (min(times[name]) - min(times["bare"]))
            * 1e6
            / len(items),
        }
    return result


def overhead(
    pipeline: Pipeline, chunks: list[list[int]], rounds: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """The profiler's timing pass against the bare loop, through ``compare``.

    Each input of the comparison is a chunk of the pipeline's inputs; one side runs it as
    ``for item in chunk: pipeline.run(item)``, the other as the profiler's timing pass
    (``run_offline(..., measure_cpu=True, observe=256)``, and with ``spans=True`` for the
    trace). ``compare``'s own per-input cost falls once per chunk on both sides alike."""
    from pipetune.core.measure.comparison import CompareSettings

    def runner(name: str, fn: Callable[[list[int]], Any]) -> Pipeline:
        return Pipeline(name, (Stage("pass", fn),))

    bare = runner("bare", lambda chunk: [pipeline.run(item) for item in chunk])
    variants = {
        "profiled": runner(
            "profiled", lambda chunk: run_offline(pipeline, chunk, measure_cpu=True, observe=256)
        ),
        "traced": runner(
            "traced",
            lambda chunk: run_offline(pipeline, chunk, measure_cpu=True, observe=256, spans=True),
        ),
    }
    per_chunk = len(chunks[0])
    result: dict[str, Any] = {
        "stages": list(pipeline.stage_names),
        "inputs_per_chunk": per_chunk,
        "chunks": len(chunks),
    }
    for name, candidate in variants.items():
        log(f"  {name} against bare, {len(chunks)} chunks of {per_chunk} inputs")
        row = common.side_by_side(bare, candidate, chunks, settings=CompareSettings(rounds=rounds))
        low, high = row["ci"]
        result.setdefault("bare_ms_per_input", row["ms_per_item"]["a"] / per_chunk)
        result[name] = {
            "distinct_inputs": (row["inputs_timed"] or 0) * per_chunk,
            "ms_per_input": row["ms_per_item"]["b"] / per_chunk,
            # the time ratio (candidate / bare) is the inverse of compare's speedup
            "overhead_pct": (1 / row["speedup"] - 1) * 100,
            "overhead_pct_ci": [(1 / high - 1) * 100, (1 / low - 1) * 100],
            "compare": row,
        }
    return result


def online_accuracy(stage_name: str, stage: Callable[[Any], Any], rates: list[float], n: int):
    pipeline = Pipeline(f"online-{stage_name}", (Stage(stage_name, stage),))
    rows = []
    for rate in rates:
        result = run_online(pipeline, list(range(n)), rate=rate, seed=7)
        stats = result.online
        service = (result.done_s - result.start_s)[result.ok_mask]
        mean_service = float(service.mean())
        rate_s = stats.scheduled_rps
        rho = rate_s * mean_service
        # Pollaczek-Khinchine (M/G/1, FIFO): Wq = lambda E[S^2] / (2 (1 - rho)), with the
        # service times this run measured: exact for Poisson arrivals and one server.
        second_moment = float(np.mean(service**2))
        predicted = rate_s * second_moment / (2 * (1 - rho)) * 1000 if rho < 1 else None
        rows.append(
            {
                "stage": stage_name,
                "offered_rps": stats.offered_rps,
                "scheduled_rps": stats.scheduled_rps,
                "submitted_rps": stats.submitted_rps,
                "completed_rps": stats.completed_rps,
                "submitted_vs_scheduled": stats.submitted_rps / stats.scheduled_rps,
                "lag_ms_p50": stats.lag_ms["p50"],
                "lag_ms_p99": stats.lag_ms["p99"],
                "service_ms_mean": mean_service * 1000,
                "utilization_rho": rho,
                "queue_ms_mean": stats.queue_ms["mean"],
                "queue_ms_mg1_prediction": predicted,
                "overloaded": stats.overloaded,
                "verdict": stats.verdict,
                "requests": n,
            }
        )
    return rows


def noop(item: Any) -> Any:
    return item


def sleep_1ms(item: Any) -> Any:
    time.sleep(0.001)
    return item


def pipelines() -> dict[str, Pipeline]:
    """The ~1 ms pipelines the overhead is measured on."""
    return {
        "busy 1 ms": Pipeline("busy", (Stage("busy", busy(0.001)),)),
        "python ~1 ms": Pipeline("python", (Stage("python", python_stage()),)),
        "numpy ~1 ms": Pipeline("numpy", (Stage("numpy", numpy_stage()),)),
        "3 stages 0.5+0.3+0.2 ms": Pipeline(
            "three",
            (
                Stage("a", busy(0.0005)),
                Stage("b", busy(0.0003)),
                Stage("c", busy(0.0002)),
            ),
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a fast smoke run")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = {
        "cost_rounds": 3 if quick else 21,
        "cost_inputs": 400 if quick else 2000,
        "compare_rounds": 2 if quick else 8,
        "chunks": 12 if quick else 120,
        "inputs_per_chunk": 10 if quick else 50,
        "online_requests": 150 if quick else 1500,
    }
    machine = detect_machine(thread_settings())
    print(f"machine: {machine.cpu}, {machine.cores} cores ({machine.logical_cores} logical)")

    def log(message: str) -> None:
        print(message, flush=True)

    with common.host_load() as load:
        costs = {
            "no-op, 1 stage": Pipeline("noop1", (Stage("a", noop),)),
            "no-op, 3 stages": Pipeline("noop3", tuple(Stage(name, noop) for name in "abc")),
        }
        cost_items = list(range(sizes["cost_inputs"]))
        instrumentation = {
            label: cpu_cost(pipeline, cost_items, sizes["cost_rounds"])
            for label, pipeline in costs.items()
        }
        _print_costs(instrumentation)
        chunks = [
            list(range(i * sizes["inputs_per_chunk"], (i + 1) * sizes["inputs_per_chunk"]))
            for i in range(sizes["chunks"])
        ]
        overheads = {}
        for label, pipeline in pipelines().items():
            log(f"overhead on {label}")
            overheads[label] = overhead(pipeline, chunks, sizes["compare_rounds"], log)
        _print_overheads(overheads)
        rates = [100.0, 300.0, 600.0, 1300.0]
        n = sizes["online_requests"]
        online = online_accuracy("sleep 1 ms", sleep_1ms, rates, n)
        online += online_accuracy("busy 1 ms", busy(0.001), rates[:3], n)
        _print_online(online, n)
    estimate = instrumentation["no-op, 1 stage"]["profiled"]["added_cpu_us_per_input_median"]
    print(f"host load: {load}")
    print(
        f"instrumentation: {estimate:.2f} us CPU per input and stage, "
        f"{estimate / 10:.2f} % of a 1 ms stage (target <= 3 %)"
    )
    report = {
        "benchmark": "core.profiler_overhead",
        "command": "python -m benchmarks.core.profiler_overhead" + (" --quick" if quick else ""),
        "quick": quick,
        "harness": "pipetune.core.measure.comparison.compare",
        "machine": machine.to_dict(),
        "host_load": load,
        "sizes": sizes,
        **_figures(instrumentation, overheads, online),
    }
    path = common.write_section(
        "core",
        "profiler_overhead" + ("_quick" if quick else ""),
        report,
        flat_section="profiler_overhead",
    )
    print(f"\nwrote {path}")
    return report


def _figures(
    instrumentation: dict[str, Any], overheads: dict[str, Any], online: list[dict[str, Any]]
) -> dict[str, Any]:
    """The results section's figures (besides the run's conditions)."""
    estimate = instrumentation["no-op, 1 stage"]["profiled"]["added_cpu_us_per_input_median"]
    return {
        "instrumentation_cost": instrumentation,
        "overhead": overheads,
        "online": online,
        "target": "profiled overhead <= 3 % on a 1 ms stage",
        # The instrumentation's own CPU cost per input (no-op stage, median over rounds),
        # as a share of a 1 ms stage: robust to a busy host, unlike the direct wall-time
        # comparisons on 1 ms stages, whose spread there can exceed the 3 % being tested.
        "instrumentation_cpu_us_per_input": {
            label: found["profiled"]["added_cpu_us_per_input_median"]
            for label, found in instrumentation.items()
        },
        "estimated_overhead_pct_at_1ms": estimate / 10.0,
        "direct_overhead_pct": {
            label: found["profiled"]["overhead_pct"] for label, found in overheads.items()
        },
    }


def _print_costs(instrumentation: dict[str, Any]) -> None:
    print("\nInstrumentation cost (interleaved passes, process CPU time)")
    print(f"{'pipeline':26} {'bare us/in':>10} {'+profiled CPU us':>17} {'+traced CPU us':>15}")
    for label, found in instrumentation.items():
        print(
            f"{label:26} {found['bare_us_per_input_min']:10.2f} "
            f"{found['profiled']['added_cpu_us_per_input_median']:17.2f} "
            f"{found['traced']['added_cpu_us_per_input_median']:15.2f}"
        )


def _print_overheads(overheads: dict[str, Any]) -> None:
    print("\nProfiler overhead (compare: paired rounds, 95 % interval)")
    print(f"{'pipeline':26} {'bare ms/in':>10} {'profiled':>9} {'(95 % CI)':>18} {'traced':>8}")
    for label, found in overheads.items():
        prof = found["profiled"]
        low, high = prof["overhead_pct_ci"]
        print(
            f"{label:26} {found['bare_ms_per_input']:10.4f} {prof['overhead_pct']:+8.2f}% "
            f"[{low:+6.2f}, {high:+6.2f}]% {found['traced']['overhead_pct']:+7.2f}%  "
            f"{prof['compare']['coverage']}"
        )


def _print_online(online: list[dict[str, Any]], n: int) -> None:
    print(f"\nOnline mode: Poisson arrivals, 1 worker, {n} requests per rate")
    print(
        f"{'stage':11} {'offered':>8} {'sched.':>8} {'submit.':>8} {'done':>8} "
        f"{'lag p99':>8} {'rho':>5} {'Wq ms':>7} {'M/G/1':>7}  verdict"
    )
    for row in online:
        prediction = row["queue_ms_mg1_prediction"]
        print(
            f"{row['stage']:11} {row['offered_rps']:8.1f} {row['scheduled_rps']:8.1f} "
            f"{row['submitted_rps']:8.1f} {row['completed_rps']:8.1f} "
            f"{row['lag_ms_p99']:8.2f} {row['utilization_rho']:5.2f} "
            f"{row['queue_ms_mean']:7.2f} "
            f"{(f'{prediction:7.2f}' if prediction is not None else '      -')}  "
            f"{row['verdict'].split(':')[0]}"
        )


if __name__ == "__main__":
    main()
