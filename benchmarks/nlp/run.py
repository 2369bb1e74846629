"""The nlp benchmark: the headline demo side by side, in one run.

    python -m benchmarks.nlp.run                      # the full demo workload (set-up cached)
    python -m benchmarks.nlp.run --parts pipelines    # part 3 alone, merged into the JSON
    python -m benchmarks.nlp.run --quick --output /tmp/nlp_quick.json   # a smoke run

Parts, all on the demo's document stream (``pipetune.demos.nlp.docgen``):

1. **Tokenizer**: measured on its own, through ``compare``, by
   :mod:`benchmarks.nlp.tokenizer` (``python -m benchmarks.nlp.tokenizer``); this script
   builds the same Rust tokenizer (:func:`benchmarks.nlp.tokenizer.rust_swap`) for the
   parts below.
2. **Truncation search**: the plugin's tune step on the tuning half of the workload
   (calibration + held-out inside it), against the cached full-length baseline outputs;
   the agreement curve; the chosen length re-checked on every document.
3. **Pipelines** (a composition study, :mod:`benchmarks.nlp.pipelines`): the baseline,
   each nlp change alone, every nlp change together, the same composed with the generic
   plugin's batching and a per-section cache, and the *library-defaults* baseline
   (:func:`pipetune.demos.nlp.demo.library_defaults_pipeline`: ``AutoTokenizer``'s Rust
   tokenizer, the model's own ``max_seq_length``, sections sorted by length, 32 per
   forward pass). Each against the baseline through ``compare`` (documents spread over the
   whole workload, an interval, what each figure rests on), the composed ones and the
   baseline also against the library defaults. Label agreement with the baseline on the
   whole workload (>= 300 documents) for the composed pipelines; on the documents their
   comparison timed for the single changes that keep 512-token padding (re-running them
   on 300 documents would take as long as the baseline itself).
4. **The optimize loop** (``pipetune.optimize``) on the demo, as ``pipetune demo`` runs it.
5. **Side by side**: the loop's pipeline against the teaching baseline and against the
   library-defaults baseline, each through
   :func:`pipetune.core.measure.comparison.compare` with the same settings (paired,
   interleaved rounds, an interval, the inputs and samples each figure rests on), with
   the P99 change and each side's label agreement with the baseline on every document.

Writes the top level of ``benchmarks/results/nlp.json`` (keeping the other scripts' keys,
:data:`OTHER_SCRIPTS`) and prints a table. ``--parts`` runs a subset (:data:`PARTS`) and
merges its keys (:data:`PART_KEYS`) into the existing file, keeping every other key; part
3 alone takes the truncation length from that file's part 2 (or runs part 2 when the file
has none). Timings on a shared machine are noisy; every ratio carries its interval.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.nlp.pipelines import agreement, served

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parents[1] / "results" / "nlp.json"
#: Keys of nlp.json that other scripts write (classifier, tokenizer, demo_time): kept.
OTHER_SCRIPTS = (
    "one_at_a_time_classifier",
    "tokenizer_side_by_side",
    "tokenizer_side_by_side_quick",
    "demo_time",
    "demo_time_quick",
)
#: The parts ``--parts`` selects, and the keys of nlp.json each writes (part 1 is
#: ``benchmarks.nlp.tokenizer``; parts 4 and 5 run together).
PARTS = ("truncation", "pipelines", "optimize")
PART_KEYS = {
    "truncation": ("truncation",),
    "pipelines": ("length_bucketing_batch", "pipelines", "fidelity_all_documents"),
    "optimize": ("optimize", "side_by_side"),
}


def _now() -> float:
    return time.perf_counter()


# -- part 2: truncation search ---------------------------------------------------------------


def bench_truncation(pm: Any, pipeline: Any, setup: Any, store: Any, log: Callable) -> dict:
    from pipetune import Proposal
    from pipetune.core.kernel.context import TuneContext
    from pipetune.plugins.nlp.changes.truncation import evaluate_outputs, tune_truncation

    workload = setup.workload
    baseline = list(setup.notes["baseline_outputs"])
    index = {text: i for i, text in enumerate(workload.items)}
    tune_split, _ = workload.split(0.5)
    context = TuneContext(
        pm,
        setup.pipeline,
        tune_split,
        setup.requirements,
        store,
        baseline_outputs=[baseline[index[t]] for t in tune_split.items],
        log=log,
    )
    proposal = Proposal(
        "nlp.truncation", "nlp", "embed", "truncate", params={"slot_stage": "tokenize"}
    )
    t0 = _now()
    tuned = tune_truncation(proposal, pipeline, tune_split, context)
    search_s = _now() - t0
    chosen = tuned.params["max_length"]
    check = pipeline.replace("tokenize", pipeline.stage("tokenize").with_slots(max_length=chosen))
    everywhere = agreement(evaluate_outputs(check, list(workload.items)), baseline)
    return {
        "searched_on": "the pipeline with the Rust tokenizer and dynamic padding applied",
        "tuning_documents": len(tune_split),
        "chosen_max_length": chosen,
        "curve": tuned.notes["curve"],
        "search_seconds": round(search_s, 1),
        "agreement_on_all_documents_at_chosen": everywhere,
    }


# -- part 4: the optimize loop -------------------------------------------------------------------


def bench_optimize(setup: Any, log: Callable) -> tuple[dict, Any]:
    """``pipetune.optimize`` on the demo with its cached baseline outputs, as
    ``pipetune demo`` runs it; the report's headline figures, and the pipeline."""
    from pipetune.core.loop.optimize import optimize

    t0 = _now()
    optimized, report = optimize(
        setup.pipeline,
        setup.workload,
        setup.requirements,
        store=False,
        log=log,
        baseline_outputs=setup.baseline_outputs,
    )
    data = report.to_dict()
    return {
        "seconds": round(_now() - t0, 1),
        "kept": [
            t.get("proposal") for t in data.get("trials", []) if t.get("status") == "accepted"
        ],
        "cache": {
            t.get("proposal"): (t.get("notes") or {}).get("cache")
            for t in data.get("trials", [])
            if (t.get("notes") or {}).get("cache")
        },
        "speedup": data.get("speedup"),
        "cost": data.get("cost"),
        "requirements_met": data.get("requirements_met"),
        "trials": [
            {
                k: t.get(k)
                for k in ("proposal", "stage", "status", "reason", "speedup", "speedup_ci")
            }
            | {"fidelity": (t.get("fidelity") or {}).get("value")}
            for t in data.get("trials", [])
        ],
        "stopped": data.get("stopped"),
        "not_tried": {
            f"{p.get('id')}@{p.get('stage')}": p.get("not_tried")
            for p in data.get("proposals", [])
            if p.get("not_tried")
        },
        "in_flight": [f"{name}: {need.describe()}" for name, need in _kept_needs(report)],
        "baseline_throughput_rps": data["baseline"]["throughput_rps"],
        "final_throughput_rps": data["final"]["throughput_rps"],
    }, (optimized, report)


def _kept_needs(report: Any) -> list[tuple[str, Any]]:
    """What each kept change needs in flight to show its gain (those that need any)."""
    return [
        (t.proposal, t.change.in_flight)
        for t in report.trials
        if t.status == "accepted" and t.change is not None and t.change.in_flight
    ]


# -- part 5: side by side through compare ---------------------------------------------------------


def bench_side_by_side(setup: Any, found: Any, quick: bool, log: Callable) -> dict:
    """The loop's pipeline against the teaching baseline and the library-defaults one,
    each through ``compare`` with the same settings, and the trade-offs beside them. The
    passes hold what the kept changes need in flight (a cold cache misses the first sight
    of every section, so a pass of a dozen documents would understate it), as the loop's
    own final measurement does."""
    from pipetune.core.measure.comparison import CompareSettings, compare
    from pipetune.core.measure.coverage import merge_in_flight
    from pipetune.demos.nlp.demo import library_defaults_pipeline

    optimized, report = found
    needs = [need for _, need in _kept_needs(report)]

    base = setup.pipeline
    library = library_defaults_pipeline(
        base.stage("embed").slots["model"], base.stage("classify").slots["head"]
    )
    items = list(setup.workload.items)
    baseline = list(setup.notes["baseline_outputs"])
    in_flight = merge_in_flight(*needs)
    settings = CompareSettings(rounds=4 if quick else 8, in_flight=in_flight)
    out: dict[str, Any] = {
        "settings": {
            "rounds": settings.rounds,
            "in_flight": None if in_flight is None else in_flight.assumes,
            "pass_inputs": None if in_flight is None else in_flight.pass_inputs,
        }
    }
    for name, reference in (("teaching baseline", base), ("library defaults", library)):
        log(f"part 5: the loop's pipeline against the {name}")
        result = compare(reference, optimized, items, settings=settings, log=log)
        data = result.to_dict()
        out[name] = {
            "throughput_ratio": result.speedup["throughput"],
            "throughput_ci": list(result.ci["throughput"]),
            "p99_ratio": result.speedup.get("p99"),
            "p99_ms": {"reference": result.a.latency_ms.get("p99"),
                       "optimized": result.b.latency_ms.get("p99")},
            "docs_per_s": {"reference": result.a.throughput_rps,
                           "optimized": result.b.throughput_rps},
            "coverage": {k: data.get(k) for k in ("inputs_timed", "inputs_total",
                                                  "samples_per_side", "host_load")},
            "comparison": data,
        }  # fmt: skip
    out["agreement_with_teaching_baseline"] = {
        "optimized": agreement(served(optimized, items), baseline),
        "library defaults": agreement(served(library, items), baseline),
    }
    out["trade_offs"] = [
        "P99 ratios above 1 mean the optimized pipeline's P99 is lower; a batch served in "
        "windows raises single-document latency where batching is kept",
        "the library-defaults baseline truncates sections at the model's max_seq_length "
        "(256), so it does not give the teaching baseline's answers on every document",
    ]
    return out


# -- main ------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny demo: a smoke run")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated subset of {','.join(PARTS)}; a subset is merged into "
        "--output, keeping its other keys",
    )
    parser.add_argument("--output", "--out", dest="output", type=Path, default=RESULTS)
    parser.add_argument(
        "--no-optimize",
        action="store_true",
        help="skip the optimize loop (parts 4-5; the other keys are then merged, as --parts)",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's own)"
    )
    args = parser.parse_args(argv)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(f"unknown part(s): {', '.join(unknown) or '(none given)'}")
    if args.no_optimize:
        parts = [p for p in parts if p != "optimize"]
    partial = set(parts) != set(PARTS)
    if args.quick and partial and args.output.resolve() == RESULTS.resolve():
        parser.error(
            "a partial smoke run would merge smoke figures into the full results: "
            "pass --output /tmp/nlp_quick.json"
        )
    previous = _read(args.output) if partial else {}

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    import pipetune
    from benchmarks.nlp.pipelines import (
        Sizing,
        bench_pipelines,
        build_variants,
        fidelity_everywhere,
    )
    from benchmarks.nlp.tokenizer import rust_swap
    from pipetune.core.kernel import dispatch
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.results import Change
    from pipetune.core.runtime.machine import detect_machine
    from pipetune.demos.nlp.demo import build_demo

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = _now()
    chosen = _chosen_length(previous, args.quick) if "truncation" not in parts else None
    if "pipelines" in parts and "truncation" not in parts:
        if chosen is None:
            log(f"no truncation length in {args.output} from a like run: running part 2 too")
            parts = ["truncation", *parts]
        else:
            log(f"part 3 takes the truncation length {chosen} from {args.output} (part 2)")
    setup = build_demo(quick=args.quick, log=log)
    pm = pipetune.get_plugin_manager(entry_points=False)
    store = ArtifactStore(Path(tempfile.mkdtemp(prefix="pipetune-nlp-bench-")))
    workload = setup.workload
    log(f"workload: {len(workload)} documents; parts: {', '.join(parts)}")
    command = " ".join(["python -m benchmarks.nlp.run", *(argv or sys.argv[1:])])
    machine = detect_machine(
        threads={"torch": torch.get_num_threads(), "interop": torch.get_num_interop_threads()}
    ).to_dict()
    results: dict[str, Any] = {
        "machine": machine,
        "command": command,
        "load_average_at_start": list(os.getloadavg()),
        "workload": {
            "documents": len(workload),
            "description": setup.description,
            "baseline_accuracy_vs_generator_labels": setup.notes["baseline_accuracy"],
            "setup": setup.notes["setup"],
        },
    }

    if "truncation" in parts or "pipelines" in parts:
        # The Rust tokenizer, built and verified id-for-id by the plugin's own tune step.
        rust_change, swapped, rust_verified = rust_swap(pm, setup, store, log)
        results["rust_tokenizer_verification"] = rust_verified
        padding = Change("nlp.dynamic_padding", "nlp", "embed", {"slot_stage": "tokenize"})
        dynamic = dispatch.materialize(pm, padding, swapped, store.root)

    if "truncation" in parts:
        log("part 2: truncation search")
        results["truncation"] = bench_truncation(pm, dynamic, setup, store, log)
        chosen = results["truncation"]["chosen_max_length"]

    if "pipelines" in parts:
        assert chosen is not None
        log("part 3: pipelines")
        batch = bucketing_batch(pm, dynamic, setup, store, log)
        results["length_bucketing_batch"] = batch
        variants = build_variants(pm, setup, rust_change, store, chosen, batch)
        sizing = Sizing.quick() if args.quick else Sizing.full()
        results["pipelines"] = {
            "command": command,
            "quick": args.quick,
            "machine": machine,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "truncation_max_length": chosen,
            **bench_pipelines(variants, setup, sizing, log),
        }
        results["fidelity_all_documents"] = fidelity_everywhere(variants, setup, log)

    if "optimize" in parts:
        log("part 4: the optimize loop")
        results["optimize"], found = bench_optimize(setup, log)
        results["side_by_side"] = bench_side_by_side(setup, found, args.quick, log)
    results["seconds"] = round(_now() - started, 1)
    results["load_average_at_end"] = list(os.getloadavg())

    if partial:
        merge_results(args.output, results, previous, parts)
    else:
        write_results(args.output, results)
    print_table(results)
    print(f"\nwritten to {args.output}")
    return 0


def _read(path: Path) -> dict[str, Any]:
    """The results already in ``path`` (empty when there are none)."""
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _chosen_length(previous: dict[str, Any], quick: bool) -> int | None:
    """Part 2's truncation length from earlier results, when they come from a run of the
    same kind (a smoke run's length never feeds a full run's part 3, nor the reverse)."""
    found = (previous.get("truncation") or {}).get("chosen_max_length")
    was_quick = "--quick" in str(previous.get("command") or "").split()
    return int(found) if found is not None and was_quick == quick else None


def bucketing_batch(pm: Any, dynamic: Any, setup: Any, store: Any, log: Callable) -> int:
    """The length-bucketing batch size the plugin's tune step picks (16 when rejected)."""
    import pipetune
    from pipetune import Proposal
    from pipetune.core.kernel.context import TuneContext
    from pipetune.plugins.nlp.changes.length_bucketing import tune_bucketing

    workload = setup.workload
    context = TuneContext(pm, dynamic, workload, setup.requirements, store, log=log)
    proposal = Proposal(
        "nlp.length_bucketing", "nlp", "embed", "bucket", params={"candidates": [4, 8, 16]}
    )
    try:
        return int(tune_bucketing(proposal, dynamic, workload, context).params["batch_size"])
    except pipetune.Rejected as exc:
        log(f"length bucketing rejected: {exc}")
        return 16


def write_results(path: Path, results: dict[str, Any]) -> None:
    """Write this benchmark's results, keeping the other scripts' keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(path.read_text()) if path.exists() else {}
    kept = {k: v for k, v in existing.items() if k in OTHER_SCRIPTS}
    path.write_text(json.dumps({**results, **kept}, indent=1, default=str) + "\n")


def merge_results(
    path: Path, results: dict[str, Any], previous: dict[str, Any], parts: Sequence[str]
) -> None:
    """Write the keys of the ``parts`` that ran into ``path``, keeping every other key
    there (its command, machine and load stay those of the run that wrote them; part 3
    carries its own). This run's top-level keys fill in only what the file lacks."""
    ran = {key: results[key] for part in parts for key in PART_KEYS[part] if key in results}
    path.parent.mkdir(parents=True, exist_ok=True)
    merged = {**results, **previous, **ran}
    path.write_text(json.dumps(merged, indent=1, default=str) + "\n")


def print_table(results: dict) -> None:
    """What this run measured (the parts it ran), as a few plain-text tables."""
    trunc = results.get("truncation")
    if trunc:
        curve = ", ".join(
            f"{p['max_length']} {p['split'][:3]} {p['agreement']:.1%}" for p in trunc["curve"]
        )
        print(f"Truncation search: chose {trunc['chosen_max_length']} ({curve})")
        print(
            f"  at {trunc['chosen_max_length']} on all documents: "
            f"{trunc['agreement_on_all_documents_at_chosen']['agreement']:.2%}"
        )
    if results.get("pipelines"):
        print_pipelines(results["pipelines"], results.get("fidelity_all_documents") or {})
    side = results.get("side_by_side")
    if side:
        print("\nThe loop's pipeline, side by side (compare):")
        for name in ("teaching baseline", "library defaults"):
            row = side[name]
            low, high = row["throughput_ci"]
            p99 = row["p99_ratio"]
            print(
                f"  against the {name}: {row['throughput_ratio']:.2f}x [{low:.2f}, {high:.2f}] "
                f"throughput; P99 {p99:.2f}x"
                if p99
                else f"  against the {name}: "
                f"{row['throughput_ratio']:.2f}x [{low:.2f}, {high:.2f}] throughput"
            )


def print_pipelines(pipes: dict[str, Any], fidelity: dict[str, Any]) -> None:
    """Part 3's rows: each ratio with its interval, and what it rests on."""

    def ratio(found: dict[str, Any] | None) -> str:
        if not found:
            return "-"
        low, high = found["ci"]
        return f"{found['speedup']:.2f}x [{low:.2f}, {high:.2f}]"

    print(f"\nPipelines (through compare, {pipes['documents']} documents in the workload)")
    print(f"{'pipeline':45} {'docs/s':>7} {'vs baseline':>20} {'vs library':>20} "
          f"{'agree':>7} {'hits':>5}  rests on (vs baseline)")  # fmt: skip
    for row in pipes["rows"]:
        agree = (fidelity.get(row["name"]) or row.get("agreement_on_sample") or {}).get("agreement")
        hits = row.get("cache_hit_rate")
        base = row.get("vs_baseline") or {}
        rests = (
            f"{base['inputs_timed']} of {base['inputs_total']} docs, "
            f"{base['samples_per_side']} samples/side, {base['rounds']} rounds"
            if base
            else "-"
        )
        print(
            f"{row['name'][:45]:45} {row['docs_per_s']:7.2f} {ratio(base or None):>20} "
            f"{ratio(row.get('vs_library_defaults')):>20} "
            f"{'-' if agree is None else f'{agree:.0%}':>7} "
            f"{'' if hits is None else f'{hits:.0%}':>5}  {rests}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
