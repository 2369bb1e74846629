"""Is the validator honest? Its false-accept and true-accept rates on known candidates.

Run from the repository root::

    python -m benchmarks.loop.validator_calibration          # 20 repetitions (~20 min)
    python -m benchmarks.loop.validator_calibration --quick  # 3 repetitions, a smoke run

The reference pipeline does real work on each input — a pure-Python hashing loop over the
text (``tokenize``: holds the GIL) and a chain of numpy matrix-vector products
(``encode``) — then labels it. Its work is counted in *units* (hashing rounds, matrix
products); the label depends on the first unit and every unit feeds a checksum carried
along (no dead code), so a candidate doing exactly ``1/k`` of the units gives the same
labels with ``k`` times less work — no sleeping, no pretending:

=============  ============================================  ===========  ==============
scenario       candidate                                     min_gain     target
=============  ============================================  ===========  ==============
``null``       the same pipeline (a fresh copy)               0            accepted <= 1/20
``faster``     207 -> 180 units in both stages: 1.15x work    0.05 (dflt)  accepted >= 18/20
``slower``     207 -> 230 units: 0.9x                         0.05         rejected 20/20
``lossy``      1.15x faster, 2 % of the labels changed        0.05         rejected 20/20
=============  ============================================  ===========  ==============

Each repetition validates all four candidates one after the other (side by side, so drift
on the machine hits every scenario alike), each with a fresh ``Validator`` running its
default settings: 8 ABBA rounds of about 0.5 s per pass covering at least 100 distinct
held-out inputs spread over the split, expanded-percentile bootstrap interval (a trial the
first 8 rounds leave undecided gets a second look at 16 rounds, each look at 97.5 %),
fidelity on all 300 held-out inputs against the original's labels. Each outcome records
how many distinct inputs and latency samples per side it rests on, and the run-queue wait
while it was measured. Threads are
pinned to 1 for both sides. The end-to-end work ratio of each candidate is also measured
directly through ``compare`` (paired rounds over all held-out inputs, an interval) and
reported, since per-input overhead that does not scale makes "1.15x less work" slightly
less than 1.15x faster.

Results: a table on stdout and ``benchmarks/results/loop.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change
from pipetune.core.measure.timed_pass import RuntimeSpec
from pipetune.core.measure.validator import Validator, ValidatorSettings
from pipetune.core.runtime.machine import detect_machine
from pipetune.core.runtime.threads import pin_threads, thread_settings

RESULTS = Path(__file__).resolve().parents[1] / "results" / "loop.json"
BASE_UNITS = 207  # 207 / 180 = 1.15 exactly; 207 / 230 = 0.9 exactly
UNITS = {"null": 207, "faster": 180, "slower": 230, "lossy": 180}
MIN_GAIN = {"null": 0.0, "faster": 0.05, "slower": 0.05, "lossy": 0.05}
WIDTH = 96
LABELS = 7


def tokenize(text: str, *, units: int) -> tuple[int, int]:
    """Pure-Python hashing over the text, ``units`` rounds (real work, holds the GIL).

    The label depends on the first round; every round feeds a checksum that is carried
    along, so no round is dead code, and a candidate with fewer rounds gives the same
    labels while doing proportionally less work."""
    first = checksum = 0
    for round_ in range(units):
        h = 2166136261 ^ round_
        for ch in text:
            h = ((h ^ ord(ch)) * 16777619) & 0xFFFFFFFF
        if round_ == 0:
            first = h
        checksum ^= h
    return first, checksum


def encode(hashed: tuple[int, int], *, units: int, weights: np.ndarray) -> tuple[np.ndarray, float]:
    """``units`` matrix-vector products (real numpy work); the label uses the first."""
    first, checksum = hashed
    v = np.random.default_rng(first).standard_normal(WIDTH)
    out = np.tanh(weights @ v)
    state, energy = out, float(checksum & 0xFF)
    for _ in range(units - 1):
        state = np.tanh(weights @ state)
        energy += float(state[0])
    return out, energy


def label(encoded: tuple[np.ndarray, float], *, flips: frozenset[int]) -> int:
    out, _ = encoded
    value = int(np.argmax(out[:LABELS]))
    return (value + 1) % LABELS if _key(out) in flips else value


def _key(v: np.ndarray) -> int:
    return hash(np.round(v[:4], 6).tobytes())


def build(units: int, weights: np.ndarray, flips: frozenset[int] = frozenset()) -> Pipeline:
    return Pipeline(
        f"calibration-{units}",
        (
            Stage("tokenize", tokenize, kind="tokenize", slots={"units": units}),
            Stage("encode", encode, kind="inference", slots={"units": units, "weights": weights}),
            Stage("label", label, kind="postprocess", slots={"flips": flips}),
        ),
        output_kind="labels",
    )


def make_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(500)]
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 9)))) for _ in range(n)]


def lossy_flips(pipeline: Pipeline, items: list[str], every: int = 50) -> frozenset[int]:
    """Exactly 2 % of the held-out inputs (every 50th) get another label."""
    prefix = Pipeline("prefix", pipeline.stages[:2])
    return frozenset(_key(prefix.run(item)[0]) for item in items[::every])


def work_ratio(base: Pipeline, other: Pipeline, items: list[str], rounds: int) -> dict[str, Any]:
    """``other``'s speed against ``base`` measured directly through ``compare`` (paired
    rounds, an interval), as a results row: the end-to-end ratio the known work ratio
    gives once the per-input overhead that does not scale is counted."""
    from pipetune.core.measure.comparison import CompareSettings

    return common.side_by_side(
        base, other, items, settings=CompareSettings(rounds=rounds), threads=1
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 repetitions (a smoke run)")
    parser.add_argument("--repetitions", type=int, default=None)
    args = parser.parse_args(argv)
    repetitions = args.repetitions or (3 if args.quick else 20)

    weights = (np.random.default_rng(0).standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(
        np.float64
    )
    items = make_texts(300, seed=1)
    labels = None
    pm = get_plugin_manager(entry_points=False)
    original = build(BASE_UNITS, weights)
    candidates = {name: build(units, weights) for name, units in UNITS.items()}
    candidates["lossy"] = build(UNITS["lossy"], weights, lossy_flips(original, items))
    labels = tuple(original.run(item) for item in items)
    workload = Workload(items=tuple(items), labels=labels, name="calibration")
    settings = ValidatorSettings()  # the defaults under test (8 rounds, a second look to 16)
    artifacts = ArtifactStore(Path(".pipetune") / "artifacts")

    outcomes: dict[str, list[dict[str, Any]]] = {name: [] for name in UNITS}
    started = time.perf_counter()
    with pin_threads(1), common.host_load() as load:
        direct = {
            name: work_ratio(original, candidate, items, rounds=4 if args.quick else 8)
            for name, candidate in candidates.items()
        }
        ratios = {name: row["speedup"] for name, row in direct.items()}
        threads = thread_settings()
        for repetition in range(repetitions):
            for name, candidate in candidates.items():
                validator = Validator(
                    pm,
                    original,
                    workload,
                    Requirements(min_gain=MIN_GAIN[name]),
                    artifacts=artifacts,
                    runtime=RuntimeSpec(threads=1),
                    settings=settings,
                )
                change = Change(proposal=f"bench.{name}", plugin="bench", stage="*")
                trial = validator.validate(change, original, candidate).trial
                measured = trial.notes.get("comparison", {})
                outcomes[name].append(
                    {
                        "rounds": measured.get("rounds"),
                        "inputs_timed": measured.get("inputs_timed"),
                        "inputs_total": measured.get("inputs_total"),
                        "samples_per_side": measured.get("samples_per_side"),
                        "run_queue_wait": (measured.get("host_load") or {}).get("run_queue_wait"),
                        "status": trial.status,
                        "speedup": trial.speedup,
                        "ci": list(trial.speedup_ci) if trial.speedup_ci else None,
                        "fidelity": trial.fidelity.value if trial.fidelity else None,
                        "reason": trial.reason,
                    }
                )
                print(
                    f"rep {repetition + 1:2d} {name:7s} {trial.status:9s} {trial.reason}",
                    flush=True,
                )
    elapsed = time.perf_counter() - started

    targets = {
        "null": ("accepted", lambda n: n <= repetitions / 20),
        "faster": ("accepted", lambda n: n >= 0.9 * repetitions),
        "slower": ("accepted", lambda n: n == 0),
        "lossy": ("accepted", lambda n: n == 0),
    }
    summary = {}
    print()
    print(
        f"{'scenario':9s} {'work ratio':>10s} {'accepted':>9s} {'median speedup':>15s} "
        f"{'median CI':>18s} {'target':>14s}"
    )
    for name, rows in outcomes.items():
        accepted = sum(r["status"] == "accepted" for r in rows)
        speeds = [r["speedup"] for r in rows if r["speedup"] is not None]
        lows = [r["ci"][0] for r in rows if r["ci"]]
        highs = [r["ci"][1] for r in rows if r["ci"]]
        _, check = targets[name]
        met = check(accepted)
        summary[name] = {
            "work_ratio": ratios[name],
            "work_ratio_measured": direct[name],
            "accepted": accepted,
            "repetitions": repetitions,
            "median_speedup": statistics.median(speeds) if speeds else None,
            "median_ci": [statistics.median(lows), statistics.median(highs)] if lows else None,
            "min_gain": MIN_GAIN[name],
            "target_met": met,
            "fidelity": rows[0]["fidelity"],
            "min_inputs_timed": min((r["inputs_timed"] or 0) for r in rows),
            "min_samples_per_side": min((r["samples_per_side"] or 0) for r in rows),
            "max_run_queue_wait": max((r["run_queue_wait"] or 0.0) for r in rows),
        }
        ci = summary[name]["median_ci"]
        print(
            f"{name:9s} {ratios[name]:9.3f}x {accepted:4d}/{repetitions:<4d} "
            f"{(summary[name]['median_speedup'] or 0):14.3f}x "
            f"{'-' if not ci else f'[{ci[0]:.3f}, {ci[1]:.3f}]':>18s} "
            f"{'met' if met else 'MISSED':>14s}"
        )
    machine = detect_machine()
    result = {
        "benchmark": "loop.validator_calibration",
        "command": "python -m benchmarks.loop.validator_calibration"
        + (" --quick" if args.quick else "")
        + (f" --repetitions {args.repetitions}" if args.repetitions else ""),
        "loadavg_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "host_load": load,
        "machine": {
            "cpu": machine.cpu,
            "cores": machine.cores,
            "logical_cores": machine.logical_cores,
            "fingerprint": machine.fingerprint,
        },
        "threads": threads,
        "settings": {
            "rounds": settings.compare.rounds,
            "max_rounds": settings.compare.max_rounds,
            "round_target_s": settings.compare.round_target_s,
            "confidence": settings.compare.confidence,
            "bootstrap": settings.compare.bootstrap,
            "min_inputs": settings.compare.min_inputs,
            "holdout_items": len(items),
        },
        "seconds": elapsed,
        "summary": summary,
        "outcomes": outcomes,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing["validator_calibration" + ("" if repetitions >= 20 else "_smoke")] = result
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    print(f"\n{elapsed:.0f} s; results in {RESULTS}")
    return result


if __name__ == "__main__":
    main()
