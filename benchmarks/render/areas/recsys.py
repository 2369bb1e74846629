"""recsys: ANN against exact top-k, and the two-stage demo
(``benchmarks/results/recsys.json``).

Expected keys (``python -m benchmarks.recsys.run``): ``conditions.{command, mode,
host_load}``, ``headline.two_stage.{after, vs_full_ranking, vs_library_baseline,
top50_kept, simulated}``, ``headline.{ann, isotropic, skewed}.{index, vs_numpy_exact,
vs_faiss_flat, held_out_recall, picked_time_over_sweep_best}``, each ``vs_*`` a figure
with ``speedup``, ``ci``, ``p99_speedup``, ``inputs_timed``, ``inputs_total``,
``samples_per_side``. Runs from before ``compare`` hold ``ann.{speedup_vs_numpy_exact,
speedup_vs_faiss_flat, picked.held_out_recall, picked_vs_sweep_best, held_out_queries}``
and ``two_stage.held_out[change].{speedup_vs_full, top50_kept, top50_kept_ci}``.
``plain_script*`` (``python -m benchmarks.recsys.plain_script``): ``optimize.{speedup,
ci, inputs_timed, inputs_total, samples_per_side, host_load}``, ``plain_script``,
``relative_difference``, ``target_met``. A ``--quick`` run (``conditions.mode`` quick) is
pending.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

RUN = "python -m benchmarks.recsys.run"
PLAIN = "python -m benchmarks.recsys.plain_script"
SIMULATED = "the feature store is simulated (`time.sleep` per read)"


def _data(results: Results) -> dict[str, Any] | None:
    data = results.area("recsys")
    conditions = data.get("conditions") or {}
    if not data or conditions.get("mode") == "quick" or cells.is_smoke(conditions):
        return None
    return data


def _missing(results: Results) -> str:
    conditions = results.area("recsys").get("conditions") or {}
    smoke = conditions.get("mode") == "quick" or cells.is_smoke(conditions)
    return cells.pending(RUN, "only a smoke run recorded" if smoke else None)


def _load(data: dict[str, Any]) -> str:
    return cells.load(data.get("conditions") or {})


def _ann(data: dict[str, Any], name: str) -> dict[str, Any]:
    """One catalog's ANN figures in the new shape, or translated from an older run."""
    found = (data.get("headline") or {}).get(name)
    if found:
        return dict(found)
    old = data.get(name) or {}
    if not old:
        return {}
    picked = old.get("picked") or {}
    return {
        "index": f"{(old.get('index') or {}).get('spec')}, nprobe {picked.get('nprobe')}",
        "vs_numpy_exact": {"speedup": old.get("speedup_vs_numpy_exact")},
        "vs_faiss_flat": {"speedup": old.get("speedup_vs_faiss_flat")},
        "held_out_recall": picked.get("held_out_recall"),
        "picked_time_over_sweep_best": old.get("picked_vs_sweep_best"),
        "older": f"{old.get('held_out_queries')} held-out queries, best of 3 passes, one "
        "variant after another (not through compare)",
    }


def _rests(figure: dict[str, Any] | None, found: dict[str, Any], what: str) -> str:
    if found.get("older"):
        return f"{found['older']}; inputs and samples: {cells.PENDING}"
    return cells.rests_on(figure, what=what)


def _two_stage(data: dict[str, Any]) -> dict[str, Any]:
    found = (data.get("headline") or {}).get("two_stage")
    if found:
        return dict(found)
    held = (data.get("two_stage") or {}).get("held_out") or {}
    after = "recsys.batched_feature_reads"
    row = held.get(after) or {}
    if not row:
        return {}
    return {
        "after": after,
        "vs_full_ranking": {"speedup": row.get("speedup_vs_full")},
        "top50_kept": row.get("top50_kept"),
        "top50_kept_ci": row.get("top50_kept_ci"),
        "alone": (held.get("recsys.ann_two_stage") or {}).get("speedup_vs_full"),
        "older": f"{(data.get('two_stage') or {}).get('held_out_requests')} held-out requests, "
        "best of 3 passes (not through compare)",
    }


@block("recsys.summary.two_stage", "recsys")
def two_stage_summary(results: Results) -> str:
    data = _data(results)
    found = _two_stage(data or {})
    if not found:
        missing = _missing(results)
        return cells.row_cells(missing, missing, "—", "—", missing)
    full = found.get("vs_full_ranking") or {}
    library = found.get("vs_library_baseline")
    worst = _ann(data or {}, "isotropic")
    alone = (
        f"; the two-stage change alone {cells.times(found['alone'])}" if found.get("alone") else ""
    )
    return cells.row_cells(
        f"**{cells.ratio(full.get('speedup'), full.get('ci'))}** full ranking after "
        f"`{found.get('after')}`{alone}",
        cells.ratio(library.get("speedup"), library.get("ci"), bold=True)
        if library
        else cells.pending(RUN, "the library-defaults two-stage baseline"),
        f"{cells.percent(found.get('top50_kept'))} of the full ranking's top-50 kept",
        f"{SIMULATED}; {cells.p99(full)}; worst case (isotropic catalog, ANN vs numpy "
        f"exact): {cells.times((worst.get('vs_numpy_exact') or {}).get('speedup'))}",
        f"{_rests(full, found, 'requests')}; {_load(data or {})}",
    )


@block("recsys.summary.ann", "recsys")
def ann_summary(results: Results) -> str:
    data = _data(results)
    found = _ann(data or {}, "ann")
    if not found:
        missing = _missing(results)
        return cells.row_cells(missing, missing, "—", "—", missing)
    exact = found.get("vs_numpy_exact") or {}
    flat = found.get("vs_faiss_flat") or {}
    worst = _ann(data or {}, "isotropic")
    skewed = _ann(data or {}, "skewed")
    skew = (
        f"; skewed norms: {cells.times((skewed.get('vs_numpy_exact') or {}).get('speedup'))}"
        if skewed
        else ""
    )
    return cells.row_cells(
        f"**{cells.ratio(exact.get('speedup'), exact.get('ci'))}** numpy exact with "
        f"{found.get('index')}; picked / sweep best "
        f"{cells.number(found.get('picked_time_over_sweep_best'))}",
        f"{cells.ratio(flat.get('speedup'), flat.get('ci'), bold=True)} faiss `IndexFlatIP`",
        f"recall@100 {cells.number(found.get('held_out_recall'), 3)}",
        f"{cells.p99(exact)}; worst case (isotropic): "
        f"{cells.times((worst.get('vs_numpy_exact') or {}).get('speedup'))} numpy exact{skew}",
        f"{_rests(exact, found, 'queries')}; {_load(data or {})}",
    )


@block("recsys.summary.skewed", "recsys")
def skewed_summary(results: Results) -> str:
    """Exact top-100 on the skewed-norm catalog: the pick against the sweep's best."""
    data = _data(results)
    found = _ann(data or {}, "skewed")
    if not found:
        missing = cells.pending(f"{RUN} --only skewed") if data else _missing(results)
        return cells.row_cells(missing, missing, "—", "—", missing)
    exact = found.get("vs_numpy_exact") or {}
    flat = found.get("vs_faiss_flat") or {}
    ratio = found.get("picked_time_over_sweep_best")
    recall = found.get("held_out_recall")
    section = (data or {}).get("skewed") or {}
    target = float(section.get("target_recall", 0.95))
    # A section run alone (--only skewed) keeps its own conditions: command and load.
    conditions = section if section.get("conditions") else data or {}
    if ratio is None or ratio > 1.2:
        verdict = "not met"
    elif recall is None or recall < target:
        verdict = f"not met: held-out recall@100 {cells.number(recall, 4)} < {target:g}"
    else:
        verdict = "met"
    return cells.row_cells(
        f"{found.get('index')}: picked / sweep best **{cells.number(ratio)}** — {verdict}; "
        f"**{cells.ratio(exact.get('speedup'), exact.get('ci'))}** numpy exact",
        f"{cells.ratio(flat.get('speedup'), flat.get('ci'), bold=True)} faiss `IndexFlatIP`",
        f"recall@100 {cells.number(found.get('held_out_recall'), 3)}",
        cells.p99(exact),
        f"{_rests(exact, found, 'queries')}; {_load(conditions)}",
    )


def _plain(results: Results, *keys: str) -> dict[str, Any] | None:
    for key in keys or ("plain_script", "plain_script_recsys_only"):
        found = results.area("recsys").get(key)
        if isinstance(found, dict) and "optimize" in found and not cells.is_smoke(found):
            return found
    return None


@block("recsys.summary.demo", "recsys")
def demo_summary(results: Results) -> str:
    section = _plain(results)
    if not section:
        missing = cells.pending(PLAIN)
        return cells.row_cells(missing, missing, "—", "—", missing)
    loop = section.get("optimize") or {}
    steady = _plain(results, "plain_script_steady_malloc")
    return cells.row_cells(
        _agreement(section, "glibc's allocator as it comes")
        + (
            f"; {_agreement(steady, 'allocator thresholds fixed in both processes')}"
            if steady
            else ""
        ),
        "—",
        "—",
        f"{SIMULATED}; {_sides(section)}",
        f"{cells.rests_on(loop)}; {cells.load(loop)}",
    )


def _agreement(section: dict[str, Any], condition: str) -> str:
    """``**93.48x [..]** through the loop, 155.83x in a plain script (67 % apart: not met)``."""
    loop, script = section.get("optimize") or {}, section.get("plain_script") or {}
    met = "met" if section.get("target_met") else "not met"
    same = (script.get("compare") or {}).get("speedup")
    harness = (
        f"; `compare` itself in the fresh process {cells.times(same)} "
        f"({cells.percent(abs(same / loop['speedup'] - 1), 0)} from the loop's)"
        if same and loop.get("speedup")
        else ""
    )
    where = loop.get("measured_in") or ""
    measured = (
        "re-measured in a fresh process"
        if where.startswith("a fresh process")
        else "re-measured in the loop's own process (a run from before the final "
        "re-measurement moved to a fresh process)"
    )
    return (
        f"{condition}: **{cells.ratio(loop.get('speedup'), loop.get('ci'))}** through the loop, "
        f"{measured}; {cells.times(script.get('speedup'))} in a plain script after "
        f"`load_recipe` ({cells.percent(section.get('relative_difference'), 0)} apart: "
        f"{met}){harness}"
    )


def _sides(section: dict[str, Any]) -> str:
    """Each side's ms a request in ``optimize``'s re-measurement and in the plain script,
    and the original's page faults there."""
    loop = (section.get("optimize") or {}).get("ms_per_request") or {}
    script = section.get("plain_script") or {}
    fresh = script.get("ms_per_request") or {}
    faults = script.get("page_faults_per_request") or {}
    if not loop or not fresh:
        return "ms per request per side: not recorded in this run"
    return (
        f"ms a request, `optimize` / plain script: original "
        f"{cells.number(loop.get('original'), 0)} / "
        f"{cells.number(fresh.get('original'), 0)}, optimized "
        f"{cells.number(loop.get('optimized'), 2)} / {cells.number(fresh.get('optimized'), 2)}"
        + (
            f"; the original takes {cells.number(faults.get('original'), 0)} page faults a "
            "request in the fresh process"
            if faults
            else ""
        )
    )


@block("readme.recsys", "recsys")
def readme(results: Results) -> str:
    """README's plugin table: the ``recsys`` row's measured figure."""
    data = _data(results)
    ann, two = _ann(data or {}, "ann"), _two_stage(data or {})
    if not ann and not two:
        return _missing(results)
    exact, flat = ann.get("vs_numpy_exact") or {}, ann.get("vs_faiss_flat") or {}
    full = two.get("vs_full_ranking") or {}
    library = two.get("vs_library_baseline") or {}
    worst = _ann(data or {}, "isotropic")
    return (
        f"ANN {cells.ratio(exact.get('speedup'), exact.get('ci'))} numpy exact "
        f"({cells.times(flat.get('speedup'))} faiss flat, the library default) at recall@100 "
        f"{cells.number(ann.get('held_out_recall'), 3)}, worst case (isotropic) "
        f"{cells.times((worst.get('vs_numpy_exact') or {}).get('speedup'))}; two-stage "
        f"{cells.ratio(full.get('speedup'), full.get('ci'))} full ranking "
        + (
            f"({cells.times(library.get('speedup'))} the library-defaults two-stage) "
            if library
            else f"(against the library-defaults two-stage: {cells.PENDING}) "
        )
        + f"at {cells.percent(two.get('top50_kept'))} of its top-50, "
        f"{SIMULATED}; {_rests(full, two, 'requests')}; {_load(data or {})}"
    )


@effect(
    "PT-REC001", "exact numpy top-100 over the demo catalog, one query at a time", RUN, "recsys"
)
def rec001(results: Results) -> str:
    data = _data(results)
    found = _ann(data or {}, "ann")
    if not found:
        return _missing(results)
    exact = found.get("vs_numpy_exact") or {}
    return (
        f"the plugin's {found.get('index')} "
        f"**{cells.ratio(exact.get('speedup'), exact.get('ci'))}** "
        f"at held-out recall@100 {cells.number(found.get('held_out_recall'), 3)}; "
        f"{_rests(exact, found, 'queries')}; {_load(data or {})}"
    )


@effect("PT-REC002", "faiss `IndexFlatIP` over the same catalog", RUN, "recsys")
def rec002(results: Results) -> str:
    data = _data(results)
    found = _ann(data or {}, "ann")
    if not found:
        return _missing(results)
    flat = found.get("vs_faiss_flat") or {}
    return (
        f"the tuned ANN index **{cells.ratio(flat.get('speedup'), flat.get('ci'))}** at "
        f"recall@100 {cells.number(found.get('held_out_recall'), 3)}; "
        f"{_rests(flat, found, 'queries')}; {_load(data or {})}"
    )


# The page's tables (docs/benchmarks/recsys.md), from the run's detailed sections:
# ``ann``/``isotropic``.{catalog, held_out_queries, index.{spec, build_seconds, index_mib,
# catalog_mib}, hnsw_build_s_est, exact.{numpy_exact_ms, faiss_flat_1thread_ms},
# picked.{nprobe, ms_per_query, held_out_recall, held_out_recall_ci, held_out_ndcg},
# sweep.{points[].{nprobe, recall}, best_at_target.{nprobe, recall, ms_per_query}},
# picked_vs_sweep_best, batches[].{batch, exact_ms_per_query, ann_ms_per_query, speedup}};
# ``two_stage``.{held_out_requests, agreement, tuning, held_out[variant].{requests_per_s,
# ms_per_request, p99_ms, speedup_vs_full, top50_kept, top50_kept_ci, ndcg_at_50,
# min_request_kept, stage_ms, ranking_stage_speedup}}; ``targets``.


def _rests_page(data: dict[str, Any], inputs: Any, what: str) -> str:
    timing = (data.get("conditions") or {}).get("timing") or "timing not recorded"
    return (
        f"Rests on {cells.number(inputs)} held-out {what}; {timing} (not through `compare`: "
        f"no interval on the times); samples per side: {cells.PENDING}; {_load(data)}."
    )


def _ann_table(results: Results, name: str) -> str:
    data = _data(results)
    section = (data or {}).get(name) or {}
    if not section:
        return _missing(results)
    exact, picked = section.get("exact") or {}, section.get("picked") or {}
    best = (section.get("sweep") or {}).get("best_at_target") or {}
    numpy_ms, flat_ms = exact.get("numpy_exact_ms"), exact.get("faiss_flat_1thread_ms")

    def row(label: str, ms: Any, recall: str) -> list[str]:
        vs = numpy_ms / ms if numpy_ms and ms else None
        return [label, cells.number(ms), cells.times(vs), recall]

    recall = cells.number(picked.get("held_out_recall"), 3)
    bounds = cells.interval(picked.get("held_out_recall_ci"), 3)
    ndcg = cells.number(picked.get("held_out_ndcg"), 3)
    index = section.get("index") or {}
    catalog = " x ".join(cells.number(n) for n in section.get("catalog") or [])
    table = cells.table(
        ["", "ms / query", "vs numpy exact", "recall@100 (held out)"],
        [
            row("exact, numpy matmul + argpartition", numpy_ms, "1"),
            row("exact, faiss `IndexFlatIP`, 1 thread", flat_ms, "1"),
            row(
                f"**ANN picked by the plugin**: {index.get('spec')}, nprobe {picked.get('nprobe')}",
                picked.get("ms_per_query"),
                f"**{recall}** {bounds}, NDCG@100 {ndcg}",
            ),
            row(
                f"cheapest sweep point at the target: nprobe {best.get('nprobe')}",
                best.get("ms_per_query"),
                cells.number(best.get("recall"), 3),
            ),
        ],
        "lrrr",
    )
    return "\n".join(
        [
            table,
            "",
            f"{catalog} catalog. Picked / sweep best: "
            f"**{cells.number(section.get('picked_vs_sweep_best'))}**; vs faiss flat "
            f"{cells.times(section.get('speedup_vs_faiss_flat'))}. Index built in "
            f"{cells.number(index.get('build_seconds'), 1)} s on "
            f"{cells.number(index.get('build_threads'))} build threads, "
            f"{cells.number(index.get('index_mib'), 0)} MiB for a "
            f"{cells.number(index.get('catalog_mib'), 0)} MiB catalog (HNSW's build estimated "
            f"at {cells.number(section.get('hnsw_build_s_est'), 0)} s). "
            + _rests_page(data or {}, section.get("held_out_queries"), "queries"),
        ]
    )


@block("recsys.ann", "recsys")
def ann(results: Results) -> str:
    """ANN against exact top-100 on the demo catalog, one query at a time."""
    return _ann_table(results, "ann")


@block("recsys.isotropic", "recsys")
def isotropic(results: Results) -> str:
    """The same on isotropic random vectors (ANN's worst case)."""
    return _ann_table(results, "isotropic")


def _sweep(section: dict[str, Any], at: tuple[int, ...] = ()) -> str:
    points = section.get("sweep", {}).get("points") or []
    shown = [p for p in points if not at or p.get("nprobe") in at]
    return ", ".join(
        f"{cells.number(p.get('nprobe'))}: {cells.number(p.get('recall'), 3)}" for p in shown
    )


@block("recsys.sweep", "recsys")
def sweep(results: Results) -> str:
    """Held-out recall@100 by nprobe, on both catalogs."""
    data = _data(results)
    if not data:
        return _missing(results)
    lines = []
    for name, label in (("ann", "demo catalog"), ("isotropic", "isotropic catalog")):
        section = data.get(name) or {}
        text = _sweep(section) if section else _missing(results)
        lines.append(f"* {label}, recall@100 by nprobe: {text}.")
    return "\n".join(lines)


@block("recsys.batches", "recsys")
def batches(results: Results) -> str:
    """Per-query time by batch size, exact against the picked ANN point, both catalogs."""
    data = _data(results)
    if not data:
        return _missing(results)
    rows = []
    for name, label in (("ann", "demo"), ("isotropic", "isotropic")):
        for row in (data.get(name) or {}).get("batches") or []:
            rows.append(
                [
                    label,
                    cells.number(row.get("batch")),
                    cells.number(row.get("exact_ms_per_query")),
                    cells.number(row.get("ann_ms_per_query")),
                    cells.times(row.get("speedup"), 1),
                ]
            )
    if not rows:
        return _missing(results)
    queries = (data.get("ann") or {}).get("held_out_queries")
    return "\n".join(
        [
            cells.table(["catalog", "batch", "exact ms/q", "ANN ms/q", "speedup"], rows, "lrrrr"),
            "",
            _rests_page(data, queries, "queries"),
        ]
    )


#: The two-stage variants in the order the plugin applies them, and their labels.
TWO_STAGE = (
    ("full_ranking", "full ranking (the original)"),
    ("recsys.ann_two_stage", "**+ two-stage**"),
    ("recsys.batched_feature_reads", "+ batched feature reads"),
    ("recsys.user_embedding_cache", "+ user-embedding cache"),
)


@block("recsys.two_stage", "recsys")
def two_stage(results: Results) -> str:
    """The two-stage demo, held out, one request at a time after each change."""
    data = _data(results)
    section = (data or {}).get("two_stage") or {}
    held = section.get("held_out") or {}
    if not held:
        return _missing(results)
    rows = []
    for key, label in TWO_STAGE:
        row = held.get(key)
        if not row:
            continue
        kept = row.get("top50_kept")
        rows.append(
            [
                label,
                cells.number(row.get("requests_per_s")),
                cells.number(row.get("ms_per_request")),
                cells.number(row.get("p99_ms")),
                cells.times(row.get("speedup_vs_full"), 1) if kept is not None else "1x",
                f"{cells.number(kept, 3)} {cells.interval(row.get('top50_kept_ci'), 3)}".strip()
                if kept is not None
                else "1",
                cells.number(row.get("ndcg_at_50"), 3) if kept is not None else "1",
            ]
        )
    alone = held.get("recsys.ann_two_stage") or {}
    stages = alone.get("stage_ms") or {}
    full_rank = ((held.get("full_ranking") or {}).get("stage_ms") or {}).get("rank")
    tuning = (section.get("tuning") or {}).get("recsys.ann_two_stage") or {}
    params = tuning.get("params") or {}
    return "\n".join(
        [
            cells.table(
                [
                    "pipeline",
                    "requests/s",
                    "ms / request",
                    "P99 ms",
                    "vs full",
                    "top-50 kept [95 % CI]",
                    "NDCG@50",
                ],
                rows,
                "lrrrrrr",
            ),
            "",
            f"The ranking stage alone: {cells.number(full_rank, 1)} ms -> "
            f"{cells.number(stages.get('rank.retrieve'))} ms retrieval + "
            f"{cells.number(stages.get('rank'))} ms ranking of "
            f"{cells.number(params.get('n_candidates'))} candidates = "
            f"**{cells.times(alone.get('ranking_stage_speedup'), 0)}**; the feature stage "
            f"after the two-stage change: {cells.number(stages.get('features'))} ms a request. "
            f"The worst request keeps {cells.percent(alone.get('min_request_kept'), 0)} of its "
            f"top 50. Tuned on {cells.number(section.get('tune_requests'))} requests in "
            f"{cells.number(tuning.get('tune_seconds'), 0)} s: floor N with exact retrieval "
            f"{cells.number(tuning.get('n_floor_exact_retrieval'))}, "
            f"{params.get('runtime_param')} {params.get('runtime')} (tuning-split share kept "
            f"{cells.number(tuning.get('tune_recall'), 3)}). {SIMULATED[0].upper()}"
            f"{SIMULATED[1:]}. "
            + _rests_page(data or {}, section.get("held_out_requests"), "requests"),
        ]
    )


@block("recsys.agreement", "recsys")
def agreement(results: Results) -> str:
    """How far retrieval's ranking agrees with the ranker's (why N must be large)."""
    data = _data(results)
    found = ((data or {}).get("two_stage") or {}).get("agreement") or {}
    if not found:
        return _missing(results)
    kept = found.get("top50_kept_by_exact_retrieval_topN") or {}
    by_n = ", ".join(
        f"N = {cells.number(int(n))}: {cells.percent(share, 0)}" for n, share in kept.items()
    )
    return (
        f"Retrieval and ranking scores: Pearson {cells.number(found.get('pearson_all_items'))} "
        f"over the catalog but **{cells.number(found.get('pearson_retrieval_top1000'))} within "
        f"the retrieval top 1,000**. The share of the ranker's top 50 that exact retrieval's "
        f"top N keeps: {by_n} ({cells.number(found.get('requests'))} requests)."
    )


@block("recsys.targets", "recsys")
def targets(results: Results) -> str:
    """Issue #4's targets against the recorded run."""
    data = _data(results)
    if not data:
        return _missing(results)
    met = data.get("targets") or {}
    ann_, held = data.get("ann") or {}, (data.get("two_stage") or {}).get("held_out") or {}
    best = met.get("recsys_changes_best") or {}
    after = held.get(best.get("after")) or {}
    alone = held.get("recsys.ann_two_stage") or {}
    index = ann_.get("index") or {}

    def verdict(key: str) -> str:
        value = met.get(key)
        return "–" if value is None else ("met" if value else "**not met**")

    rows = [
        [
            "two-stage vs full ranking >= 100x requests/s at >= 95 % of the top-k",
            f"after `{best.get('after')}`: **{cells.times(best.get('speedup_vs_full'), 1)}** at "
            f"{cells.number(after.get('top50_kept'), 3)}; the two-stage change alone "
            f"{cells.times(alone.get('speedup_vs_full'), 1)} end to end (ranking stage "
            f"{cells.times(met.get('two_stage_ranking_stage_speedup'), 0)})",
            f"with the plugin's changes: {verdict('recsys_changes_>=100x_rps_keeping_>=95%')}; "
            f"the two-stage change alone: {verdict('two_stage_alone_>=100x_rps_keeping_>=95%')}",
        ],
        [
            "ANN vs exact, one query at a time, recall@100 >= 0.95: >= 20x numpy",
            f"**{cells.times(ann_.get('speedup_vs_numpy_exact'), 0)}** at "
            f"{cells.number((ann_.get('picked') or {}).get('held_out_recall'), 3)} "
            f"({cells.times(ann_.get('speedup_vs_faiss_flat'), 0)} faiss flat)",
            verdict("ann_vs_exact_>=20x_at_recall@100>=0.95"),
        ],
        [
            "picked point within 1.2x of the sweep's best",
            f"**{cells.number(ann_.get('picked_vs_sweep_best'))}**",
            verdict("picked_within_1.2x_of_sweep_best"),
        ],
        [
            "index build time and memory",
            f"{index.get('spec')} {cells.number(index.get('build_seconds'), 1)} s, "
            f"{cells.number(index.get('index_mib'), 0)} MiB",
            "reported",
        ],
    ]
    return "\n".join(
        [
            cells.table(["target", "measured", ""], rows),
            "",
            f"{cells.conditions(_record(data), RUN)}",
        ]
    )


def _record(data: dict[str, Any]) -> dict[str, Any]:
    record = dict(data.get("conditions") or {})
    record["machine"] = data.get("machine")
    return record


@block("recsys.loop", "recsys")
def loop(results: Results) -> str:
    """The demo through ``optimize`` and again in a plain script (``plain_script*``)."""
    section = _plain(results)
    if not section:
        return cells.pending(PLAIN)
    loop_ = section.get("optimize") or {}
    steady = _plain(results, "plain_script_steady_malloc")
    return (
        _agreement(section, "With glibc's allocator as it comes")
        + f" ({cells.p99(loop_)}; {cells.rests_on(loop_)}; {cells.load(loop_)}); {_sides(section)}."
        + (
            f" {_agreement(steady, 'With the allocator thresholds fixed in both processes')}; "
            f"{_sides(steady)}."
            if steady
            else ""
        )
        + f" {SIMULATED}."
    )
