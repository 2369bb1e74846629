"""Does the speedup ``optimize`` reports hold where the user runs the recipe?

Run from the repository root::

    python -m benchmarks.loop.execution_context            # the recsys demo, 500,000 items
    python -m benchmarks.loop.execution_context --quick    # 20,000 items, a smoke run

1. ``pipetune.optimize`` runs on the recsys demo (full-catalog ranking -> two-stage ANN +
   ranker) in this process, as ``pipetune optimize`` would, and saves the recipe. Its
   figure is the final side-by-side re-measurement's throughput speedup (paired ABBA
   rounds on the held-out requests, with an interval).
2. A **plain script** — a fresh ``python`` process, library defaults, no pipetune runtime —
   builds the demo, calls ``pipetune.load_recipe`` (which applies the recipe's recorded
   thread settings, or warns), and times ``pipeline.run(request)`` on the same held-out
   requests from its main thread, the original and the optimized pipeline in alternating
   passes (ABBA), as many passes a side as the loop's comparison ran.

The target (issue 16): the two speedups agree within 15 %. The JSON records both figures,
how many distinct requests and latency samples each rests on, the execution context the
recipe recorded and the one the script ran in, and the host load during both.

Results: a table on stdout and ``benchmarks/results/loop.json`` (key ``execution_context``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "loop.json"
TARGET = 0.15

PLAIN_SCRIPT = r"""
import json, sys, warnings

import pipetune
from benchmarks.loop.execution_context import abba, compare_here
from pipetune.core.measure.execution import capture
from pipetune.demos.recsys import demo

quick, recipe, artifacts, indices, passes, *more = json.loads(sys.argv[1])
setup = demo.build(quick=quick)
items = [setup.workload.items[i] for i in indices]
original = setup.pipeline
with warnings.catch_warnings(record=True) as said:
    warnings.simplefilter("always")
    optimized = pipetune.load_recipe(original, recipe, artifacts_dir=artifacts)
context = capture()
result = abba(original, optimized, items, passes)
if more and more[0] is not None:  # the loop's own harness too, in this fresh process
    result["compare"] = compare_here(original, optimized, items, threads=more[0], rounds=passes)
print(json.dumps({
    **result,
    "execution": context.to_dict(),
    "warnings": [str(w.message) for w in said],
}))
"""


def abba(original: Any, optimized: Any, items: list[Any], passes: int) -> dict[str, Any]:
    """``pipeline.run(item)`` over ``items`` from this thread, the two pipelines in
    alternating ABBA passes after a two-request warm-up each, as a plain script would time
    them; with the milliseconds per request of each side. A pipeline the recipe serves in
    batches (``meta["serving"]``, e.g. ``generic.parallel_threads``) is called the way its
    recipe says, ``pipeline.run_batch(chunk)`` on chunks of its batch size."""
    import statistics

    from pipetune.core.measure.load import HostLoadMeter
    from pipetune.core.measure.page_faults import minor_page_faults
    from pipetune.core.runtime.serving import ServingOptions

    def run_all(pipeline: Any, chunk: list[Any]) -> None:
        pipeline.run_in_calls(chunk, ServingOptions.of(pipeline).batch_size)

    for pipeline in (original, optimized):  # warm-up, as any service does at start-up
        run_all(pipeline, items[:2])

    faults = {"original": 0, "optimized": 0}

    def one_pass(name: str) -> float:
        pipeline = original if name == "original" else optimized
        before = minor_page_faults() or 0
        start = time.perf_counter()
        run_all(pipeline, items)
        wall = time.perf_counter() - start
        faults[name] += (minor_page_faults() or 0) - before
        return wall

    meter = HostLoadMeter().start()
    walls: dict[str, list[float]] = {"original": [], "optimized": []}
    for r in range(passes):
        order = ("original", "optimized", "optimized", "original")
        for name in order if r % 2 == 0 else order[::-1]:
            walls[name].append(one_pass(name))
    load = meter.stop().to_dict()
    per_pass = [a / b for a, b in zip(walls["original"], walls["optimized"], strict=True)]
    samples = len(items) * len(walls["original"])
    return {
        "speedup": sum(walls["original"]) / sum(walls["optimized"]),
        "per_pass_median": statistics.median(per_pass),
        "ms_per_request": {k: 1000.0 * sum(v) / samples for k, v in walls.items()},
        # fresh pages a request touches: a side whose time depends on the allocator's state
        "page_faults_per_request": {k: v / samples for k, v in faults.items()},
        "passes_per_side": len(walls["original"]),
        "requests": len(items),
        "samples_per_side": samples,
        "host_load": load,
    }


def compare_here(
    original: Any, optimized: Any, items: list[Any], *, threads: int | None, rounds: int
) -> dict[str, Any]:
    """The loop's final harness (``compare``, with the loop's round settings) run here."""
    from pipetune.core.measure.comparison import CompareSettings, compare
    from pipetune.core.measure.timed_pass import RuntimeSpec

    result = compare(
        original,
        optimized,
        items,
        runtime=RuntimeSpec(threads=threads),
        settings=CompareSettings(rounds=rounds, max_rounds=2 * rounds),
    ).to_dict()
    return {
        "speedup": result["speedup"]["throughput"],
        "ci": result["ci"]["throughput"],
        **sides(result),
        "coverage": result.get("coverage"),
    }


def sides(comparison: dict[str, Any]) -> dict[str, Any]:
    """Each side's milliseconds per request and per stage, from a comparison's dict."""
    named = {"original": comparison.get("a") or {}, "optimized": comparison.get("b") or {}}
    return {
        "ms_per_request": {
            k: 1000.0 / v["throughput_rps"] if v.get("throughput_rps") else None
            for k, v in named.items()
        },
        "stage_ms": {k: v.get("stage_ms") for k, v in named.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 20,000-item demo")
    parser.add_argument("--rounds", type=int, default=None, help="ABBA rounds (default 8)")
    args = parser.parse_args(argv)

    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.core.loop.optimize import LoopSettings, optimize
    from pipetune.core.measure.comparison import CompareSettings
    from pipetune.core.measure.validator import ValidatorSettings
    from pipetune.core.runtime.machine import detect_machine
    from pipetune.demos.recsys import demo

    setup = demo.build(quick=args.quick)
    rounds = args.rounds or (4 if args.quick else 8)
    settings = LoopSettings(
        validator=ValidatorSettings(compare=CompareSettings(rounds=rounds, max_rounds=2 * rounds)),
        detailed_profiles=False,
    )
    started = time.perf_counter()
    folder = Path(tempfile.mkdtemp(prefix="pipetune-execution-"))
    _optimized, report = optimize(
        setup.pipeline,
        setup.workload,
        setup.requirements,
        pm=get_plugin_manager(),
        settings=settings,
        store=folder,
        log=lambda message: print(f"  · {message}", flush=True),
        factory=setup.factory,
    )
    recipe = folder / "recipe.json"
    report.recipe.save(recipe)
    loop_seconds = time.perf_counter() - started
    data = report.to_dict()
    comparison = data.get("comparison") or {}
    reported = comparison.get("speedup", {}).get("throughput")
    holdout = _holdout_indices(setup.workload, settings)
    passes = max(2, int(comparison.get("rounds") or rounds))
    payload = json.dumps([args.quick, str(recipe), str(folder / "artifacts"), holdout, passes])
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    plain = subprocess.run(
        [sys.executable, "-c", PLAIN_SCRIPT, payload],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    script = json.loads(plain.stdout.strip().splitlines()[-1])
    agree = None
    if reported:
        agree = abs(script["speedup"] / reported - 1.0)
    machine = detect_machine()
    result = {
        "benchmark": "loop.execution_context",
        "command": "python -m benchmarks.loop.execution_context"
        + (" --quick" if args.quick else ""),
        "machine": {"cpu": machine.cpu, "cores": machine.cores, "fingerprint": machine.fingerprint},
        "loadavg_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "accepted": [t["proposal"] for t in data["trials"] if t["status"] == "accepted"],
        "optimize": {
            "speedup": reported,
            "ci": comparison.get("ci", {}).get("throughput"),
            "inputs_timed": comparison.get("inputs_timed"),
            "inputs_total": comparison.get("inputs_total"),
            "samples_per_side": comparison.get("samples_per_side"),
            "measured_in": comparison.get("measured_in"),
            "host_load": data.get("host_load"),
            "execution": data.get("execution"),
            "seconds": loop_seconds,
        },
        "plain_script": script,
        "relative_difference": agree,
        "target": f"within {TARGET:.0%}",
        "target_met": agree is not None and agree <= TARGET,
    }
    print()
    print(f"optimize reported  {_x(reported)} ({comparison.get('coverage', '')})")
    print(
        f"plain script       {_x(script['speedup'])} (timed on {script['requests']} requests, "
        f"{script['samples_per_side']} samples per side, main thread)"
    )
    shown = "-" if agree is None else f"{agree:.1%}"
    print(f"difference         {shown} (target: within {TARGET:.0%})")
    for line in script["warnings"]:
        print(f"load_recipe said:  {line}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing["execution_context" + ("_quick" if args.quick else "")] = result
    RESULTS.write_text(json.dumps(existing, indent=2, default=str) + "\n")
    return result


def _holdout_indices(workload: Any, settings: Any) -> list[int]:
    """The held-out requests, as the loop split them."""
    from pipetune.core.loop.splits import MIN_SPLIT_ITEMS

    if len(workload) < MIN_SPLIT_ITEMS:
        return list(range(len(workload)))
    return workload.split_indices(settings.tune_fraction)[1]


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    main()
