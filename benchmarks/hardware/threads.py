"""Is a kept recipe ever slower than the original pipeline on a busy host, in a plain
process? Thread settings as a measured part of every recipe (issue 20).

Run from the repository root::

    python -m benchmarks.hardware.threads                 # 400 inputs per case
    python -m benchmarks.hardware.threads --quick         # 60 inputs, a smoke run
    python -m benchmarks.hardware.threads --cases cnn,onnx_decode --busy 1

For the whole run a second process keeps the CPU busy: ``--busy`` spinning numpy loops
(default 1, one core of a 2-core host), each on one BLAS thread. For each pipeline of
:mod:`benchmarks.hardware.thread_cases` (a small torch CNN, the real all-MiniLM-L6-v2
topic classifier, an ONNX Runtime session followed by a JPEG decode stage):

1. ``pipetune.optimize`` runs in this process, as ``pipetune optimize`` would (all
   built-in plugins, at most ``--max-trials`` trials), and saves the recipe: its kept
   changes, the thread plan (``hardware.threads``) if one was kept, and the figure the
   loop reported;
2. a **plain process** — a fresh ``python``, library defaults (no ``*_NUM_THREADS``), no
   pipetune runtime around it — rebuilds the original pipeline, calls
   ``pipetune.load_recipe`` and measures original against optimized with
   :func:`pipetune.core.measure.comparison.compare` from its main thread (paired ABBA
   rounds over the held-out inputs, equal passes a side, a bootstrapped interval).

Target: in the plain process the kept recipe is never slower than the original (the
speedup is at least 1.0). Every figure carries the number of distinct inputs and latency
samples it rests on and the host's load while it was measured (run-queue wait, other
processes' CPU, the load average).

Results: a table on stdout and ``benchmarks/results/hardware.json`` (key ``threads``, or
``threads_quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.hardware.thread_cases import CASES

RESULTS = Path(__file__).resolve().parents[1] / "results" / "hardware.json"
ROOT = Path(__file__).resolve().parents[2]
BUSY_LOOP = "import numpy as np\nx = np.random.rand(200, 200)\nwhile True:\n    x = x @ x / 200.0"

PLAIN_SCRIPT = r"""
import json, sys, warnings
import pipetune
from benchmarks.hardware.thread_cases import build
from pipetune.core.measure.comparison import CompareSettings, compare
from pipetune.core.measure.execution import capture

case, quick, size, recipe, artifacts, indices, rounds = json.loads(sys.argv[1])
pipeline, workload, requirements = build(case, quick, size)
items = [workload.items[i] for i in indices]
with warnings.catch_warnings(record=True) as said:
    warnings.simplefilter("always")
    optimized = pipetune.load_recipe(pipeline, recipe, artifacts_dir=artifacts)
context = capture()
result = compare(pipeline, optimized, items, metric="throughput",
                 settings=CompareSettings(rounds=rounds))
data = result.to_dict()
print(json.dumps({
    "speedup": result.speedup["throughput"],
    "ci": list(result.ci["throughput"]),
    "rounds": result.rounds,
    "inputs_timed": result.inputs_timed,
    "inputs_total": result.inputs_total,
    "samples_per_side": result.samples_per_side,
    "coverage": result.coverage,
    "host_load": data.get("host_load"),
    "execution": context.to_dict(),
    "warnings": [str(w.message) for w in said],
}, default=str))
"""


@contextmanager
def busy_processes(count: int) -> Any:
    """``count`` processes spinning a numpy loop on one BLAS thread each."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP], env=env) for _ in range(count)]
    try:
        time.sleep(1.0 if procs else 0.0)
        yield [p.pid for p in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def run_case(case: str, args: argparse.Namespace) -> dict[str, Any]:
    from benchmarks.hardware.thread_cases import build
    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.core.loop.optimize import LoopSettings, optimize
    from pipetune.core.loop.splits import MIN_SPLIT_ITEMS
    from pipetune.core.measure.comparison import CompareSettings
    from pipetune.core.measure.validator import ValidatorSettings

    pipeline, workload, requirements = build(case, args.quick, args.items)
    rounds = args.rounds or (4 if args.quick else 8)
    settings = LoopSettings(
        max_trials=args.max_trials,
        validator=ValidatorSettings(compare=CompareSettings(rounds=rounds, max_rounds=2 * rounds)),
        detailed_profiles=False,
    )
    folder = Path(tempfile.mkdtemp(prefix=f"pipetune-threads-{case}-"))
    started = time.perf_counter()
    _, report = optimize(
        pipeline,
        workload,
        requirements,
        pm=get_plugin_manager(),
        settings=settings,
        store=folder,
        log=lambda message: print(f"  · [{case}] {message}", flush=True),
    )
    seconds = time.perf_counter() - started
    recipe = folder / "recipe.json"
    report.recipe.save(recipe)
    data = report.to_dict()
    comparison = data.get("comparison") or {}
    if len(workload) < MIN_SPLIT_ITEMS:
        holdout = list(range(len(workload)))
    else:
        holdout = list(workload.split_indices(settings.tune_fraction)[1])
    payload = json.dumps(
        [case, args.quick, args.items, str(recipe), str(folder / "artifacts"), holdout, rounds]
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")])
    plain = subprocess.run(
        [sys.executable, "-c", PLAIN_SCRIPT, payload],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if plain.returncode != 0:
        raise RuntimeError(f"the plain process failed for {case}:\n{plain.stderr[-3000:]}")
    script = json.loads(plain.stdout.strip().splitlines()[-1])
    return {
        "pipeline": pipeline.name,
        "inputs": len(workload),
        "accepted": [t["proposal"] for t in data["trials"] if t["status"] == "accepted"],
        "trials": [
            {"proposal": t["proposal"], "status": t["status"], "reason": t.get("reason")}
            for t in data["trials"]
        ],
        "thread_plan": (data.get("execution") or {}).get("stages") or {},
        "optimize": {
            "speedup": comparison.get("speedup", {}).get("throughput"),
            "ci": comparison.get("ci", {}).get("throughput"),
            "inputs_timed": comparison.get("inputs_timed"),
            "inputs_total": comparison.get("inputs_total"),
            "samples_per_side": comparison.get("samples_per_side"),
            "host_load": data.get("host_load"),
            "execution": data.get("execution"),
            "seconds": round(seconds, 1),
        },
        "plain_process": script,
        "never_slower": script["speedup"] >= 1.0,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 inputs per case")
    parser.add_argument("--items", type=int, default=None, help="inputs per case (a smoke run)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--busy", type=int, default=1, help="busy processes (default 1)")
    parser.add_argument("--max-trials", type=int, default=None, help="default 3 (quick) / 6")
    parser.add_argument("--rounds", type=int, default=None, help="ABBA rounds (default 8)")
    args = parser.parse_args(argv)
    args.max_trials = args.max_trials or (3 if args.quick else 6)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = set(cases) - set(CASES)
    if unknown:
        parser.error(f"unknown case(s): {', '.join(sorted(unknown))}")
    from pipetune.core.runtime.machine import detect_machine

    machine = detect_machine()
    smoke = args.quick or args.items is not None
    result: dict[str, Any] = {
        "benchmark": "hardware.threads",
        "command": "python -m benchmarks.hardware.threads " + " ".join(argv or sys.argv[1:]),
        "machine": {"cpu": machine.cpu, "cores": machine.cores, "fingerprint": machine.fingerprint},
        "busy_processes": {"count": args.busy, "loop": "numpy 200x200 matmul, 1 BLAS thread"},
        "target": "plain-process speedup of the kept recipe >= 1.0 in every case",
        "cases_all": list(CASES),
        "cases": {},
    }
    with busy_processes(args.busy):
        for case in cases:
            print(f"{case}: optimize, then a plain process", flush=True)
            result["cases"][case] = run_case(case, args)
            result["loadavg_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            result["target_met"] = all(r["never_slower"] for r in result["cases"].values())
            _write("threads_quick" if smoke else "threads", result)  # each case as it ends
    _print_table(result["cases"])
    return result


def _write(key: str, result: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing[key] = result
    RESULTS.write_text(json.dumps(existing, indent=2, default=str) + "\n")


def _print_table(results: dict[str, Any]) -> None:
    print()
    print(f"{'case':<12} {'kept':<44} {'optimize':>10} {'plain':>22} load")
    for case, r in results.items():
        plain = r["plain_process"]
        ci = plain["ci"]
        load = plain.get("host_load") or {}
        wait = load.get("run_queue_wait")
        other = load.get("other_cpu")
        print(
            f"{case:<12} {', '.join(r['accepted']) or '-':<44} "
            f"{_x(r['optimize']['speedup']):>10} "
            f"{_x(plain['speedup']):>7} [{ci[0]:.2f}, {ci[1]:.2f}] "
            f"wait {'-' if wait is None else f'{wait:.0%}'}, other "
            f"{'-' if other is None else f'{other:.1f}'} cores; {plain['coverage']}"
        )


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


if __name__ == "__main__":
    main()
