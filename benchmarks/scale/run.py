"""Scale benchmarks (issue 19): pipetune on Ray against the local engine and the usual port.

    python -m benchmarks.scale.run                 # every part (minutes on a 2-core machine)
    python -m benchmarks.scale.run --quick         # a smoke run at tiny sizes
    python -m benchmarks.scale.run --only nlp,serve

Parts (each a section of ``benchmarks/results/scale.json``):

* ``nlp``: parity and overhead — the optimized nlp demo pipeline over the demo's
  documents, ``--engine ray`` (a local Ray on this machine) against ``--engine local``;
* ``port``: pipetune's plan against the usual port (one ``map_batches`` over
  ``pipeline.run``, Ray Data's defaults) on a fetch stage with simulated latency followed
  by a torch model;
* ``serve``: P99 on Ray Serve against the local runtime's online mode at the same rate;
* ``fault``: a node removed half-way through a job on a local three-node cluster.

Every part runs its sides side by side, interleaved, with equal passes (see
:mod:`benchmarks.scale.harness`), and records the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

PARTS = ("nlp", "port", "serve", "fault")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--only", default="", help="comma-separated parts: " + ",".join(PARTS))
    parser.add_argument("--passes", type=int, default=None, help="passes per side (3; quick 1)")
    parser.add_argument("--cases", type=int, default=None, help="nlp demo cases (500; quick 3)")
    parser.add_argument("--rows", type=int, default=None, help="port/fault rows (4000; quick 120)")
    parser.add_argument(
        "--requests", type=int, default=None, help="serve requests per pass (150; quick 20)"
    )
    parser.add_argument("--fetch-ms", type=float, default=20.0, help="simulated fetch latency")
    args = parser.parse_args(argv)
    only = {p.strip() for p in args.only.split(",") if p.strip()} or set(PARTS)
    if only - set(PARTS):
        parser.error(f"unknown part(s): {', '.join(sorted(only - set(PARTS)))}")
    if args.quick:
        os.environ["PIPETUNE_BENCH_QUICK"] = "1"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    passes = args.passes or (1 if args.quick else 3)
    cases = args.cases or (3 if args.quick else 500)
    rows = args.rows or (120 if args.quick else 4000)
    # Serve offers half of one worker's rate (about 4.5 requests/s here): 150 requests a
    # pass and 2 passes put 300 latency samples behind each side's P99.
    requests = args.requests or (20 if args.quick else 150)
    serve_passes = args.passes or (1 if args.quick else 2)
    command = " ".join(["python -m benchmarks.scale.run", *(argv or sys.argv[1:])])

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    from benchmarks.scale import engines, fault, serving

    local_ray = {
        "nlp": lambda: engines.part_nlp(cases, passes, log),
        "port": lambda: engines.part_port(rows, passes, log, args.fetch_ms),
        "serve": lambda: serving.part_serve(requests, serve_passes, log, cases),
    }
    chosen = {k: v for k, v in local_ray.items() if k in only}
    if chosen:
        from pipetune.scale.ray_env import ray_session

        with ray_session(None, purpose="the scale benchmarks"):
            for name, part in chosen.items():
                _record(name, part, command, args.quick, log)
    if "fault" in only:
        _record(
            "fault",
            lambda: fault.part_fault(rows, passes, log, args.fetch_ms),
            command,
            args.quick,
            log,
        )
    return 0


def _record(
    name: str, part: Callable[[], dict[str, Any]], command: str, quick: bool, log: Any
) -> None:
    from benchmarks.scale import harness

    log(f"part {name}")
    before = harness.load_average()
    started = time.perf_counter()
    data = part()
    data.update(
        {
            "command": command,
            "quick": quick,
            "machine": harness.machine(),
            "load_before": before,
            "load_after": harness.load_average(),
            "seconds": round(time.perf_counter() - started, 1),
        }
    )
    path = harness.write_section(name, data)
    log(f"part {name}: written to {path}")


if __name__ == "__main__":
    raise SystemExit(main())
