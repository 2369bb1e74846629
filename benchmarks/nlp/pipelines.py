"""Part 3 of the nlp benchmark: the demo pipeline's variants side by side, through compare.

Ten pipelines: the teaching baseline, each nlp change alone, every nlp change together
(one document a call), the same served in batches of 32 documents, the same with the
generic plugin's per-section cache, and the *library-defaults* baseline (what a
competent team ships untuned). Each variant is measured against the baseline through
:func:`pipetune.core.measure.comparison.compare` (paired ABBA rounds, a bootstrap
interval, inputs spread over the whole workload); the composed variants and the baseline
also against the library-defaults pipeline. The batched variants are
:class:`~pipetune.Pipeline` objects whose ``meta["serving"]`` asks for batches of 32, so
``compare`` serves them that way and gives their passes two full batches; the section
cache implements ``pipetune_reset``, so ``compare`` empties it before every timed pass.

Label agreement is computed as before: on every document for the composed and the
library-defaults pipelines (:func:`fidelity_everywhere`); on the documents their
comparison timed for the single changes that keep 512-token padding (running them on
every document would take as long as the baseline itself).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.common import comparison_row

#: Documents a call for the batched variants (the library-defaults pipeline's own size).
BATCH = 32


@dataclass(frozen=True)
class Variant:
    """One pipeline of the study; ``kind``: baseline, alone, composed or competent."""

    name: str
    pipeline: Any
    kind: str


@dataclass(frozen=True)
class Sizing:
    """How hard part 3 looks. The baseline takes ~0.45 s a document on the 2-core host,
    so every comparison against it pays for its passes: per-document variants get
    ``alone_rounds`` rounds of ``alone_inputs`` documents; a batched side needs passes of
    two batches (64 documents, ``compare``'s rule), so its comparisons against the
    baseline get ``batched_rounds`` rounds; comparisons against the (fast)
    library-defaults pipeline get ``library_rounds``. Full: ~400 s of the part's ~12 min
    are the three batched comparisons against the baseline at the fewest rounds
    ``compare`` takes (2 rounds, 4 passes of 64 documents, ~30 s a baseline pass)."""

    alone_rounds: int
    alone_inputs: int
    batched_rounds: int
    library_rounds: int

    @classmethod
    def full(cls) -> Sizing:
        return cls(alone_rounds=4, alone_inputs=3, batched_rounds=2, library_rounds=2)

    @classmethod
    def quick(cls) -> Sizing:
        return cls(alone_rounds=2, alone_inputs=2, batched_rounds=2, library_rounds=2)

    def against_baseline(self, variant: Variant) -> Any:
        from pipetune.core.measure.comparison import CompareSettings

        if _batch(variant.pipeline) > 1:
            return CompareSettings(rounds=self.batched_rounds, items_per_round=2 * BATCH)
        return CompareSettings(rounds=self.alone_rounds, items_per_round=self.alone_inputs)

    def against_library(self) -> Any:
        from pipetune.core.measure.comparison import CompareSettings

        return CompareSettings(rounds=self.library_rounds, items_per_round=2 * BATCH)

    def to_dict(self) -> dict[str, Any]:
        return {
            "per_document_against_baseline": {
                "rounds": self.alone_rounds,
                "documents_per_pass": self.alone_inputs,
            },
            "batched_against_baseline": {
                "rounds": self.batched_rounds,
                "documents_per_pass": 2 * BATCH,
            },
            "against_library_defaults": {
                "rounds": self.library_rounds,
                "documents_per_pass": 2 * BATCH,
            },
        }


def _batch(pipeline: Any) -> int:
    from pipetune.core.runtime.serving import ServingOptions

    return ServingOptions.of(pipeline).batch_size


def build_variants(
    pm: Any, setup: Any, rust_change: Any, store: Any, chosen: int, batch: int
) -> list[Variant]:
    """The ten pipelines, baseline first; ``chosen``: the truncation length part 2
    picked; ``batch``: the length-bucketing batch size the plugin's tune step picked."""
    from benchmarks.nlp.compose import with_section_cache
    from pipetune import Change
    from pipetune.core.kernel import dispatch
    from pipetune.core.kernel.state import reset_state
    from pipetune.core.runtime.serving import with_serving
    from pipetune.demos.nlp.demo import library_defaults_pipeline

    base = setup.pipeline

    def apply(pipeline: Any, *changes: Change) -> Any:
        for change in changes:
            pipeline = dispatch.materialize(pm, change, pipeline, store.root)
        return pipeline

    trunc = Change("nlp.truncation", "nlp", "embed", {"slot_stage": "tokenize",
                                                        "max_length": chosen})  # fmt: skip
    dyn = Change("nlp.dynamic_padding", "nlp", "embed", {"slot_stage": "tokenize"})
    bucket = Change("nlp.length_bucketing", "nlp", "embed", {"batch_size": batch})
    infer = Change("nlp.inference_mode", "nlp", "embed", {})
    everything = apply(base, rust_change, trunc, dyn, bucket, infer)
    # With 32 documents per call, the embed stage pools ~160 sections: length buckets of up
    # to 32 near-equal sequences (the per-document batch size was tuned on ~5 sections).
    pooled = everything.replace(
        "embed", everything.stage("embed").with_slots(batch_size=BATCH, bucket=True)
    )
    cached = with_serving(with_section_cache(pooled), batch_size=BATCH)
    if not reset_state(cached):  # compare must find the cache to empty it before each pass
        raise RuntimeError("the section cache has no pipetune_reset: it would be timed warm")
    competent = library_defaults_pipeline(
        base.stage("embed").slots["model"], base.stage("classify").slots["head"]
    )
    if _batch(competent) != BATCH:
        raise RuntimeError(f"the library-defaults pipeline no longer serves {BATCH} a call")
    return [
        Variant("baseline", base, "baseline"),
        Variant("rust tokenizer alone", apply(base, rust_change), "alone"),
        Variant(f"truncation to {chosen} alone", apply(base, trunc), "alone"),
        Variant("dynamic padding alone", apply(base, dyn), "alone"),
        Variant(f"length bucketing alone (batch {batch})", apply(base, bucket), "alone"),
        Variant("inference_mode alone", apply(base, infer), "alone"),
        Variant("nlp: all changes, one document per call", everything, "composed"),
        Variant(f"nlp + batching ({BATCH} documents)", with_serving(pooled, batch_size=BATCH),
                "composed"),
        Variant("nlp + batching + section cache", cached, "composed"),
        Variant(f"library defaults (AutoTokenizer, max_seq_length, sorted batches of {BATCH})",
                competent, "competent"),
    ]  # fmt: skip


def bench_pipelines(
    variants: Sequence[Variant], setup: Any, sizing: Sizing, log: Callable[[str], None]
) -> dict[str, Any]:
    """Every variant against the baseline, and the composed ones against the library
    defaults, through ``compare``; a results row per variant."""
    from pipetune.core.measure.comparison import compare

    items = list(setup.workload.items)
    baseline_outputs = list(setup.notes["baseline_outputs"])
    base = next(v for v in variants if v.kind == "baseline")
    library = next(v for v in variants if v.kind == "competent")
    base_s = _seconds_per_document(base.pipeline, items)
    log(f"part 3: the baseline takes {base_s:.2f} s a document")
    started, load_at_start = time.perf_counter(), _load_average()
    rows: dict[str, dict[str, Any]] = {}
    for variant in variants:
        row: dict[str, Any] = {"name": variant.name, "kind": variant.kind,
                               "documents_per_call": _batch(variant.pipeline)}  # fmt: skip
        rows[variant.name] = row
        if variant is base:
            continue
        log(f"part 3: {variant.name} against the baseline")
        settings = sizing.against_baseline(variant)
        comparison = compare(
            base.pipeline, variant.pipeline, items, settings=settings,
            expected_item_s=base_s, log=log,
        )  # fmt: skip
        row["vs_baseline"] = _row(comparison, len(items))
        row["cache_hit_rate"] = (comparison.b_cache.get("embed") or {}).get("hit_rate")
        if variant.kind == "alone":  # as before: agreement on the documents it was timed on
            timed = _timed_indices(len(items), comparison.rounds, comparison.items_per_round)
            outputs = served(variant.pipeline, [items[i] for i in timed])
            row["agreement_on_sample"] = agreement(outputs, [baseline_outputs[i] for i in timed])
    for variant in variants:
        if variant.kind != "composed":
            continue
        log(f"part 3: {variant.name} against the library defaults")
        comparison = compare(
            library.pipeline, variant.pipeline, items, settings=sizing.against_library(), log=log
        )
        rows[variant.name]["vs_library_defaults"] = _row(comparison, len(items))
    # The baseline against the library defaults: the same comparison as the library
    # defaults against the baseline, read the other way (the pooled ratio and its
    # percentile interval invert exactly).
    rows[base.name]["vs_library_defaults"] = inverse(rows[library.name]["vs_baseline"])
    rows[library.name]["vs_library_defaults"] = None
    base_rates = [r["vs_baseline"]["throughput_rps"]["a"] for r in rows.values()
                  if r.get("vs_baseline")]  # fmt: skip
    for row in rows.values():
        found = row.get("vs_baseline")
        row["docs_per_s"] = found["throughput_rps"]["b"] if found else statistics.median(base_rates)
    return {
        "harness": "pipetune.core.measure.comparison.compare",
        "documents": len(items),
        "baseline_seconds_per_document": base_s,
        "settings": sizing.to_dict(),
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_at_start": load_at_start,
        "load_average_at_end": _load_average(),
        "rows": list(rows.values()),
    }


def fidelity_everywhere(
    variants: Sequence[Variant], setup: Any, log: Callable[[str], None]
) -> dict[str, Any]:
    """Label agreement with the baseline (and accuracy) on every document, for the
    composed and the library-defaults pipelines, each served as it asks."""
    workload = setup.workload
    baseline = list(setup.notes["baseline_outputs"])
    out = {}
    for variant in variants:
        if variant.kind not in ("composed", "competent"):
            continue
        t0 = time.perf_counter()
        result = served(variant.pipeline, list(workload.items))
        out[variant.name] = {
            **agreement(result, baseline),
            "accuracy": _accuracy(result, workload.labels),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        log(f"fidelity on {len(result)} documents: {variant.name}: "
            f"{out[variant.name]['agreement']:.2%}")  # fmt: skip
    return out


def inverse(row: dict[str, Any]) -> dict[str, Any]:
    """A comparison row read the other way round (B against A): ratios and intervals
    inverted, the sides swapped."""

    def flip(pair: Any) -> Any:
        return {"a": pair.get("b"), "b": pair.get("a")} if isinstance(pair, dict) else pair

    low, high = row["ci"]
    p99 = row.get("p99_speedup")
    return {
        **row,
        "speedup": 1.0 / row["speedup"],
        "ci": [1.0 / high, 1.0 / low],
        "p99_speedup": None if p99 is None else 1.0 / p99,
        **{key: flip(row.get(key)) for key in ("throughput_rps", "ms_per_item", "p50_ms",
                                               "p99_ms")},
        "read": "the inverse of the library-defaults row's comparison against the baseline",
    }  # fmt: skip


def served(pipeline: Any, items: Sequence[Any]) -> list[Any]:
    """``items`` through ``pipeline`` from cold state, served as its ``meta["serving"]``
    asks (in batches where it says so)."""
    from pipetune.core.kernel.state import reset_state
    from pipetune.core.measure.timed_pass import RuntimeSpec, run_pass

    reset_state(pipeline)
    return list(run_pass(pipeline, list(items), RuntimeSpec()).outputs)


def agreement(a: Sequence[Any], b: Sequence[Any]) -> dict[str, Any]:
    """The share of equal labels, with its Wilson interval."""
    from pipetune.core.measure.stats import wilson_interval

    agree = sum(x == y for x, y in zip(a, b, strict=True))
    low, high = wilson_interval(agree, len(a))
    return {"agreement": agree / len(a), "n": len(a), "ci95": [low, high]}


def _accuracy(outputs: Sequence[Any], labels: Sequence[Any]) -> float:
    return sum(o == y for o, y in zip(outputs, labels, strict=True)) / len(labels)


def _row(comparison: Any, total: int) -> dict[str, Any]:
    """The comparison row (``benchmarks.common``) with the per-round ratios beside it."""
    return {**comparison_row(comparison, total),
            "round_speedups": list(comparison.round_speedups)}  # fmt: skip


def _timed_indices(n: int, rounds: int, size: int) -> list[int]:
    """The documents ``compare`` timed: its plan's chunks (spread over the workload)."""
    from pipetune.core.measure.coverage import RoundPlan, spread_order

    plan = RoundPlan(size=min(n, size), order=spread_order(n))
    return sorted({i for r in range(rounds) for i in plan.chunk(r)})


def _seconds_per_document(pipeline: Any, items: Sequence[Any]) -> float:
    """The baseline's seconds a document on two documents (warm), so each comparison
    against it probes one document rather than four (``expected_item_s``)."""
    from pipetune.core.measure.coverage import spread_order

    probe = [items[i] for i in spread_order(len(items))[:2]]
    served(pipeline, probe[:1])
    t0 = time.perf_counter()
    served(pipeline, probe)
    return (time.perf_counter() - t0) / len(probe)


def _load_average() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except (AttributeError, OSError):
        return None
