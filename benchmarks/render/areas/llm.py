"""llm: KV cache, prefix cache, batching, speculative decoding, CUDA graphs
(``benchmarks/results/llm.json``, ``llm_plain_generate.json``).

Expected keys in ``llm.json``, one section per part, each with ``command``, ``threads``,
``measured_at`` and, where the part goes through ``compare``, ``inputs_timed``,
``inputs_total``, ``samples_per_side``, ``host_load`` (its headline comparison's):
``kv.{new_tokens, prompts, prompt_tokens, vs_no_cache, vs_transformers_generate,
identical_tokens}`` (comparison rows: ``speedup``, ``ci``, coverage), ``prefix.{requests,
ttft_ms_p50_before, ttft_ms_p50_after, identical}``, ``batching.{requests, streams,
ratios[policy].{throughput, ci, backlog_throughput, p99_lower}, identical}``,
``speculative[traffic].{plugin_decision.{status, chosen, reason}, held_out}``,
``cuda.{device, speedup_graph_vs_generate, earlier_run_same_lease_day, identical}``,
``compile.{speedup_compiled_vs_dynamic, compared}``. ``llm_plain_generate.json``
(``python -m benchmarks.llm.plain_generate``): per section ``vs_teaching`` and
``vs_library`` comparison rows (``speedup``, ``ci``, coverage); a section that is missing
or a smoke run is pending.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

RUN = "python -m benchmarks.llm.run"
PLAIN = "python -m benchmarks.llm.plain_generate"
PLAIN_BATCHING = "python -m benchmarks.llm.plain_batching"


def _part(results: Results, key: str) -> dict[str, Any] | None:
    found = results.section("llm", key)
    return dict(cells.headline(found, RUN) or {}) or None


def _rests(section: dict[str, Any], what: str) -> str:
    """The comparison's coverage where the part records it, else what it ran on."""
    if section.get("inputs_timed") is not None:
        return f"{cells.rests_on(section)}; {cells.load(section)}"
    return (
        f"{what}, one run (not through compare); inputs and samples: {cells.PENDING}; "
        f"{cells.load(section)}"
    )


def _threads(section: dict[str, Any]) -> str:
    threads = section.get("threads")
    return f"{threads} thread{'s' if threads != 1 else ''}"


def _streams(section: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The speculative section's traffic kinds and what was measured on each."""
    return [
        (traffic, found)
        for traffic, found in section.items()
        if isinstance(found, dict) and "plugin_decision" in found
    ]


def _missing(results: Results, key: str) -> str:
    return cells.missing(results.section("llm", key), f"{RUN} --sections {key}")


def _row(results: Results, key: str, build: Any) -> str:
    section = _part(results, key)
    if not section:
        missing = _missing(results, key)
        return cells.row_cells(missing, "—", "—", "—", missing)
    return cells.row_cells(*build(section))


@block("llm.summary.kv", "llm")
def kv_summary(results: Results) -> str:
    def build(kv: dict[str, Any]) -> list[str]:
        none, library = kv.get("vs_no_cache") or {}, kv.get("vs_transformers_generate") or {}
        return [
            f"**{cells.ratio(none.get('speedup'), none.get('ci'))}** tokens/s at "
            f"{kv.get('new_tokens')} new tokens ({_threads(kv)})",
            f"{cells.ratio(library.get('speedup'), library.get('ci'))} transformers' "
            "`generate` with its default cache",
            "tokens identical" if kv.get("identical_tokens") else "**tokens differ**",
            cells.p99(none),
            _rests(kv, f"{kv.get('prompts')} prompts"),
        ]

    return _row(results, "kv", build)


@block("llm.summary.batching", "llm")
def batching_summary(results: Results) -> str:
    def build(section: dict[str, Any]) -> list[str]:
        ratios = section.get("ratios") or {}
        padded, evict = ratios.get(STATIC) or {}, ratios.get(EVICT) or {}
        target = "met" if (padded.get("throughput") or 0) >= 2 else "not met"
        return [
            f"{section.get('requests')}-request streams: "
            f"**{cells.ratio(padded.get('throughput'), padded.get('ci'))}** static (padded) — "
            f"{target}; while requests waited "
            f"{cells.times(padded.get('backlog_throughput'))}",
            f"{cells.ratio(evict.get('throughput'), evict.get('ci'))} static batching that "
            "evicts finished requests",
            "tokens identical" if section.get("identical") == 1.0 else "**tokens differ**",
            f"P99 request latency {cells.times(padded.get('p99_lower'))} lower "
            f"({cells.times(evict.get('p99_lower'))} vs evicting)",
            _rests(section, f"{section.get('streams')} streams"),
        ]

    return _row(results, "batching", build)


@block("llm.summary.speculative", "llm")
def speculative_summary(results: Results) -> str:
    def build(spec: dict[str, Any]) -> list[str]:
        parts, rests = [], []
        for traffic, found in _streams(spec):
            held = found.get("held_out")
            if held:
                parts.append(
                    f"{traffic}: accepted, **{cells.ratio(held.get('speedup'), held.get('ci'))}**"
                    f" ({cells.percent(held.get('acceptance_rate'), 0)} acceptance)"
                )
                rests.append(f"{traffic}: {cells.rests_on(held, what='requests')}")
            else:
                parts.append(f"{traffic}: **declined** by the tune step")
        lossless = all(
            (found.get("held_out") or {}).get("identical", 1.0) == 1.0
            for _, found in _streams(spec)
        )
        return [
            "; ".join(parts),
            "plain KV-cache decoding is the baseline",
            "lossless (tokens identical)" if lossless else "**tokens differ**",
            "declined traffic pays nothing: the tune step measures before proposing",
            "; ".join(rests) + f"; {cells.load(spec)}",
        ]

    return _row(results, "speculative", build)


@block("llm.summary.cuda", "llm")
def cuda_summary(results: Results) -> str:
    def build(cuda: dict[str, Any]) -> list[str]:
        earlier = (cuda.get("earlier_run_same_lease_day") or {}).get("speedup_graph_vs_generate")
        compiled = (_part(results, "compile") or {}).get("speedup_compiled_vs_dynamic")
        row = cuda.get("compared") or {}
        figure = (
            cells.ratio(row.get("speedup"), row.get("ci"))
            if row.get("speedup")
            else cells.times(cuda.get("speedup_graph_vs_generate"))
        )
        headline = row.get("speedup") or cuda.get("speedup_graph_vs_generate") or 0
        target = "met" if headline >= 10 else "not met"
        return [
            f"**{figure}** eager `generate`"
            + (f" (an earlier run: {cells.times(earlier)})" if earlier else "")
            + f" on an {cuda.get('device')} — {target}",
            "— (transformers' `generate` is the baseline)",
            "tokens identical" if cuda.get("identical") else "**tokens differ**",
            f"weights {cuda.get('weights')}; the compiled step on the CPU: {cells.times(compiled)}",
            _rests(cuda, f"{cuda.get('new_tokens')} new tokens"),
        ]

    return _row(results, "cuda", build)


@block("llm.summary.plain_generate", "llm_plain_generate")
def plain_generate_summary(results: Results) -> str:
    data = results.area("llm_plain_generate")
    rows = {k: v for k, v in data.items() if isinstance(v, dict) and v.get("vs_teaching")}
    if not rows or cells.is_smoke(data) or any(cells.is_smoke(v) for v in rows.values()):
        why = "only a smoke run recorded" if data else None
        missing = cells.pending(PLAIN, why)
        return cells.row_cells(missing, missing, "—", "—", missing)
    measured, library, rests = [], [], []
    for name, section in rows.items():
        vs, lib = section["vs_teaching"], section.get("vs_library") or {}
        measured.append(f"{name}: **{cells.ratio(vs.get('speedup'), vs.get('ci'))}**")
        library.append(f"{name}: {cells.ratio(lib.get('speedup'), lib.get('ci'))}")
        rests.append(f"{name}: {cells.rests_on(vs)}")
    identical = [section.get("tokens_identical") for section in rows.values()]
    return cells.row_cells(
        "; ".join(measured) + _open_ended(data.get("open_ended") or {}),
        "; ".join(library),
        "tokens identical to the code as written (held-out split)"
        if all(share == 1.0 for share in identical)
        else f"tokens identical on {', '.join(cells.percent(v) for v in identical)}",
        "; ".join(cells.p99(section["vs_teaching"]) for section in rows.values()),
        f"{'; '.join(rests)}; {cells.load(next(iter(rows.values())))}",
    )


def _open_ended(record: dict[str, Any]) -> str:
    """What became of prompt lookup on open-ended traffic: not proposed, or proposed and
    then kept or declined by its tune step."""
    if not record:
        return ""
    lookup = (record.get("traffic") or {}).get("prompt_lookup") or {}
    acceptance = cells.percent(lookup.get("acceptance_rate"), 0)
    tuned = record.get("prompt_lookup")
    if "llm.speculative_prompt_lookup" not in (record.get("proposed") or []):
        return (
            "; open-ended prompts: prompt lookup **declined** "
            f"(not proposed: {acceptance} acceptance)"
        )
    if tuned and not tuned.get("kept"):
        return (
            "; open-ended prompts: prompt lookup **declined** by its tune step "
            f"({tuned.get('reason')})"
        )
    return f"; open-ended prompts: prompt lookup **kept** ({acceptance} acceptance)"


@block("llm.summary.plain_batching", "llm_plain_batching")
def plain_batching_summary(results: Results) -> str:
    data = results.area("llm_plain_batching")
    found = data.get("batching") if isinstance(data.get("batching"), dict) else {}
    if not data or cells.is_smoke(data) or not found:
        why = "only a smoke run recorded" if data else None
        missing = cells.pending(PLAIN_BATCHING, why)
        return cells.row_cells(missing, "—", "—", "—", missing)
    if not found.get("kept"):
        said = "not proposed" if not found.get("proposed") else f"rejected: {found.get('reason')}"
        return cells.row_cells(said, "—", "—", "—", cells.load(data))
    row = found.get("vs_library") or {}
    params = found.get("params") or {}
    identical = found.get("tokens_identical")
    ratio = cells.ratio(row.get("speedup"), row.get("ci"))
    return cells.row_cells(
        f"groups of {params.get('batch_size')}: **{ratio}** the stage as written",
        "the stage as written is the library default (`generate` with its cache, one request "
        "at a time)",
        f"tokens identical on {cells.number(identical * 100 if identical is not None else None, 0)}"
        " % of held-out requests",
        cells.p99(row),
        f"{cells.rests_on(row)}; {cells.load(row)}",
    )


@block("readme.llm", "llm")
def readme(results: Results) -> str:
    """README's plugin table: the ``llm`` row's measured figure."""
    parts = []
    kv = _part(results, "kv")
    if kv:
        none, library = kv.get("vs_no_cache") or {}, kv.get("vs_transformers_generate") or {}
        parts.append(
            f"KV cache {cells.ratio(none.get('speedup'), none.get('ci'))} at "
            f"{kv.get('new_tokens')} tokens ({cells.times(library.get('speedup'))} `generate`'s "
            f"default; {cells.rests_on(none, what='prompts')})"
        )
    batching = _part(results, "batching")
    if batching:
        padded = (batching.get("ratios") or {}).get(STATIC) or {}
        parts.append(
            f"continuous batching {cells.ratio(padded.get('throughput'), padded.get('ci'))} "
            f"static on {batching.get('requests')}-request streams, P99 "
            f"{cells.times(padded.get('p99_lower'))} lower "
            f"({cells.rests_on(batching, what='streams')})"
        )
    cuda = _part(results, "cuda")
    if cuda:
        parts.append(
            f"CUDA-graph decode {cells.times(cuda.get('speedup_graph_vs_generate'))} "
            f"`generate` on an {cuda.get('device')} (one run, not through `compare`)"
        )
    if not parts:
        return _missing(results, "kv")
    return "; ".join(parts)


@effect("PT-LLM001", "SmolLM2-135M-Instruct, 256 new tokens, batch 1, on a 2-core CPU", RUN, "llm")
def llm001(results: Results) -> str:
    kv = _part(results, "kv")
    if not kv:
        return _missing(results, "kv")
    none = kv.get("vs_no_cache") or {}
    return (
        f"KV cache **{cells.ratio(none.get('speedup'), none.get('ci'))}** no cache "
        f"({cells.number(kv.get('no_cache_tokens_per_s'))} → "
        f"{cells.number(kv.get('kv_cache_tokens_per_s'))} tokens/s; transformers' `generate` "
        f"{cells.number(kv.get('transformers_generate_tokens_per_s'))}), "
        + ("tokens identical; " if kv.get("identical_tokens") else "**tokens differ**; ")
        + _rests(kv, f"{kv.get('prompts')} prompts")
    )


@effect("PT-LLM003", "mixed-length requests arriving at once, batches of 8", RUN, "llm")
def llm003(results: Results) -> str:
    section = _part(results, "batching")
    if not section:
        return _missing(results, "batching")
    padded = (section.get("ratios") or {}).get(STATIC) or {}
    return (
        f"continuous batching **{cells.ratio(padded.get('throughput'), padded.get('ci'))}** "
        f"static batching's throughput on {section.get('requests')}-request streams, P99 "
        f"{cells.times(padded.get('p99_lower'))} lower; "
        + _rests(section, f"{section.get('streams')} streams")
    )


@effect("PT-LLM004", "requests sharing long prompt prefixes", RUN, "llm")
def llm004(results: Results) -> str:
    prefix = _part(results, "prefix")
    if not prefix:
        return _missing(results, "prefix")
    before, after = prefix.get("ttft_ms_p50_before"), prefix.get("ttft_ms_p50_after")
    lower = before / after if before and after else None
    return (
        f"time to first token p50 {cells.number(before, 0)} → {cells.number(after, 0)} ms "
        f"(**{cells.times(lower, 1)}** lower), tokens identical; "
        + _rests(prefix, f"{prefix.get('requests')} requests")
    )


# The page's tables (docs/benchmarks/llm.md). Besides the keys above: ``kv.{*_tokens_per_s}``,
# ``prefix.{prefix_lengths, coverage, ms_per_request, compared, ttft_samples, cache}``,
# ``batching.{policies[policy], compared[policy], output_tokens}`` (a policy:
# ``tokens_per_s``, ``backlog_tokens_per_s``, ``latency_ms.p99``, ``mean_batch``,
# ``streams_served``), ``speculative[traffic].{ngram_copy_rate, plugin_decision.points[],
# held_out, self_speculative}``, ``compile.{tokens_per_s, compared,
# first_request_s_including_compile}``, ``cuda.{*_tokens_per_s, weight_bytes,
# graph_fraction_of_bound}``; ``llm_step_profile.json``
# (``python -m benchmarks.llm.step_profile``) and ``llm_step_ops.json``
# (``python -m benchmarks.llm.step_ops``).

STEP_PROFILE = "python -m benchmarks.llm.step_profile"
STEP_OPS = "python -m benchmarks.llm.step_ops"


def _ran(section: dict[str, Any]) -> str:
    """``Measured by `command`, 2026-11-28 23:26:30, 2 threads; host load ...``."""
    threads = section.get("threads")
    return (
        f"Measured by `{section.get('command')}`, {section.get('measured_at')}"
        + (f", {_threads(section)}" if threads else "")
        + f"; {cells.load(section)}."
    )


def _same(flag: Any) -> str:
    return "Tokens identical." if flag in (True, 1.0) else "**Tokens differ.**"


@block("llm.kv", "llm")
def kv(results: Results) -> str:
    """The KV cache against no cache and transformers' ``generate``."""
    section = _part(results, "kv")
    if not section:
        return _missing(results, "kv")
    none, library = section.get("vs_no_cache") or {}, section.get("vs_transformers_generate") or {}
    table = cells.table(
        ["variant", "tokens/s", "side by side"],
        [
            [
                "no KV cache (prefix re-run each token)",
                cells.number(section.get("no_cache_tokens_per_s"), 1),
                "1.00x",
            ],
            [
                "KV cache, pipetune loop (cache layers growing in place)",
                cells.number(section.get("kv_cache_tokens_per_s"), 1),
                f"**{cells.ratio(none.get('speedup'), none.get('ci'))}** no cache",
            ],
            [
                "KV cache, transformers `generate` (the competent reference)",
                cells.number(section.get("transformers_generate_tokens_per_s"), 1),
                f"the loop: {cells.ratio(library.get('speedup'), library.get('ci'))}",
            ],
        ],
        "lrr",
    )
    target = "met" if (none.get("speedup") or 0) >= 5 else "**not met**"
    prompt = section.get("prompt_tokens") or []
    lengths = f"{min(prompt)}-{max(prompt)}" if isinstance(prompt, list) and prompt else prompt
    return (
        f"{table}\n\n{_same(section.get('identical_tokens'))} Target (≥ 5x): {target}. "
        f"{section.get('prompts')} story prompts of {lengths} tokens, "
        f"{section.get('new_tokens')} new tokens each; no cache against the loop: "
        f"{_rests(none, 'prompts')}; the loop against `generate`: {_rests(library, 'prompts')}. "
        f"{_ran(section)}"
    )


@block("llm.prefix", "llm")
def prefix(results: Results) -> str:
    """The prefix cache: time to first token and time per request."""
    section = _part(results, "prefix")
    if not section:
        return _missing(results, "prefix")
    before, after = section.get("ttft_ms_p50_before"), section.get("ttft_ms_p50_after")
    cache, coverage = section.get("cache") or {}, section.get("coverage") or {}
    per = section.get("ms_per_request") or {}
    row = section.get("compared") or {}
    lower = before / after if before and after else None
    table = cells.table(
        ["variant", "TTFT p50", "a request"],
        [
            [
                "no prefix cache",
                f"{cells.number(before, 0)} ms",
                f"{cells.number(per.get('a'), 0)} ms",
            ],
            [
                "prefix cache",
                f"{cells.number(after, 0)} ms (**{cells.times(lower, 1)} lower**)",
                f"{cells.number(per.get('b'), 0)} ms "
                f"({cells.ratio(row.get('speedup'), row.get('ci'))})",
            ],
        ],
        "lrr",
    )
    lengths = " and ".join(str(n) for n in section.get("prefix_lengths") or [])
    samples = section.get("ttft_samples") or {}
    return (
        f"{table}\n\n{_same(section.get('identical'))} {section.get('requests')} requests; "
        f"shared prefixes of {lengths} tokens, saving "
        f"{cells.percent(coverage.get('prefill_tokens_saved'), 0)} of all prefill tokens; "
        f"{cells.number((cache.get('bytes') or 0) / 1e6, 1)} MB of cached keys and values. "
        f"Time per request through `compare`: {_rests(section, 'requests')}; time to first "
        f"token over every call it made ({cells.number(samples.get('before'))} calls a "
        f"side). {_ran(section)}"
    )


STATIC, EVICT = "static (padded)", "static (evict finished)"
POLICIES = (
    (STATIC, "static (padded to the batch's longest)"),
    (EVICT, "static, finished rows evicted"),
    ("continuous", "**continuous**"),
)


@block("llm.batching", "llm")
def batching(results: Results) -> str:
    """Continuous against static batching on streams of the mixed traffic."""
    section = _part(results, "batching")
    if not section:
        return _missing(results, "batching")
    policies = section.get("policies") or {}
    rows = []
    for key, label in POLICIES:
        found = policies.get(key)
        if not found:
            continue
        rows.append(
            [
                label,
                cells.number(found.get("tokens_per_s"), 1),
                cells.number(found.get("backlog_tokens_per_s"), 1),
                f"{cells.number((found.get('latency_ms') or {}).get('p99', 0) / 1000, 0)} s",
                cells.number(found.get("mean_batch")),
                cells.number(found.get("streams_served")),
            ]
        )
    header = ["policy", "tokens/s", "while waiting", "P99 latency", "mean batch", "streams"]
    lines = [cells.table(header, rows, "lrrrrr"), ""]
    compared = section.get("compared") or {}
    for key, r in (section.get("ratios") or {}).items():
        rests = cells.rests_on(compared.get(key), what="streams")
        lines.append(
            f"* Continuous vs {key}: **{cells.ratio(r.get('throughput'), r.get('ci'))}** "
            f"throughput (stream time, through `compare`: {rests}); "
            f"{cells.times(r.get('backlog_throughput'))} tokens/s while requests waited; P99 "
            f"request latency {cells.times(r.get('p99_lower'))} lower."
        )
    out = section.get("output_tokens") or {}
    lines += [
        "",
        f"{section.get('streams')} streams of {section.get('requests')} requests at max batch "
        f"{section.get('max_batch')}, outputs p50 {cells.number(out.get('p50'), 0)}, mean "
        f"{cells.number(out.get('mean'), 0)}, max {cells.number(out.get('max'), 0)} tokens. "
        f"{_same(section.get('identical'))} Tokens/s, the while-waiting rate and latency are "
        f"over every stream each policy served (the table's last column), `compare`'s probe "
        f"included. {_ran(section)}",
    ]
    return "\n".join(lines)


@block("llm.step_profile", "llm_step_profile")
def step_profile(results: Results) -> str:
    """Where a batched decode's time goes (``llm_step_profile.json``)."""
    data = results.area("llm_step_profile")
    if not data or cells.is_smoke(data):
        return cells.missing(data or None, STEP_PROFILE)
    pieces = {k: (v or {}).get("pieces") or {} for k, v in (data.get("scheduler") or {}).items()}
    step = data.get("batch8_step") or {}
    shares = ", ".join(
        f"`{op}` {cells.percent(share, 0)}"
        for op, share in list((step.get("self_time_share") or {}).items())[:3]
    )

    def piece(policy: str, name: str, key: str = "ms_each") -> str:
        return cells.number((pieces.get(policy, {}).get(name) or {}).get(key), 0)

    sched = data.get("scheduler") or {}
    return (
        f"`{data.get('command')}`, {data.get('measured_at')}: a decode step costs "
        f"{piece('static', 'decode step')} ms with "
        f"{cells.number((sched.get('static') or {}).get('mean_batch'), 1)} rows (static) and "
        f"{piece('continuous', 'decode step')} ms with "
        f"{cells.number((sched.get('continuous') or {}).get('mean_batch'), 1)} rows on average "
        f"(continuous); static ran {piece('static', 'decode step', 'calls')} decode steps, "
        f"continuous {piece('continuous', 'decode step', 'calls')}. A prefill takes "
        f"{piece('static', 'prefill')}-{piece('continuous', 'prefill')} ms; merging a request "
        f"into the batch {piece('static', 'merge into batch')}-"
        f"{piece('continuous', 'merge into batch')} ms, dropping finished rows "
        f"{piece('static', 'drop rows')}-{piece('continuous', 'drop rows')} ms. Torch-profiler "
        f"self time of a batch-{step.get('rows')} step at {step.get('columns')} columns "
        f"({cells.number(step.get('step_ms_median'), 0)} ms, against "
        f"{cells.number(step.get('batch1_step_ms'), 0)} ms for a batch-1 step): {shares}. "
        f"One run, host load not recorded."
    )


@block("llm.kv_append", "llm_step_profile")
def kv_append(results: Results) -> str:
    """Cache layers growing in place against ``torch.cat``, per shape."""
    data = results.area("llm_step_profile")
    rows = data.get("kv_append") or []
    if not rows or cells.is_smoke(data):
        return cells.missing(data or None, STEP_PROFILE)
    shapes = ", ".join(
        f"**{cells.times(r.get('cat_over_in_place'))}** at {r.get('rows')} x "
        f"{cells.number(r.get('columns'))}"
        for r in rows
    )
    rounds = len(next(iter((rows[0].get("step_ms_rounds") or {}).values()), []))
    return (
        f"In-place layers' steps against `torch.cat`'s (median of {rounds} interleaved rounds, "
        f"rows x columns): {shapes}. `{data.get('command')}`, {data.get('measured_at')}; host "
        f"load not recorded."
    )


@block("llm.speculative", "llm")
def speculative(results: Results) -> str:
    """Speculative decoding per stream: the tune step's points and decision, then the
    accepted setting on held-out requests through ``compare``."""
    section = _part(results, "speculative")
    if not section:
        return _missing(results, "speculative")
    rows = []
    for traffic, found in _streams(section):
        decision = found.get("plugin_decision") or {}
        chosen = (decision.get("chosen") or {}).get("num_draft_tokens")
        label = (
            f"{traffic} ({found.get('tuning_requests')} tuning, {found.get('requests')} held-out "
            f"requests; {cells.percent(found.get('ngram_copy_rate'), 0)} of output 3-grams copy "
            "the prompt)"
        )
        status = decision.get("status")
        verdict = (
            "**accepted**" if status == "accepted" else f"**declined**: {decision.get('reason')}"
        )
        points = decision.get("points") or []
        for i, point in enumerate(points):
            k = point.get("num_draft_tokens")
            rows.append(
                [
                    label if i == 0 else "",
                    f"prompt lookup, k = {k} (tune step)",
                    cells.percent(point.get("acceptance_rate"), 0),
                    cells.times(point.get("speedup")),
                    verdict if k == chosen else "",
                ]
            )
        if not points:
            rows.append([label, "prompt lookup (tune step)", "–", "–", verdict])
        held = found.get("held_out")
        if held:
            rows.append(
                [
                    "",
                    f"prompt lookup, k = {held.get('num_draft_tokens')}, held-out requests",
                    cells.percent(held.get("acceptance_rate"), 0),
                    f"**{cells.ratio(held.get('speedup'), held.get('ci'))}**",
                    cells.rests_on(held, what="requests"),
                ]
            )
        own = found.get("self_speculative")
        if own:
            rows.append(
                [
                    "",
                    f"self-draft (first {section.get('draft_layers')} layers), k = 3",
                    cells.percent(own.get("acceptance_rate"), 0),
                    cells.ratio(own.get("speedup"), own.get("ci")),
                    cells.rests_on(own, what="requests"),
                ]
            )
    return "\n".join(
        [
            cells.table(
                ["stream", "drafter", "acceptance", "vs KV cache", "decision / coverage"],
                rows,
                "llrrl",
            ),
            "",
            "Batch 1, greedy, tokens checked identical to plain decoding. The tune step's "
            "points are its own measurement on the tuning requests (what the plugin decides "
            "on); the held-out rows go through `compare` on other requests of the same kind. "
            + _ran(section),
        ]
    )


@block("llm.compile", "llm")
def compile_step(results: Results) -> str:
    """The decode step through ``torch.compile`` against the dynamic-cache loop, on the CPU."""
    section = _part(results, "compile")
    if not section:
        return _missing(results, "compile")
    speeds = section.get("tokens_per_s") or {}
    row = section.get("compared") or {}
    rows = [
        [
            name,
            cells.number(value, 1),
            f"**{cells.ratio(row.get('speedup'), row.get('ci'))}**"
            if "compiled" in name
            else "1.00x",
        ]
        for name, value in speeds.items()
    ]
    return (
        cells.table(["variant", "tokens/s", "vs dynamic cache"], rows, "lrr")
        + f"\n\n{_same(section.get('identical'))} {section.get('new_tokens')} new tokens, batch "
        f"1, {section.get('prompts')} story prompts through `compare` "
        f"({_rests(section, 'prompts')}); the first request, compile included, took "
        f"{cells.number(section.get('first_request_s_including_compile'), 1)} s. {_ran(section)}"
    )


@block("llm.cuda", "llm")
def cuda(results: Results) -> str:
    """CUDA-graph decode on a lent GPU: both recorded runs."""
    section = _part(results, "cuda")
    if not section:
        return _missing(results, "cuda")
    earlier = section.get("earlier_run_same_lease_day") or {}
    runs = [r for r in (earlier, section) if r]

    def both(key: str, bold: bool = False, ratio: bool = False) -> str:
        values = [r.get(key) for r in runs]
        text = " / ".join(cells.times(v) if ratio else cells.number(v, 1) for v in values)
        return f"**{text}**" if bold else text

    weights = cells.number((section.get("weight_bytes") or 0) / 1e6, 0)
    generate = [r.get("transformers_generate_tokens_per_s") for r in runs]
    dynamic = [r.get("pipetune_dynamic_cache_tokens_per_s") for r in runs]
    dyn = " / ".join(
        cells.times(d / g if d and g else None) for d, g in zip(dynamic, generate, strict=True)
    )
    table = cells.table(
        [
            "variant",
            f"tokens/s (run {' / run '.join(str(i + 1) for i in range(len(runs)))})",
            "vs `generate`",
        ],
        [
            [
                "transformers `generate` (eager, dynamic cache)",
                both("transformers_generate_tokens_per_s"),
                "1.00x",
            ],
            ["pipetune loop, dynamic cache", both("pipetune_dynamic_cache_tokens_per_s"), dyn],
            [
                "static cache + CUDA graph (`GraphDecoder`)",
                both("static_cache_cuda_graph_tokens_per_s", bold=True),
                both("speedup_graph_vs_generate", bold=True, ratio=True),
            ],
            [
                f"memory-bandwidth bound ({weights} MB of weights per token)",
                cells.number(section.get("bandwidth_bound_tokens_per_s"), 0),
                "—",
            ],
        ],
        "lrr",
    )
    row = section.get("compared") or {}
    headline = row.get("speedup") or section.get("speedup_graph_vs_generate") or 0
    target = "met" if headline >= 10 else "**not met**"
    when = " and ".join(str(r.get("measured_at")) for r in runs)
    how = (
        f"Through `compare` on distinct prompts: the graph "
        f"**{cells.ratio(row.get('speedup'), row.get('ci'))}** `generate` "
        f"({_rests(row, 'prompts')}); the table's tokens/s are single runs"
        if row.get("speedup")
        else "One run each (not through `compare`)"
    )
    return (
        f"{table}\n\nOn an {section.get('device')}, weights {section.get('weights')}, "
        f"{section.get('new_tokens')} new tokens, batch 1, runs at {when}. "
        f"{_same(section.get('identical'))} The graph decodes at "
        f"{cells.percent(section.get('graph_fraction_of_bound'))} of the bandwidth bound. "
        f"Target (≥ 10x `generate`): {target}. {how}; "
        f"`{section.get('command')}`; {cells.load(section)}."
    )


@block("llm.step_ops", "llm_step_ops", "llm")
def step_ops(results: Results) -> str:
    """Kernels in one static-cache decode step, eager and compiled (``llm_step_ops.json``)."""
    data = results.area("llm_step_ops")
    eager, compiled = data.get("eager") or {}, data.get("compiled") or {}
    if not eager or cells.is_smoke(data):
        return cells.missing(data or None, STEP_OPS)
    kernels, layers = eager.get("device_kernels"), data.get("layers")
    per_layer = kernels / layers if kernels and layers else None
    graph = (_part(results, "cuda") or {}).get("static_cache_cuda_graph_tokens_per_s")
    per_kernel = 1e6 / graph / kernels if graph and kernels else None
    kinds = ", ".join(
        f"{cells.number(n)} {kind}" for kind, n in (compiled.get("by_kind") or {}).items()
    )
    return (
        f"`{data.get('command')}` ({data.get('torch')}, {data.get('measured_at')}): one eager "
        f"static-cache decode step of {data.get('model')} runs "
        f"**{cells.number(eager.get('operators'))} operators**, of which "
        f"{cells.number(eager.get('cpu_scalar_wraps'))} are CPU bookkeeping and "
        f"**{cells.number(kernels)} would be kernels on a GPU** (about "
        f"{cells.number(per_layer, 0)} per layer over {layers} layers). At the CUDA graph's "
        f"recorded {cells.number(graph, 1)} tokens/s that is "
        f"**{cells.number(per_kernel, 1)} µs per kernel** — an inference from the count and the "
        f"time; the GPU was not profiled. Compiled by inductor, the same step is "
        f"**{cells.number(compiled.get('kernels'))} kernels** ({kinds}, counted in inductor's "
        f"generated code for the CPU)."
    )
