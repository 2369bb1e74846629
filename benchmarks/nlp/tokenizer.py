"""The Rust tokenizer against the pure-Python one the nlp demo starts from, side by side.

    python -m benchmarks.nlp.tokenizer                 # the demo's whole workload
    python -m benchmarks.nlp.tokenizer --quick --out /tmp/nlp-tokenizer.json  # a smoke run

Both sides are one-stage pipelines over the demo's sections: the baseline's ``tokenize``
stage as written (``BertTokenizerLegacy``, pure Python, padded to 512) and the same stage
with the Rust ``tokenizers`` tokenizer the nlp plugin swaps in (``nlp.rust_tokenizer``'s
tune step builds it and checks it id for id on every distinct section; the change type
materializes it). An input is one document's sections, as the pipeline hands them to the
stage; every document of the workload is an input. Two comparisons through
:func:`pipetune.core.measure.comparison.compare`, with the same settings:

* one document a call, as the pipeline calls the stage: the swap alone;
* 32 documents a call on both sides (the stage's ``batch_fn``: one ``encode_batch`` over
  every section of the batch, which the Rust tokenizer spreads over every core; the Python
  one tokenizes one section at a time either way).

Before timing, both stages' ids are checked identical on every document, one at a time and
batched. The Rust tokenizer is also the libraries' default (``AutoTokenizer`` returns a
Rust-backed tokenizer for this model; the library-defaults pipeline uses it), so there is no
separate library-defaults ratio: the figure is how far the teaching baseline sits from it.

Results: key ``tokenizer_side_by_side`` of ``benchmarks/results/nlp.json``
(``tokenizer_side_by_side_quick`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import write_key

os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parents[1] / "results" / "nlp.json"
KEY = "tokenizer_side_by_side"
BATCH = 32
TARGET = 10.0
LIBRARY_DEFAULTS = (
    "the Rust tokenizer is the library default: AutoTokenizer returns a Rust-backed "
    "tokenizer for all-MiniLM-L6-v2 (the library-defaults pipeline uses it)"
)


def rust_swap(
    pm: Any, setup: Any, store: Any, log: Callable[[str], None]
) -> tuple[Any, Any, dict[str, Any]]:
    """The nlp plugin's Rust tokenizer for the demo: its tune step (ids verified on every
    distinct section of the workload) and the change it yields, materialized. Returns
    ``(change, the pipeline with the swap, what the tune step verified)``."""
    from pipetune import Proposal
    from pipetune.core.kernel import dispatch
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.results import Change
    from pipetune.plugins.nlp.changes.rust_tokenizer import tune

    context = TuneContext(
        pm,
        setup.pipeline,
        setup.workload,
        setup.requirements,
        store,
        baseline_outputs=list(setup.notes["baseline_outputs"]),
        log=log,
    )
    proposal = Proposal(
        "nlp.rust_tokenizer", "nlp", "tokenize", "swap", params={"slot": "tokenizer", "block": True}
    )
    tuned = tune(proposal, setup.pipeline, context)
    change = Change.from_proposal(proposal, tuned)
    swapped = dispatch.materialize(pm, change, setup.pipeline, store.root)
    return change, swapped, dict(tuned.notes)


def one_stage(pipeline: Any, name: str, batch: int | None = None) -> Any:
    """``pipeline``'s tokenize stage alone; served ``batch`` inputs a call when given."""
    from pipetune import Pipeline
    from pipetune.core.runtime.serving import with_serving

    alone = Pipeline(name, (pipeline.stage("tokenize"),))
    return with_serving(alone, batch_size=batch) if batch else alone


def check_ids(python: Any, rust: Any, items: Sequence[Any]) -> dict[str, Any]:
    """Both stages' ids on every input, one a call and batched; raises on a difference."""
    slow, fast = python.stage("tokenize"), rust.stage("tokenize")
    expected = [slow(item) for item in items]
    if [fast(item) for item in items] != expected:
        raise AssertionError("the Rust tokenizer's ids differ, one document a call")
    batched = [
        out for i in range(0, len(items), BATCH) for out in fast.call_batch(items[i : i + BATCH])
    ]
    if batched != expected:
        raise AssertionError(f"the Rust tokenizer's ids differ, {BATCH} documents a call")
    return {"documents": len(items), "sections": sum(len(item) for item in items)}


def measure(setup: Any, swapped: Any, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    """Both comparisons on every document's sections, and what they rest on."""
    from benchmarks import common
    from pipetune.core.measure.comparison import CompareSettings

    sections = setup.pipeline.stage("sections")
    items = [sections(document) for document in setup.workload.items]
    flat = [text for item in items for text in item]
    checked = check_ids(setup.pipeline, swapped, items)
    settings = CompareSettings(rounds=4 if quick else 8)
    comparisons = {}
    for label, batch in (("one document a call", None), (f"{BATCH} documents a call", BATCH)):
        log(f"tokenizer: python against rust, {label}")
        comparisons[label] = common.side_by_side(
            one_stage(setup.pipeline, "tokenize-python", batch),
            one_stage(swapped, "tokenize-rust", batch),
            items,
            settings=settings,
            log=log,
        )
    return {
        "documents": len(items),
        "sections": len(flat),
        "distinct_sections": len(set(flat)),
        "characters": sum(len(text) for text in flat),
        "ids_identical": True,
        "ids_checked": checked,
        "comparisons": comparisons,
        "headline": "one document a call",
        "target": f"the Rust tokenizer >= {TARGET:g}x the pure-Python one",
        "library_defaults": LIBRARY_DEFAULTS,
        "rayon_threads": os.environ.get("RAYON_NUM_THREADS", "default (all cores)"),
    }


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the tiny demo: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import pipetune
    from benchmarks import common
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.runtime.machine import detect_machine
    from pipetune.demos.nlp.demo import build_demo

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    started = time.perf_counter()
    with common.host_load() as load:
        setup = build_demo(quick=args.quick, log=log)
        pm = pipetune.get_plugin_manager(entry_points=False)
        store = ArtifactStore(Path(tempfile.mkdtemp(prefix="pipetune-nlp-tokenizer-")))
        _, swapped, verified = rust_swap(pm, setup, store, log)
        measured = measure(setup, swapped, args.quick, log)
    result: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.nlp.tokenizer", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "harness": "pipetune.core.measure.comparison.compare",
        "machine": detect_machine().to_dict(),
        "host_load": load,
        "rust_tokenizer_verification": verified,
        **measured,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_key(args.out, KEY + ("_quick" if args.quick else ""), result)
    for label, row in result["comparisons"].items():
        low, high = row["ci"]
        print(f"{label}: {row['speedup']:.2f}x [{low:.2f}, {high:.2f}]; {row['coverage']}")
    print(f"written to {args.out}")
    return result


if __name__ == "__main__":
    main()
