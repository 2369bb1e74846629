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
    return cells.row_cells(
        "; ".join(measured),
        "; ".join(library),
        "tokens identical to the code as written (held-out split)",
        "; ".join(cells.p99(section["vs_teaching"]) for section in rows.values()),
        f"{'; '.join(rests)}; {cells.load(next(iter(rows.values())))}",
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
