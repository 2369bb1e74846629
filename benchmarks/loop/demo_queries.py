"""The whole loop on the `queries` demo, against the original and a competent baseline.

Run from the repository root::

    python -m benchmarks.loop.demo_queries          # 2,000 queries (a few minutes)
    python -m benchmarks.loop.demo_queries --quick  # 240 queries, a smoke run

``pipetune.optimize`` runs on the demo (a hashed bag-of-words intent classifier called one
query at a time; queries drawn Zipf(1.1) from 1,500 templated queries: see
``pipetune.demos.generic.demo``). The optimized pipeline is then measured side by side
(paired ABBA rounds, the loop's own comparison) against

* the **original** pipeline, and
* a **competent baseline** (``pipetune.demos.generic.demo.competent_baseline``): what an
  engineer who knows numpy writes without pipetune — the same pipeline served in batches
  of 32 through its ``batch_fn`` (no cache: a cache needs the measured repeat rate to be
  worth its memory, which is what the loop measures).

Both through :func:`pipetune.core.measure.comparison.compare` with the same settings; the
JSON's ``summary`` holds both ratios side by side, with the P99 change and the inputs and
samples each rests on (``n/a`` where too few latency samples stand behind a P99).

Threads are pinned to 1 for every measurement (BLAS through the environment before numpy
loads: without ``threadpoolctl`` an already-loaded OpenBLAS keeps its pool). Results: a table and
``benchmarks/results/loop.json`` (key ``demo_queries``).
"""

from __future__ import annotations

import os

# numpy's OpenBLAS sizes its thread pool when numpy loads; pin_threads can resize it later
# only through threadpoolctl, which may not be installed. Pin it before anything loads numpy.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from pipetune.core.kernel.manager import get_plugin_manager  # noqa: E402
from pipetune.core.loop.optimize import LoopSettings, optimize  # noqa: E402
from pipetune.core.measure.comparison import CompareSettings, compare  # noqa: E402
from pipetune.core.measure.timed_pass import RuntimeSpec  # noqa: E402
from pipetune.core.runtime.machine import detect_machine  # noqa: E402
from pipetune.core.runtime.threads import pin_threads  # noqa: E402
from pipetune.demos.generic import demo  # noqa: E402

RESULTS = Path(__file__).resolve().parents[1] / "results" / "loop.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON to update")
    args = parser.parse_args(argv)
    setup = demo.build(quick=args.quick)
    pm = get_plugin_manager(entry_points=False)
    started = time.perf_counter()
    with pin_threads(1):
        optimized, report = optimize(
            setup.pipeline,
            setup.workload,
            setup.requirements,
            pm=pm,
            store=False,
            runtime=RuntimeSpec(threads=1),
            settings=LoopSettings(detailed_profiles=not args.quick),
            log=lambda message: print(f"  {message}", flush=True),
        )
        competent = demo.competent_baseline(setup.pipeline)
        items = list(setup.workload.items)
        settings = CompareSettings(rounds=8 if not args.quick else 4)
        against_original = compare(setup.pipeline, optimized, items, settings=settings)
        against_competent = compare(competent, optimized, items, settings=settings)
    elapsed = time.perf_counter() - started
    accepted = [t.proposal for t in report.trials if t.status == "accepted"]
    rows = {
        "original": against_original.to_dict(),
        "competent (batch 32)": against_competent.to_dict(),
    }
    print()
    fidelity = report.fidelity.value if report.fidelity else None
    print(f"kept: {', '.join(accepted) or 'nothing'}; fidelity {fidelity}")
    print(f"{'optimized against':22s} {'throughput':>22s} {'P99 latency':>22s}")
    for name, data in rows.items():
        s, ci = data["speedup"], data["ci"]
        print(
            f"{name:22s} {s['throughput']:8.2f}x [{ci['throughput'][0]:.2f}, "
            f"{ci['throughput'][1]:.2f}] {s['p99']:8.2f}x [{ci['p99'][0]:.2f}, {ci['p99'][1]:.2f}]"
        )
    machine = detect_machine()
    result = {
        "benchmark": "loop.demo_queries",
        "command": "python -m benchmarks.loop.demo_queries" + (" --quick" if args.quick else ""),
        "machine": {"cpu": machine.cpu, "cores": machine.cores, "fingerprint": machine.fingerprint},
        "items": len(items),
        "accepted": accepted,
        "trials": [
            {
                "proposal": t.proposal,
                "status": t.status,
                "reason": t.reason,
                "estimated": t.est_speedup,
                "measured": t.speedup,
            }
            for t in report.trials
        ],
        "fidelity": report.fidelity.to_dict() if report.fidelity else None,
        "against": rows,
        "summary": summary(rows),
        "load_average": list(os.getloadavg()),
        "seconds": elapsed,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing["demo_queries"] = result
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"\n{elapsed:.0f} s; results in {args.out}")
    return result


def summary(rows: dict[str, Any]) -> dict[str, Any]:
    """Both ratios side by side, with the P99 change (a P99 is given only where 100 or more
    latency samples per side stand behind it) and the coverage each figure rests on."""
    out: dict[str, Any] = {}
    for name, data in rows.items():
        samples = data.get("samples_per_side") or data["a"]["items"]
        p99 = data["speedup"].get("p99")
        out[name] = {
            "throughput_ratio": data["speedup"]["throughput"],
            "throughput_ci": data["ci"]["throughput"],
            "p99_ratio": p99 if samples >= 100 else f"n/a ({samples} samples)",
            "p99_ms": {"reference": data["a"]["latency_ms"].get("p99"),
                       "optimized": data["b"]["latency_ms"].get("p99")},
            "samples_per_side": samples,
            "inputs_timed": data.get("inputs_timed"),
            "inputs_total": data.get("inputs_total"),
        }  # fmt: skip
    out["trade_offs"] = (
        "a P99 ratio below 1 is a slower tail: a batch served in windows makes single "
        "queries wait for their batch; the cache's gain rests on the Zipf(1.1) repeat rate"
    )
    return out


if __name__ == "__main__":
    main()
