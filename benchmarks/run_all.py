"""Every CPU benchmark, one after another (``make bench``).

    python -m benchmarks.run_all            # the full runs: a few hours on a 2-core machine
    python -m benchmarks.run_all --quick    # every script's smoke run, minutes
    python -m benchmarks.run_all --only nlp,scan

Each script runs in its own process (so one that fails does not stop the others), writes
its section of ``benchmarks/results/<area>.json`` and its log to
``benchmarks/results/logs/``. A full run then regenerates every measured figure in
README.md and docs/ from the results (``python -m benchmarks.render``; a smoke run writes
only ``*_quick`` sections, which no document quotes). Run them on a quiet machine: they
are paired side by side, but a busy CPU still widens every interval. The GPU benchmarks
have their own entry point, ``benchmarks.gpu_all``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "benchmarks" / "results" / "logs"

#: (area, module, extra arguments for a full run); ``--quick`` is added for a smoke run.
BENCHMARKS: list[tuple[str, str, list[str]]] = [
    ("core", "benchmarks.core.profiler_overhead", []),
    ("loop", "benchmarks.loop.demo_queries", []),
    ("loop", "benchmarks.loop.validator_calibration", []),
    ("loop", "benchmarks.loop.execution_context", []),
    ("loop", "benchmarks.loop.estimates", []),
    ("recsys", "benchmarks.recsys.run", []),
    ("nlp", "benchmarks.nlp.run", ["--threads", "1"]),
    ("nlp", "benchmarks.nlp.classifier", []),
    ("nlp", "benchmarks.nlp.tokenizer", []),
    ("nlp", "benchmarks.nlp.demo_time", []),
    ("vision", "benchmarks.vision.decode", []),
    ("vision", "benchmarks.vision.frame_skip", []),
    ("llm", "benchmarks.llm.run", []),
    ("hardware", "benchmarks.hardware.encoder", []),
    ("hardware", "benchmarks.hardware.threads", []),
    ("scan", "benchmarks.scan.speed", []),
    ("production", "benchmarks.production.monitor_overhead", []),
    ("production", "benchmarks.production.adaptive_nlp", []),
    ("scale", "benchmarks.scale.run", []),
    ("control", "benchmarks.control.sigint_optimize", []),
    ("control", "benchmarks.control.fuzz_config", []),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every script's smoke run")
    parser.add_argument("--only", default="", help="comma-separated areas (core, nlp, ...)")
    args = parser.parse_args(argv)
    areas = {a.strip() for a in args.only.split(",") if a.strip()}
    known = {area for area, _, _ in BENCHMARKS}
    if areas - known:
        parser.error(f"unknown area(s): {', '.join(sorted(areas - known))}")
    LOGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), str(ROOT), env.get("PYTHONPATH", "")) if p
    )
    failed = []
    for area, module, extra in BENCHMARKS:
        if areas and area not in areas:
            continue
        command = [sys.executable, "-m", module, *extra, *(["--quick"] if args.quick else [])]
        log = LOGS / f"{module.removeprefix('benchmarks.')}.log"
        print(f"{time.strftime('%H:%M:%S')} {' '.join(command[2:])} (log: {log})", flush=True)
        started = time.perf_counter()
        with log.open("w") as handle:
            code = subprocess.call(command, cwd=ROOT, env=env, stdout=handle, stderr=handle)
        print(f"    exit {code} after {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            failed.append(module)
    if not args.quick:
        print(f"{time.strftime('%H:%M:%S')} python -m benchmarks.render", flush=True)
        if subprocess.call([sys.executable, "-m", "benchmarks.render"], cwd=ROOT, env=env):
            failed.append("benchmarks.render")
    if failed:
        print(f"failed: {', '.join(failed)} (see their logs)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
