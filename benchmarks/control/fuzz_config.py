"""The config and workload fuzz at scale: N generated ``[tool.pipetune]`` tables and
workload files through ``pipetune profile``, counting internal errors (the target: 0).

Run from the repository root::

    python -m benchmarks.control.fuzz_config              # 2,000 examples
    python -m benchmarks.control.fuzz_config --quick      # 100 examples, a smoke run

The generator and the harness are the fault suite's (``tests/faults/fuzzing.py``): each
example writes a pyproject.toml, a workload file and a target module and runs
``pipetune profile`` in-process through the CLI's error boundary. Hypothesis draws the
examples from a fixed seed. Results: ``benchmarks/results/control.json`` (key
``fuzz_config``): how many examples ended with each exit status, the internal errors (with
the example that caused each), the time, and the host load.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "control.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from hypothesis import HealthCheck, given, seed, settings
    from tests.faults.fuzzing import Case, cases, run_case

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 examples")
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    examples = args.examples or (100 if args.quick else 2000)
    codes: collections.Counter[int] = collections.Counter()
    first_lines: collections.Counter[str] = collections.Counter()
    internal: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pipetune-fuzz-") as tmp:
        os.environ["PIPETUNE_HOME"] = str(Path(tmp) / "store")
        counter = iter(range(10**9))

        @seed(args.seed)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases())
        def run(case: Case) -> None:
            outcome = run_case(case, Path(tmp) / f"case-{next(counter)}")
            codes[outcome.code] += 1
            first = next((line for line in outcome.err.splitlines() if line.strip()), "")
            first_lines[first.split("/")[0][:60] + " | " + first.rsplit(": ", 1)[-1][:60]] += 1
            if outcome.internal:
                internal.append(
                    {"exit": outcome.code, "stderr": outcome.err[-2000:], "case": repr(case)}
                )

        run()
    seconds = time.perf_counter() - started
    result = {
        "benchmark": "control.fuzz_config",
        "command": " ".join(["python -m benchmarks.control.fuzz_config", *(argv or sys.argv[1:])]),
        "examples": sum(codes.values()),
        "seed": args.seed,
        "exit_codes": {str(k): v for k, v in sorted(codes.items())},
        "first_stderr_lines": dict(first_lines.most_common(12)),
        "internal_errors": len(internal),
        "internal_error_examples": internal[:10],
        "seconds": round(seconds, 1),
        "host_load_1_5_15": {"before": load_before, "after": os.getloadavg()},
    }
    print(json.dumps({k: v for k, v in result.items() if k != "internal_error_examples"}, indent=2))
    for entry in internal[:5]:
        print("--- internal error:", entry["stderr"][-600:], entry["case"][:600], sep="\n")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing["fuzz_config"] = result
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["internal_errors"] == 0 else 1)
