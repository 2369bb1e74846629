"""The nlp demo's document classifier as a TARGET every Ray worker can rebuild, its
documents, and the recipe of the optimized pipeline.

The pipeline is the demo's baseline (:func:`pipetune.demos.nlp.demo.baseline_pipeline`:
pure-Python tokenizer, padding to 512, one section at a time); the recipe applies the
changes the optimize loop keeps on it — the Rust tokenizer (an artifact), dynamic padding,
``inference_mode``, length bucketing and, for batch jobs, dynamic batching of documents.
The classifier head is trained once by the driver (:func:`prepare`) and only loaded by the
workers, so every process classifies with the same head. ``PIPETUNE_BENCH_QUICK=1`` uses
the demo's quick sizes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.results import Change, Recipe
from pipetune.core.loop.paths import cache_dir
from pipetune.demos.nlp import demo, docgen
from pipetune.plugins.nlp import blocks

STAGES = ("sections", "tokenize", "embed", "classify")


def _spec() -> demo.DemoSpec:
    quick = os.environ.get("PIPETUNE_BENCH_QUICK") == "1"
    return demo.DemoSpec.quick() if quick else demo.DemoSpec.full()


def _head_file() -> Path:
    spec = _spec()
    return cache_dir("scale-bench") / f"nlp-head-{spec.train_documents}-{spec.train_seed}.npz"


def prepare(log: Any = print) -> None:
    """Train the head once (the driver, before any worker starts)."""
    path = _head_file()
    if path.exists():
        return
    spec = _spec()
    tokenizer, model = demo.load_components()
    log(f"training the nlp head on {spec.train_documents} generated documents (once)")
    documents = docgen.generate_documents(spec.train_documents, spec.train_seed)
    labels = docgen.noisy_labels([d.label for d in documents], spec.label_noise, spec.train_seed)
    head, _ = demo.train_head(documents, labels, tokenizer, model)
    head.save(path)


def pipeline() -> Pipeline:
    """The demo's baseline pipeline with the trained head (the factory workers call)."""
    tokenizer, model = demo.load_components()
    head = blocks.LinearHead.load(_head_file())
    return demo.baseline_pipeline(tokenizer, model, head)


def documents(cases: int, seed: int = 7) -> list[dict[str, Any]]:
    stream = docgen.generate_stream(docgen.StreamSpec(cases=cases, seed=seed))
    return [{"id": i, "text": doc.text} for i, doc in enumerate(stream)]


def write_recipe(folder: Path, *, batch: int | None) -> Path:
    """The optimized pipeline's recipe in ``folder`` (artifacts beside it)."""
    from pipetune.plugins.nlp.tokenizers_swap import build_rust_tokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer, _ = demo.load_components()
    build_rust_tokenizer(tokenizer).save(str(folder / "tokenizer.json"))
    changes = [
        Change(
            "nlp.rust_tokenizer",
            "nlp",
            "tokenize",
            {"slot": "tokenizer", "block": True},
            artifacts={"tokenizer": "tokenizer.json"},
        ),
        Change("nlp.dynamic_padding", "nlp", "embed", {"slot_stage": "tokenize"}),
        Change("nlp.inference_mode", "nlp", "embed", {}),
        Change("nlp.length_bucketing", "nlp", "embed", {"batch_size": 16}),
    ]
    if batch:
        changes.append(
            Change(
                "generic.dynamic_batching",
                "generic",
                "embed",
                {"batch_size": batch, "max_delay_ms": 5.0},
            )
        )
    name = "recipe-batched.json" if batch else "recipe-online.json"
    path = folder / name
    Recipe(pipeline=demo.PIPELINE_NAME, changes=tuple(changes), stages=STAGES).save(path)
    return path
