"""The production monitor's overhead, side by side and interleaved, and what a scrape costs.

Run from the repository root::

    python -m benchmarks.production.monitor_overhead          # a few minutes
    python -m benchmarks.production.monitor_overhead --quick  # a smoke run, seconds

Variants, each serving the same inputs one request at a time in one process:

* ``bare``: ``pipeline.run(item)`` (the reference: nothing recorded);
* ``control wrapper``: a wrapper calling the stages exactly as the monitor does, recording
  nothing (on a shared host a different call site alone can move a CPU-bound Python stage
  by about 1 %; ``monitor vs control`` takes that out);
* ``monitor``: ``Monitor(pipeline)(item)``: per-stage and end-to-end histograms, counts;
* ``monitor+trace``: the same, sampling 5 % of requests (blocks of 100) into the trace;
* ``prometheus observe()``: the common alternative: time each stage and call
  ``prometheus_client.Histogram.observe()`` per stage and end to end on every request
  (children bound once, so no label lookup per request).

Every round runs each variant once on the same inputs, the order rotating between rounds;
the overhead is the median over rounds of (variant / bare) - 1, with a bootstrap interval over
rounds. Wall time and the process's CPU time are both reported: on a busy shared host wall
time also counts time spent waiting for a CPU, which CPU time does not, so CPU time is the
steadier measure of what the instrumentation itself costs for stages doing fixed work.

Pipelines: a 1 ms busy-wait stage (exact duration, pure Python), a 1 ms fixed-work Python
stage, a 1 ms numpy stage (64x64 matrix products: native code), three fixed-work stages of
0.5 + 0.3 + 0.2 ms (per-stage cost x 3), and one and three empty stages (the absolute cost
of recording, in CPU microseconds per request: the steadiest figure on a busy host; as a
share of 1 ms it is the overhead on a 1 ms stage).
Target: <= 1 % on a 1 ms stage.

Scrape: the time to produce the Prometheus exposition (``generate_latest``) for a monitored
three-stage pipeline, and the time and size of a JSON export.

Results: a table on stdout and ``benchmarks/results/production.json``
(section ``monitor_overhead``).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.production.common import load_average, machine, write_section
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.monitor import Monitor

TARGET_PCT = 1.0


def busy(seconds: float) -> Callable[[Any], Any]:
    def stage(item: Any) -> Any:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass
        return item

    return stage


def fixed_work(target_s: float) -> Callable[[Any], Any]:
    """Pure-Python work of a fixed size taking about ``target_s`` of CPU here."""

    def work(n: int) -> int:
        total = 0
        for i in range(n):
            total += i * i
        return total

    n = 1000
    for _ in range(12):
        start = time.process_time()
        for _ in range(5):
            work(n)
        per_call = (time.process_time() - start) / 5
        if per_call > 0 and 0.95 * target_s <= per_call <= 1.05 * target_s:
            break
        n = max(50, round(n * target_s / max(per_call, 1e-7)))

    def stage(item: Any, *, iterations: int = n) -> Any:
        work(iterations)
        return item

    return stage


def identity(item: Any) -> Any:
    return item


def numpy_work(target_s: float) -> Callable[[Any], Any]:
    """Matrix products sized so one call takes about ``target_s`` here (native code, as an
    inference stage is)."""
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(64, 64))
    repeats = 1
    for _ in range(20):
        start = time.process_time()
        for _ in range(5):
            x = matrix
            for _ in range(repeats):
                x = np.tanh(x @ matrix)
        per_call = (time.process_time() - start) / 5
        if per_call > 0 and 0.9 * target_s <= per_call <= 1.1 * target_s:
            break
        repeats = max(1, round(repeats * target_s / max(per_call, 1e-7)))

    def stage(item: Any, *, times: int = repeats) -> Any:
        x = matrix
        for _ in range(times):
            x = np.tanh(x @ matrix)
        return item

    return stage


class Control:
    """A wrapper that calls the stages exactly as the monitor does and records nothing: it
    separates the monitor's own cost from the effect of any wrapper (a different call
    site, frame, code placement) on this host."""

    def __init__(self, pipeline: Pipeline):
        self.stages = tuple(pipeline.stages)

    def __call__(self, item: Any) -> Any:
        for stage in self.stages:
            item = stage(item)
        return item


class ObservePerRequest:
    """The per-request alternative: ``Histogram.observe()`` per stage and end to end."""

    def __init__(self, pipeline: Pipeline):
        from prometheus_client import CollectorRegistry, Histogram

        registry = CollectorRegistry()
        stage_hist = Histogram(
            "stage_latency_seconds", "stage", ["stage"], registry=registry, buckets=_buckets()
        )
        request = Histogram("request_latency_seconds", "e2e", registry=registry, buckets=_buckets())
        self.stages = [(stage, stage_hist.labels(stage.name)) for stage in pipeline.stages]
        self.request = request

    def __call__(self, item: Any) -> Any:
        perf = time.perf_counter
        start = last = perf()
        for stage, child in self.stages:
            item = stage(item)
            now = perf()
            child.observe(now - last)
            last = now
        self.request.observe(last - start)
        return item


def _buckets() -> list[float]:
    # The same le buckets the monitor's collector exposes (3 per decade, 10 us .. 100 s).
    return [10 ** (k / 3) * 1e-5 for k in range(0, 22)]


def measure(pipeline: Pipeline, items: list[int], rounds: int) -> dict[str, Any]:
    variants: dict[str, Callable[[Any], Any]] = {
        "bare": pipeline.run,
        "control wrapper": Control(pipeline),
        "monitor": Monitor(pipeline),
        "monitor+trace": Monitor(pipeline, trace_sample=0.05, trace_limit=10**7),
    }
    with contextlib.suppress(ImportError):  # the monitor extra: compare when present
        variants["prometheus observe()"] = ObservePerRequest(pipeline)
    names = list(variants)

    def one_pass(fn: Callable[[Any], Any]) -> tuple[float, float]:
        c0, w0 = time.process_time(), time.perf_counter()
        for item in items:
            fn(item)
        return time.perf_counter() - w0, time.process_time() - c0

    for fn in variants.values():  # warm-up
        one_pass(fn)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            w, c = one_pass(variants[name])
            wall[name].append(w)
            cpu[name].append(c)
    n = len(items)
    out: dict[str, Any] = {
        "stages": list(pipeline.stage_names),
        "inputs_per_pass": n,
        "rounds": rounds,
        "bare_ms_per_request": statistics.median(wall["bare"]) * 1000 / n,
        "bare_cpu_ms_per_request": statistics.median(cpu["bare"]) * 1000 / n,
    }
    for name in names[1:]:
        out[name] = {
            "wall": _paired(wall[name], wall["bare"], n),
            "cpu": _paired(cpu[name], cpu["bare"], n),
        }
    # The monitor against a wrapper that records nothing: its own cost, wrapper effects out.
    out["monitor vs control"] = {
        "wall": _paired(wall["monitor"], wall["control wrapper"], n),
        "cpu": _paired(cpu["monitor"], cpu["control wrapper"], n),
    }
    return out


def _paired(variant: list[float], bare: list[float], n: int) -> dict[str, float]:
    ratios = np.array([v / b for v, b in zip(variant, bare, strict=True) if b > 0])
    added = np.array([(v - b) * 1e6 / n for v, b in zip(variant, bare, strict=True)])
    rng = np.random.default_rng(0)
    boot = np.median(rng.choice(ratios, size=(2000, len(ratios)), replace=True), axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {
        "overhead_pct_median": float((np.median(ratios) - 1) * 100),
        "overhead_pct_ci": [float((low - 1) * 100), float((high - 1) * 100)],
        "added_us_per_request_median": float(np.median(added)),
    }


def scrape_cost(requests: int, scrapes: int) -> dict[str, Any]:
    from prometheus_client import CollectorRegistry, generate_latest

    pipeline = Pipeline("scraped", tuple(Stage(f"s{i}", identity) for i in range(3)))
    monitored = Monitor(pipeline, trace_sample=0.05)
    for i in range(requests):
        monitored(i)
    registry = CollectorRegistry()
    monitored.register_prometheus(registry)
    times = []
    size = 0
    for _ in range(scrapes):
        start = time.perf_counter()
        text = generate_latest(registry)
        times.append(time.perf_counter() - start)
        size = len(text)
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.json"
        start = time.perf_counter()
        monitored.export(path)
        export_s = time.perf_counter() - start
        export_bytes = path.stat().st_size
    monitored.close()
    return {
        "requests_recorded": requests,
        "scrape_ms_median": statistics.median(times) * 1000,
        "exposition_bytes": size,
        "export_ms": export_s * 1000,
        "export_bytes": export_bytes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (seconds)")
    args = parser.parse_args(argv)
    rounds, n = (5, 40) if args.quick else (30, 300)
    load_before = load_average()
    pipelines = {
        "busy 1 ms": Pipeline("busy", (Stage("work", busy(0.001)),)),
        "python 1 ms": Pipeline("python", (Stage("work", fixed_work(0.001)),)),
        "numpy 1 ms": Pipeline("numpy", (Stage("work", numpy_work(0.001)),)),
        "3 stages 0.5+0.3+0.2 ms": Pipeline(
            "three",
            (
                Stage("a", fixed_work(0.0005)),
                Stage("b", fixed_work(0.0003)),
                Stage("c", fixed_work(0.0002)),
            ),
        ),
        "1 empty stage": Pipeline("empty1", (Stage("s0", identity),)),
        "3 empty stages": Pipeline("empty", tuple(Stage(f"s{i}", identity) for i in range(3))),
    }
    results: dict[str, Any] = {}
    for label, pipeline in pipelines.items():
        items = list(range(n if "empty" not in label else n * 50))
        results[label] = measure(pipeline, items, rounds)
    scrape = scrape_cost(2_000 if args.quick else 200_000, 10 if args.quick else 50)
    target_met = {
        f"{label} (CPU, median)": results[label]["monitor"]["cpu"]["overhead_pct_median"]
        <= TARGET_PCT
        for label in ("busy 1 ms", "python 1 ms", "numpy 1 ms", "3 stages 0.5+0.3+0.2 ms")
    }
    target_met["busy 1 ms (wall)"] = (
        results["busy 1 ms"]["monitor"]["wall"]["overhead_pct_median"] <= TARGET_PCT
    )
    # The recording cost itself, measured on an empty stage (CPU microseconds per request),
    # as a share of a 1 ms stage: the least noisy figure on a busy host.
    implied = results["1 empty stage"]["monitor"]["cpu"]["added_us_per_request_median"] / 10.0
    target_met["implied by the empty-stage cost"] = implied <= TARGET_PCT
    data = {
        "benchmark": "production.monitor_overhead",
        "command": "python -m benchmarks.production.monitor_overhead"
        + (" --quick" if args.quick else ""),
        "machine": machine(),
        "conditions": {"load_average_before": load_before, "load_average_after": load_average()},
        "target_pct": TARGET_PCT,
        "implied_overhead_pct_at_1ms": implied,
        "pipelines": results,
        "scrape": scrape,
        "target_met": target_met,
    }
    path = write_section("monitor_overhead", data)
    _print(results, scrape, target_met)
    print(f"recording cost on one empty stage = {implied:.3f} % of a 1 ms stage")
    print(f"\nwrote {path}")
    return 0


def _print(results: dict[str, Any], scrape: dict[str, Any], target_met: dict[str, bool]) -> None:
    print(f"{'pipeline':26} {'variant':22}", end=" ")
    print(f"{'wall %':>8} {'CPU %':>8} {'CPU 95% CI':>18} {'us/req':>8}")
    for label, figures in results.items():
        for name, value in figures.items():
            if not isinstance(value, dict) or "cpu" not in value:
                continue
            cpu, wall = value["cpu"], value["wall"]
            ci = f"[{cpu['overhead_pct_ci'][0]:+.2f}, {cpu['overhead_pct_ci'][1]:+.2f}]"
            print(
                f"{label:26} {name:22} {wall['overhead_pct_median']:+8.2f} "
                f"{cpu['overhead_pct_median']:+8.2f} {ci:>18} "
                f"{cpu['added_us_per_request_median']:8.2f}"
            )
    print(
        f"\nscrape of {scrape['requests_recorded']:,} recorded requests (3 stages): "
        f"{scrape['scrape_ms_median']:.2f} ms, {scrape['exposition_bytes']:,} bytes; "
        f"JSON export {scrape['export_ms']:.1f} ms, {scrape['export_bytes']:,} bytes"
    )
    print("target <= 1 % met: " + ", ".join(f"{k}: {v}" for k, v in target_met.items()))


if __name__ == "__main__":
    raise SystemExit(main())
