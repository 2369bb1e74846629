"""llm: KV cache, prefix cache, batching, speculative decoding, CUDA graphs
(``benchmarks/results/llm.json``, ``llm_plain_generate.json``).

Expected keys in ``llm.json``, one section per part, each with ``command``, ``threads``,
``measured_at`` and, where the part goes through ``compare``, ``inputs_timed``,
``inputs_total``, ``samples_per_side``, ``host_load``:
``kv.{new_tokens, prompt_tokens, speedup_kv_vs_no_cache, kv_vs_transformers_generate,
identical_tokens}``, ``prefix.{requests, ttft_ms_p50_before, ttft_ms_p50_after,
identical}``, ``batching_long`` and ``batching.{requests, ratios}`` (``ratios``: per
batch size for ``batching``), ``speculative[traffic].{requests, plugin_decision.{status,
chosen.{speedup, acceptance_rate}, reason}}``, ``cuda.{device, speedup_graph_vs_generate,
earlier_run_same_lease_day, identical}``, ``compile.{speedup_compiled_vs_dynamic}``.
``llm_plain_generate.json`` (``python -m benchmarks.llm.plain_generate``): per section
``vs_teaching`` and ``vs_library`` comparison rows (``speedup``, ``ci``, coverage); a
section that is missing or a smoke run is pending.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

RUN = "python -m benchmarks.llm.run --threads 1"
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
        return [
            f"**{cells.times(kv.get('speedup_kv_vs_no_cache'))}** tokens/s at "
            f"{kv.get('new_tokens')} new tokens ({kv.get('threads')} thread)",
            f"{cells.times(kv.get('kv_vs_transformers_generate'))} transformers' `generate` "
            "with its default cache",
            "tokens identical" if kv.get("identical_tokens") else "**tokens differ**",
            "—",
            _rests(kv, f"one {kv.get('prompt_tokens')}-token prompt"),
        ]

    return _row(results, "kv", build)


@block("llm.summary.batching", "llm")
def batching_summary(results: Results) -> str:
    def build(long: dict[str, Any]) -> list[str]:
        ratios = long.get("ratios") or {}
        short = (results.section("llm", "batching") or {}).get("ratios") or {}
        others = ", ".join(
            f"batch {size}: {cells.times(r.get('continuous_vs_static_throughput'))}"
            for size, r in short.items()
        )
        evict = (short.get("8") or {}).get("continuous_vs_static_evict_throughput")
        return [
            f"{long.get('requests')} requests: "
            f"**{cells.times(ratios.get('continuous_vs_static_throughput'))}** static; while "
            "requests waited "
            f"{cells.times(ratios.get('continuous_vs_static_backlog_throughput'))}"
            + (f"; 48 requests: {others}" if others else ""),
            f"{cells.times(evict)} static batching that evicts finished requests (batch 8)"
            if evict
            else "—",
            "tokens identical" if long.get("identical") == 1.0 else "see the page",
            f"P99 {cells.times(ratios.get('p99_static_over_continuous'))} lower",
            _rests(long, f"{long.get('requests')} mixed-length requests"),
        ]

    return _row(results, "batching_long", build)


@block("llm.summary.speculative", "llm")
def speculative_summary(results: Results) -> str:
    def build(spec: dict[str, Any]) -> list[str]:
        parts, requests = [], []
        for traffic, found in spec.items():
            if not isinstance(found, dict) or "plugin_decision" not in found:
                continue
            decision = found["plugin_decision"] or {}
            chosen = decision.get("chosen") or {}
            status = decision.get("status")
            figure = (
                f"accepted, **{cells.times(chosen.get('speedup'))}** "
                f"({cells.percent(chosen.get('acceptance_rate'), 0)} acceptance)"
                if status == "accepted"
                else "**declined**"
            )
            parts.append(f"{traffic}: {figure}")
            requests.append(f"{found.get('requests')} {traffic} requests")
        return [
            "; ".join(parts),
            "—",
            "lossless (tokens identical)",
            "declined traffic pays nothing: the tune step measures before proposing",
            _rests(spec, ", ".join(requests)),
        ]

    return _row(results, "speculative", build)


@block("llm.summary.cuda", "llm")
def cuda_summary(results: Results) -> str:
    def build(cuda: dict[str, Any]) -> list[str]:
        earlier = (cuda.get("earlier_run_same_lease_day") or {}).get("speedup_graph_vs_generate")
        compiled = (_part(results, "compile") or {}).get("speedup_compiled_vs_dynamic")
        target = "met" if (cuda.get("speedup_graph_vs_generate") or 0) >= 10 else "not met"
        return [
            f"**{cells.times(cuda.get('speedup_graph_vs_generate'))}** eager `generate`"
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
        parts.append(
            f"KV cache {cells.times(kv.get('speedup_kv_vs_no_cache'))} at {kv.get('new_tokens')} "
            f"tokens ({cells.times(kv.get('kv_vs_transformers_generate'))} `generate`'s default)"
        )
    long = _part(results, "batching_long")
    if long:
        ratios = long.get("ratios") or {}
        parts.append(
            f"continuous batching {cells.times(ratios.get('continuous_vs_static_throughput'))} "
            f"static on {long.get('requests')} requests, P99 "
            f"{cells.times(ratios.get('p99_static_over_continuous'))} lower"
        )
    cuda = _part(results, "cuda")
    if cuda:
        parts.append(
            f"CUDA-graph decode {cells.times(cuda.get('speedup_graph_vs_generate'))} "
            f"`generate` on an {cuda.get('device')}"
        )
    if not parts:
        return _missing(results, "kv")
    return "; ".join(parts) + f"; each one run, inputs and samples: {cells.PENDING}"


@effect("PT-LLM001", "SmolLM2-135M-Instruct, 256 new tokens, batch 1, one CPU thread", RUN, "llm")
def llm001(results: Results) -> str:
    kv = _part(results, "kv")
    if not kv:
        return _missing(results, "kv")
    return (
        f"KV cache **{cells.times(kv.get('speedup_kv_vs_no_cache'))}** no cache "
        f"({cells.number(kv.get('no_cache_tokens_per_s'))} → "
        f"{cells.number(kv.get('kv_cache_tokens_per_s'))} tokens/s; transformers' `generate` "
        f"{cells.number(kv.get('transformers_generate_tokens_per_s'))}), tokens identical; "
        + _rests(kv, f"one {kv.get('prompt_tokens')}-token prompt")
    )


@effect("PT-LLM003", "mixed-length requests arriving at once, batches of 8", RUN, "llm")
def llm003(results: Results) -> str:
    long = _part(results, "batching_long")
    if not long:
        return _missing(results, "batching_long")
    ratios = long.get("ratios") or {}
    return (
        f"continuous batching **{cells.times(ratios.get('continuous_vs_static_throughput'))}** "
        f"static batching's tokens/s, P99 {cells.times(ratios.get('p99_static_over_continuous'))} "
        f"lower; " + _rests(long, f"{long.get('requests')} requests")
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
# ``prefix.{prefix_lengths, coverage, total_s_*, speedup, cache}``, ``batching.{sequential,
# saturated[size][policy], poisson_rate_rps, poisson[policy], output_tokens}`` (a policy:
# ``tokens_per_s``, ``backlog_tokens_per_s``, ``latency_ms.p99``, ``mean_batch``),
# ``speculative[traffic].{ngram_copy_rate, plugin_decision.points[], self_speculative}``,
# ``compile.{tokens_per_s, first_request_s_including_compile}``, ``cuda.{*_tokens_per_s,
# weight_bytes, graph_fraction_of_bound}``; ``llm_step_profile.json``
# (``python -m benchmarks.llm.step_profile``) and ``llm_step_ops.json``
# (``python -m benchmarks.llm.step_ops``).

STEP_PROFILE = "python -m benchmarks.llm.step_profile"
STEP_OPS = "python -m benchmarks.llm.step_ops"


def _ran(section: dict[str, Any]) -> str:
    """``Measured by `command`, 2026-11-28 23:26:30, 1 thread; host load ...``."""
    threads = section.get("threads")
    return (
        f"Measured by `{section.get('command')}`, {section.get('measured_at')}"
        + (f", {threads} thread{'s' if threads != 1 else ''}" if threads else "")
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
    none = section.get("no_cache_tokens_per_s")
    rows = [
        ("no KV cache (prefix re-run each token)", none),
        ("KV cache, pipetune loop (cache layers growing in place)", None),
        ("KV cache, transformers `generate` (the competent reference)", None),
    ]
    values = [none, section.get("kv_cache_tokens_per_s")]
    values.append(section.get("transformers_generate_tokens_per_s"))
    table = cells.table(
        ["variant", "tokens/s", "vs no cache"],
        [
            [label, cells.number(v, 1), cells.times(v / none if v and none else None, bold=i == 1)]
            for i, ((label, _), v) in enumerate(zip(rows, values, strict=True))
        ],
        "lrr",
    )
    target = "met" if (section.get("speedup_kv_vs_no_cache") or 0) >= 5 else "**not met**"
    return (
        f"{table}\n\n{_same(section.get('identical_tokens'))} Target (≥ 5x): {target}. The "
        f"plugin's loop runs at {cells.times(section.get('kv_vs_transformers_generate'))} "
        f"transformers' own `generate`. {section.get('prompt_tokens')}-token prompt, "
        f"{section.get('new_tokens')} new tokens, one run (not through `compare`): inputs and "
        f"samples {cells.PENDING}. {_ran(section)}"
    )


@block("llm.prefix", "llm")
def prefix(results: Results) -> str:
    """The prefix cache: time to first token and total time."""
    section = _part(results, "prefix")
    if not section:
        return _missing(results, "prefix")
    before, after = section.get("ttft_ms_p50_before"), section.get("ttft_ms_p50_after")
    cache, coverage = section.get("cache") or {}, section.get("coverage") or {}
    lower = before / after if before and after else None
    table = cells.table(
        ["variant", "TTFT p50", "total"],
        [
            [
                "no prefix cache",
                f"{cells.number(before, 0)} ms",
                f"{cells.number(section.get('total_s_before'), 1)} s",
            ],
            [
                "prefix cache",
                f"{cells.number(after, 0)} ms (**{cells.times(lower, 1)} lower**)",
                f"{cells.number(section.get('total_s_after'), 1)} s "
                f"({cells.times(section.get('speedup'))})",
            ],
        ],
        "lrr",
    )
    lengths = " and ".join(str(n) for n in section.get("prefix_lengths") or [])
    return (
        f"{table}\n\n{_same(section.get('identical'))} {section.get('requests')} requests; "
        f"shared prefixes of {lengths} tokens, saving "
        f"{cells.percent(coverage.get('prefill_tokens_saved'), 0)} of all prefill tokens; "
        f"{cells.number(cache.get('hits'))} hits, {cells.number(cache.get('tokens_reused'))} "
        f"tokens reused, {cells.number((cache.get('bytes') or 0) / 1e6, 1)} MB of cached keys "
        f"and values. One run (not through `compare`). {_ran(section)}"
    )


POLICIES = (
    ("static (padded)", "static (padded to the batch's longest)"),
    ("static (evict finished)", "static, finished rows evicted"),
    ("continuous", "**continuous**"),
)


def _policy_row(found: dict[str, Any], label: str) -> list[str]:
    return [
        label,
        cells.number(found.get("tokens_per_s"), 1),
        cells.number(found.get("backlog_tokens_per_s"), 1),
        f"{cells.number((found.get('latency_ms') or {}).get('p99', 0) / 1000, 0)} s",
        cells.number(found.get("mean_batch")),
    ]


@block("llm.batching", "llm")
def batching(results: Results) -> str:
    """Continuous against static batching on the mixed stream, per max batch."""
    section = _part(results, "batching")
    if not section:
        return _missing(results, "batching")
    header = ["policy", "max batch", "tokens/s", "while waiting", "P99 latency", "mean batch"]
    rows = []
    one = section.get("sequential")
    if one:
        row = _policy_row(one, "one at a time")
        rows.append([row[0], "1", row[1], "", row[3], "1.00"])
    for size, policies in (section.get("saturated") or {}).items():
        for key, label in POLICIES:
            if key in policies:
                row = _policy_row(policies[key], label)
                rows.append([row[0], str(size), *row[1:]])
    lines = [cells.table(header, rows, "lrrrrr"), ""]
    for size, r in (section.get("ratios") or {}).items():
        lines.append(
            f"* Max batch {size}: continuous vs static (padded) "
            f"**{cells.times(r.get('continuous_vs_static_throughput'))}** tokens/s "
            f"({cells.times(r.get('continuous_vs_static_backlog_throughput'))} while waiting), "
            f"P99 {cells.times(r.get('p99_static_over_continuous'))} lower; vs static with "
            f"eviction {cells.times(r.get('continuous_vs_static_evict_throughput'))} "
            f"({cells.times(r.get('continuous_vs_static_evict_backlog_throughput'))} while "
            f"waiting)."
        )
    out = section.get("output_tokens") or {}
    lines += [
        "",
        f"{section.get('requests')} requests, outputs p50 {cells.number(out.get('p50'), 0)}, "
        f"mean {cells.number(out.get('mean'), 0)}, max {cells.number(out.get('max'), 0)} "
        f"tokens; tokens identical to one-at-a-time decoding for every policy. One run per "
        f"policy, one after another (not through `compare`). {_ran(section)}",
    ]
    return "\n".join(lines)


@block("llm.batching_long", "llm")
def batching_long(results: Results) -> str:
    """The same mix, twice as long."""
    section = _part(results, "batching_long")
    if not section:
        return _missing(results, "batching_long")
    policies = section.get("saturated") or {}
    rows = [_policy_row(policies[key], label) for key, label in POLICIES if key in policies]
    r, out = section.get("ratios") or {}, section.get("output_tokens") or {}
    return "\n".join(
        [
            cells.table(
                ["policy", "tokens/s", "while waiting", "P99 latency", "mean batch"],
                rows,
                "lrrrr",
            ),
            "",
            f"{section.get('requests')} requests (outputs p50 {cells.number(out.get('p50'), 0)}, "
            f"mean {cells.number(out.get('mean'), 0)}, max {cells.number(out.get('max'), 0)}), "
            f"max batch {section.get('max_batch')}: continuous vs static (padded) "
            f"**{cells.times(r.get('continuous_vs_static_throughput'))}** tokens/s "
            f"(**{cells.times(r.get('continuous_vs_static_backlog_throughput'))}** while "
            f"waiting), **P99 {cells.times(r.get('p99_static_over_continuous'))} lower**. "
            f"{_same(section.get('identical'))} {_ran(section)}",
        ]
    )


@block("llm.poisson", "llm")
def poisson(results: Results) -> str:
    """Poisson arrivals below static capacity: latency and time to first token."""
    section = _part(results, "batching")
    found = (section or {}).get("poisson") or {}
    if not found:
        return _missing(results, "batching")

    def s(value: Any) -> str:
        return cells.number((value or 0) / 1000, 1)

    parts = [
        f"{label.strip('*')} {s(p.get('latency_ms', {}).get('p50'))} / "
        f"{s(p.get('latency_ms', {}).get('p99'))} s "
        f"(TTFT P50 {s(p.get('ttft_ms', {}).get('p50'))} s)"
        for key, label in POLICIES
        if (p := found.get(key))
    ]
    return (
        f"Poisson arrivals at {cells.number(section.get('poisson_rate_rps'), 3)} requests/s "
        f"(max batch {section.get('poisson_max_batch')}), latency P50 / P99: "
        + "; ".join(parts)
        + "."
    )


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
    """Speculative decoding per stream: every drafter measured, and the plugin's decision."""
    section = _part(results, "speculative")
    if not section:
        return _missing(results, "speculative")
    rows = []
    for traffic, found in section.items():
        if not isinstance(found, dict) or "plugin_decision" not in found:
            continue
        decision = found.get("plugin_decision") or {}
        chosen = (decision.get("chosen") or {}).get("num_draft_tokens")
        label = (
            f"{traffic} ({found.get('requests')} requests; "
            f"{cells.percent(found.get('ngram_copy_rate'), 0)} of output 3-grams copy the prompt)"
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
                    f"prompt lookup, k = {k}",
                    cells.percent(point.get("acceptance_rate"), 0),
                    cells.times(point.get("speedup"), bold=k == chosen),
                    verdict if k == chosen else "",
                ]
            )
        if not points:
            rows.append([label, "prompt lookup", "–", "–", verdict])
        own = found.get("self_speculative")
        if own:
            rows.append(
                [
                    "",
                    f"self-draft (first {section.get('draft_layers')} layers), k = 3",
                    cells.percent(own.get("acceptance_rate"), 0),
                    cells.times(own.get("speedup")),
                    "—",
                ]
            )
    return "\n".join(
        [
            cells.table(
                ["stream", "drafter", "acceptance", "speedup", "plugin decision"], rows, "llrrl"
            ),
            "",
            f"Batch 1, greedy, tokens checked identical to plain decoding; each point one "
            f"tune-step measurement (not through `compare`). {_ran(section)}",
        ]
    )


@block("llm.compile", "llm")
def compile_step(results: Results) -> str:
    """The decode step through ``torch.compile`` against the eager ones, on the CPU."""
    section = _part(results, "compile")
    if not section:
        return _missing(results, "compile")
    speeds = section.get("tokens_per_s") or {}
    base = speeds.get("dynamic cache (plugin loop)")
    rows = [
        [
            name,
            cells.number(value, 1),
            cells.times(value / base if value and base else None, bold="compiled" in name),
        ]
        for name, value in speeds.items()
    ]
    rounds = len(next(iter((section.get("seconds") or {}).values()), []))
    return (
        cells.table(["variant", "tokens/s", "vs dynamic cache"], rows, "lrr")
        + f"\n\n{_same(section.get('identical'))} {section.get('new_tokens')} new tokens, batch "
        f"1, {rounds} interleaved rounds (medians); the first request, compile included, took "
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
    target = "met" if (section.get("speedup_graph_vs_generate") or 0) >= 10 else "**not met**"
    when = " and ".join(str(r.get("measured_at")) for r in runs)
    return (
        f"{table}\n\nOn an {section.get('device')}, weights {section.get('weights')}, "
        f"{section.get('new_tokens')} new tokens, batch 1, runs at {when}. "
        f"{_same(section.get('identical'))} The graph decodes at "
        f"{cells.percent(section.get('graph_fraction_of_bound'))} of the bandwidth bound. "
        f"Target (≥ 10x `generate`): {target}. One run each (not through `compare`); "
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
