"""How far the planner's estimates move from one profile of a pipeline to the next, and
that they do not move at all on one profile.

Run from the repository root::

    python -m benchmarks.loop.estimates                   # video and queries demos, 5 profiles each
    python -m benchmarks.loop.estimates --quick           # the small queries demo, 2 profiles
    python -m benchmarks.loop.estimates --demos video --profiles 8

``pipetune propose`` and ``pipetune optimize`` each profile the pipeline, and each plans on
its own profile. For each demo this takes ``--profiles`` profiles of the same pipeline one
after another (what the two commands do), plans on each, and plans a second time on the
first profile. Per proposal it records the end-to-end estimate on every profile (min,
median, max and max / min: how far two commands' figures can differ on this host), the
plugin's stage estimate behind it (often measured by the profile itself), the ceilings and
whether they are informative enough to print, and whether the second plan on the same
profile gave identical figures (it must: the estimate is a function of the profile).

Results: a table on stdout and ``benchmarks/results/loop.json`` (key ``estimates``), with
the number of profiles each figure rests on, the inputs each profile timed, and the host's
load over the run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "loop.json"
DEMOS = ("video", "queries")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small demos, 2 profiles")
    parser.add_argument("--demos", default="", help=f"comma-separated (default {DEMOS})")
    parser.add_argument("--profiles", type=int, default=0, help="profiles per demo (default 5)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results JSON to update")
    args = parser.parse_args(argv)
    demos = [d for d in args.demos.split(",") if d] or (["queries"] if args.quick else DEMOS)
    count = args.profiles or (2 if args.quick else 5)

    from pipetune.core.measure.load import HostLoadMeter

    meter = HostLoadMeter().start()
    started = time.perf_counter()
    rows = {name: measure_demo(name, count, quick=args.quick) for name in demos}
    load = meter.stop().to_dict()
    result = {
        "what": "the planner's end-to-end estimate per proposal on successive profiles of "
        "one pipeline (as propose and optimize each take), and a second plan on one profile",
        "quick": args.quick,
        "profiles_per_demo": count,
        "demos": rows,
        "host_load": load,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "seconds": time.perf_counter() - started,
    }
    print_table(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing["estimates"] = result
    args.out.write_text(json.dumps(existing, indent=2, default=str) + "\n")
    print(f"\n{result['seconds']:.0f} s; host load {load}; results in {args.out}")
    return 0


def measure_demo(name: str, count: int, *, quick: bool) -> dict[str, Any]:
    """``count`` profiles of demo ``name``, a plan on each and a second on the first."""
    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.core.loop import planner
    from pipetune.core.measure.profiler import profile

    pm = get_plugin_manager()
    _, entry = pm.demos()[name]
    setup = entry.build(quick)
    plans, timed = [], []
    for _ in range(count):
        measured = profile(setup.pipeline, setup.workload, pm=pm)
        timed.append(measured.samples)
        plans.append((measured, planner.plan(pm, setup.pipeline, measured, setup.requirements)))
    first_profile, first_plan = plans[0]
    again = planner.plan(pm, setup.pipeline, first_profile, setup.requirements)
    same = [planner.describe(r) for r in first_plan.all()] == [
        planner.describe(r) for r in again.all()
    ]
    return {
        "metric": first_plan.metric,
        "profiles": count,
        "latency_samples_per_profile": timed,
        "same_plan_on_one_profile": same,
        "proposals": proposal_spread([plan for _, plan in plans]),
    }


def proposal_spread(plans: list[Any]) -> dict[str, dict[str, Any]]:
    """Each proposal's figures across the plans (a proposal missing from a plan — its
    plugin did not propose it on that profile — is counted, not guessed)."""
    keys = dict.fromkeys(r.key for plan in plans for r in plan.all())
    out = {}
    for key in keys:
        found = [next((r for r in plan.all() if r.key == key), None) for plan in plans]
        ranked = [r for r in found if r is not None]
        estimates = [r.est_e2e_speedup for r in ranked]
        out[key] = {
            "proposed_on": len(ranked),
            "estimates": estimates,
            "stage_estimates": [r.proposal.est_stage_speedup for r in ranked],
            "min": min(estimates),
            "median": statistics.median(estimates),
            "max": max(estimates),
            "max_over_min": max(estimates) / min(estimates) if min(estimates) > 0 else None,
            "ceilings": [r.ceiling for r in ranked],
            "ceilings_printed": [r.ceiling_informative for r in ranked],
        }
    return out


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print(f"{'demo':8} {'proposal':44} {'n':>3} {'min':>8} {'median':>8} {'max':>8} {'max/min':>8}")
    for name, row in rows.items():
        print(
            f"{name}: {row['metric']}, same plan on one profile: {row['same_plan_on_one_profile']}"
        )
        for key, figures in row["proposals"].items():
            ratio = figures["max_over_min"]
            print(
                f"{'':8} {key:44} {figures['proposed_on']:>3} {figures['min']:>7.2f}x "
                f"{figures['median']:>7.2f}x {figures['max']:>7.2f}x "
                f"{'-' if ratio is None else f'{ratio:.2f}':>8}"
            )


if __name__ == "__main__":
    raise SystemExit(main())
