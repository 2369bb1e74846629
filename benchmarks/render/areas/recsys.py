"""recsys: ANN against exact top-k, and the two-stage demo
(``benchmarks/results/recsys.json``).

Expected keys (``python -m benchmarks.recsys.run``): ``conditions.{command, mode, timing,
host_load.{before, after}}``; ``headline.two_stage.{after, vs_full_ranking,
vs_library_baseline, top50_kept}`` and ``headline.{ann, isotropic, skewed}.{index,
vs_numpy_exact, vs_faiss_flat, held_out_recall, picked_time_over_sweep_best}``, each
``vs_*`` a figure with ``speedup``, ``ci``, ``p99_speedup``, ``inputs_timed``,
``inputs_total``, ``samples_per_side``. The detailed sections behind the page's tables:
``ann``/``isotropic``/``skewed``.{catalog, tune_queries, held_out_queries,
plugin.{index_rule, hnsw_build_s_est, params, build, candidates}, baselines.{numpy_exact,
faiss_flat}.{threads, ms_by_threads}, sweep.{points, best_at_target}, picked.{index,
held_out_recall, held_out_recall_ci, held_out_ndcg}, picked_time_over_sweep_best(_ci),
compared.{picked_vs_numpy_exact, picked_vs_faiss_flat, picked_vs_sweep_best,
faiss_flat_vs_numpy_exact}, batches}``; ``two_stage``.{agreement, tune_requests,
held_out_requests, tuning, library_baseline, held_out[change].{vs_full_ranking,
top50_kept, top50_kept_ci, ndcg_at_50, min_request_kept}}``; ``targets``. Every
``compared``/``vs_full_ranking``/``batches`` row is a ``compare`` figure: ``speedup``,
``ci``, ``p99_speedup``, ``a_ms_per_input``, ``b_ms_per_input``, ``b_p99_ms``, coverage
and ``host_load``. ``plain_script*`` (``python -m benchmarks.recsys.plain_script``):
``optimize.{speedup, ci, inputs_timed, inputs_total, samples_per_side, host_load}``,
``plain_script``, ``relative_difference``, ``target_met``. A ``--quick`` run
(``conditions.mode`` quick) is pending.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

RUN = "python -m benchmarks.recsys.run"
PLAIN = "python -m benchmarks.recsys.plain_script"
SIMULATED = "the feature store is simulated (`time.sleep` per read)"
#: The parameter each index kind searches with (``pipetune.plugins.recsys.ann``).
RUNTIME_PARAM = {"hnsw": "efSearch", "ivf_flat": "nprobe", "ivf_pq": "nprobe"}

#: The two-stage changes in the order the plugin applies them, and their labels.
TWO_STAGE = (
    ("recsys.ann_two_stage", "**+ two-stage**"),
    ("recsys.batched_feature_reads", "+ batched feature reads"),
    ("recsys.user_embedding_cache", "+ user-embedding cache"),
)
ALONE = TWO_STAGE[0][0]


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


def _ann(data: dict[str, Any], name: str) -> dict[str, Any]:
    """One catalog's headline ANN figures (``headline.<name>``)."""
    return dict((data.get("headline") or {}).get(name) or {})


def _two_stage(data: dict[str, Any]) -> dict[str, Any]:
    """The two-stage demo's headline figures (``headline.two_stage``)."""
    return dict((data.get("headline") or {}).get("two_stage") or {})


def _compared(data: dict[str, Any], name: str, key: str) -> dict[str, Any]:
    """One ``compare`` row of a retrieval section (``<name>.compared.<key>``)."""
    return dict(((data.get(name) or {}).get("compared") or {}).get(key) or {})


def _held_out(data: dict[str, Any]) -> dict[str, Any]:
    """The two-stage demo's held-out rows, one per change (``two_stage.held_out``)."""
    return dict((data.get("two_stage") or {}).get("held_out") or {})


def _over_best(data: dict[str, Any], name: str, found: dict[str, Any], bold: bool = False) -> str:
    """The pick's time over the sweep's best, with its interval: ``1.14 [1.13, 1.15]``."""
    value = found.get("picked_time_over_sweep_best")
    text = cells.number(value)
    bounds = cells.interval((data.get(name) or {}).get("picked_time_over_sweep_best_ci"))
    text = f"**{text}**" if bold else text
    return f"{text} {bounds}" if bounds and value is not None else text


def _row_load(row: dict[str, Any], fallback: dict[str, Any]) -> str:
    """The host load while one comparison ran, or the whole run's where it has none."""
    return cells.load(row) if row.get("host_load") else cells.load(fallback)


def _ann_load(data: dict[str, Any], name: str, key: str = "picked_vs_numpy_exact") -> str:
    section = data.get(name) or {}
    # A section run alone (--only skewed) keeps its own conditions: command and load.
    conditions = section.get("conditions") or data.get("conditions") or {}
    return _row_load(_compared(data, name, key), conditions)


def _two_stage_load(data: dict[str, Any], after: Any) -> str:
    row = (_held_out(data).get(str(after)) or {}).get("vs_full_ranking") or {}
    return _row_load(row, data.get("conditions") or {})


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
    first = (_held_out(data or {}).get(ALONE) or {}).get("vs_full_ranking") or {}
    alone = (
        f"; the two-stage change alone {cells.times(first.get('speedup'))}"
        if first and found.get("after") != ALONE
        else ""
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
        f"{cells.rests_on(full, what='requests')}; "
        f"{_two_stage_load(data or {}, found.get('after'))}",
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
        f"{found.get('index')}; picked / sweep best {_over_best(data or {}, 'ann', found)}",
        f"{cells.ratio(flat.get('speedup'), flat.get('ci'), bold=True)} faiss `IndexFlatIP`",
        f"recall@100 {cells.number(found.get('held_out_recall'), 3)}",
        f"{cells.p99(exact)}; worst case (isotropic): "
        f"{cells.times((worst.get('vs_numpy_exact') or {}).get('speedup'))} numpy exact{skew}",
        f"{cells.rests_on(exact, what='queries')}; {_ann_load(data or {}, 'ann')}",
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
    if ratio is None or ratio > 1.2:
        verdict = "not met"
    elif recall is None or recall < target:
        verdict = f"not met: held-out recall@100 {cells.number(recall, 4)} < {target:g}"
    else:
        verdict = "met"
    return cells.row_cells(
        f"{found.get('index')}: picked / sweep best {_over_best(data or {}, 'skewed', found, True)}"
        f" — {verdict}; "
        f"**{cells.ratio(exact.get('speedup'), exact.get('ci'))}** numpy exact",
        f"{cells.ratio(flat.get('speedup'), flat.get('ci'), bold=True)} faiss `IndexFlatIP`",
        f"recall@100 {cells.number(found.get('held_out_recall'), 3)}",
        cells.p99(exact),
        f"{cells.rests_on(exact, what='queries')}; {_ann_load(data or {}, 'skewed')}",
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
        f"{SIMULATED}; {cells.rests_on(full, what='requests')}; "
        f"{_two_stage_load(data or {}, two.get('after'))}"
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
        f"{cells.rests_on(exact, what='queries')}; {_ann_load(data or {}, 'ann')}"
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
        f"{cells.rests_on(flat, what='queries')}; "
        f"{_ann_load(data or {}, 'ann', 'picked_vs_faiss_flat')}"
    )


# The page's tables (docs/benchmarks/recsys.md), from the run's detailed sections (see the
# module docstring): every timed figure is a ``compare`` row, shown with its interval, the
# inputs and samples it rests on and the host load while it ran.


def _ms(value: Any) -> str:
    """Milliseconds: three decimals under 1 ms, two above."""
    if value is None:
        return "–"
    return cells.number(value, 3 if value < 1 else 2)


def _side_by_side(row: dict[str, Any], digits: int = 2, bold: bool = False) -> str:
    """``**39.26x** [36.07, 42.79]; P99 32.06x lower``: a compare row's ratio."""
    return f"{cells.ratio(row.get('speedup'), row.get('ci'), digits, bold)}; {cells.p99(row)}"


def _figure(
    row: dict[str, Any], against: str, digits: int = 2, bold: bool = False, what: str = "requests"
) -> str:
    """``17.7x [16.4, 18.8] the full ranking (P99 18.21x lower; 60 of 60 requests, ...)``:
    a compare row in a sentence."""
    ratio = cells.ratio(row.get("speedup"), row.get("ci"), digits, bold)
    return f"{ratio} {against} ({cells.p99(row)}; {_timed_on(row, what)})"


def _timed_on(row: dict[str, Any], what: str) -> str:
    """``300 of 300 queries, 720 samples per side; run-queue wait 1 %, ...``."""
    return f"{cells.rests_on(row, what=what).removeprefix('timed on ')}; {cells.load(row)}"


def _waits(rows: Sequence[dict[str, Any]]) -> str:
    """The run-queue wait across comparisons: ``run-queue wait 0 %–2 %``, flagged when the
    busiest was noisy."""
    loads = [row.get("host_load") or {} for row in rows]
    waits = [load["run_queue_wait"] for load in loads if load.get("run_queue_wait") is not None]
    if not waits:
        return "run-queue wait not recorded"
    low, high = cells.percent(min(waits), 0), cells.percent(max(waits), 0)
    busy = any(load.get("busy") for load in loads) or max(waits) > cells.BUSY_WAIT
    text = f"run-queue wait {low}" if low == high else f"run-queue wait {low}–{high}"
    return f"{text} (the busiest noisy)" if busy else text


def _coverage(rows: Sequence[tuple[str, dict[str, Any]]], what: str) -> str:
    """What a set of comparisons rests on: one phrase when they all rest on the same,
    else one per row."""
    found = [(label, cells.rests_on(row, what=what)) for label, row in rows]
    if len({text for _, text in found}) == 1:
        return found[0][1]
    return "; ".join(f"{label}: {text}" for label, text in found)


def _run_load(data: dict[str, Any]) -> str:
    """The load averages before and after the whole run (``conditions.host_load``)."""
    host = (data.get("conditions") or {}).get("host_load") or {}
    values = [(host.get(when) or {}).get("loadavg_1m") for when in ("before", "after")]
    values = [v for v in values if v is not None]
    return "→".join(cells.number(v, 1) for v in values)


def _method(data: dict[str, Any], name: str = "") -> str:
    """How the section was measured (``conditions.timing``) and the whole run's load."""
    section = (data.get(name) or {}) if name else {}
    conditions = section.get("conditions") or data.get("conditions") or {}
    timing = conditions.get("timing") or "timing not recorded"
    load = _run_load({"conditions": conditions})
    tail = f"; load average over the run {load}" if load else ""
    return f"{timing[0].upper()}{timing[1:]}{tail}."


def _index_name(section: dict[str, Any], spec: Any) -> str:
    """``IVF2048,Flat (ip)``: how the run names the index ``spec`` (a sweep point or a
    candidate of the tune step with the same spec)."""
    plugin = section.get("plugin") or {}
    for point in (section.get("sweep") or {}).get("points") or []:
        if spec and point.get("spec") == spec and point.get("index"):
            return str(point["index"])
    spec = spec if isinstance(spec, dict) else {}
    for found in plugin.get("candidates") or []:
        if (found.get("kind"), found.get("space")) == (spec.get("kind"), spec.get("space")):
            return str(found.get("index"))
    return str(spec.get("kind") or "the index")


def _operating_point(kind: Any, runtime: Any, k_prime: Any, k: Any) -> str:
    """``nprobe 28`` (and ``k' 200`` where the exact re-rank reads deeper than k)."""
    text = f"{RUNTIME_PARAM.get(str(kind), 'runtime')} {cells.number(runtime)}"
    return f"{text}, k' {cells.number(k_prime)}" if k_prime and k and k_prime != k else text


def _threads(count: Any) -> str:
    return f"{cells.number(count)} thread{'' if count == 1 else 's'}"


def _ann_table(results: Results, name: str) -> str:
    data = _data(results)
    section = (data or {}).get(name) or {}
    if not section:
        return _missing(results)
    compared = section.get("compared") or {}
    exact, flat = compared.get("picked_vs_numpy_exact"), compared.get("picked_vs_faiss_flat")
    best_row, flat_numpy = (
        compared.get("picked_vs_sweep_best"),
        compared.get("faiss_flat_vs_numpy_exact"),
    )
    plugin, picked = section.get("plugin") or {}, section.get("picked") or {}
    spec = picked.get("index") or plugin.get("index") or {}
    params = plugin.get("params") or {}
    best = (section.get("sweep") or {}).get("best_at_target") or {}
    baselines = section.get("baselines") or {}
    k = section.get("k")
    rows = []
    pick_ms = [row.get("b_ms_per_input") for row in (exact, flat, best_row) if row]
    pick_ms = [value for value in pick_ms if value is not None]
    for label, row, recall, bold in (
        (
            "exact, numpy matmul + argpartition, BLAS on "
            + _threads((baselines.get("numpy_exact") or {}).get("threads")),
            exact,
            "1",
            True,
        ),
        (
            "exact, faiss `IndexFlatIP`, "
            + _threads((baselines.get("faiss_flat") or {}).get("threads")),
            flat,
            "1",
            False,
        ),
        (
            f"cheapest sweep point at the target: {best.get('index')}, "
            + _operating_point(
                (best.get("spec") or {}).get("kind"), best.get("runtime"), best.get("k_prime"), k
            ),
            best_row,
            cells.number(best.get("recall"), 3),
            False,
        ),
    ):
        if row:
            rows.append(
                [label, _ms(row.get("a_ms_per_input")), _side_by_side(row, bold=bold), recall,
                 _timed_on(row, "queries")]
            )  # fmt: skip
    if picked:
        rows.append(
            [
                f"**ANN picked by the plugin**: {_index_name(section, spec)}, "
                + _operating_point(
                    spec.get("kind"), params.get("runtime"), params.get("k_prime"), k
                ),
                "–".join(_ms(v) for v in sorted({min(pick_ms), max(pick_ms)})) if pick_ms else "—",
                "—",
                f"**{cells.number(picked.get('held_out_recall'), 3)}** "
                f"{cells.interval(picked.get('held_out_recall_ci'), 3)}, NDCG@100 "
                f"{cells.number(picked.get('held_out_ndcg'), 3)}",
                "—",
            ]
        )
    if not rows:
        return _missing(results)
    table = cells.table(
        ["", "ms / query", "the pick against it", "recall@100 (held out)", "timed on"],
        rows,
        "lrrrl",
    )
    catalog = " x ".join(cells.number(n) for n in section.get("catalog") or [])
    build = plugin.get("build") or {}
    sentences = [
        f"{catalog} catalog; {cells.number(section.get('tune_queries'))} queries tune the "
        f"pick, {cells.number(section.get('held_out_queries'))} more are held out. "
        "Each row is timed side by side with the plugin's pick (ms / query: the row's "
        "side in that comparison; in the pick's row, its range over those comparisons).",
    ]
    if section.get("picked_time_over_sweep_best") is not None:
        sentences.append(
            "Picked / sweep best: "
            f"{_over_best(data or {}, name, section, bold=True)} (the pick's time over the "
            "sweep's cheapest point at the target)."
        )
    if flat_numpy:
        sentences.append(
            "faiss flat (each exact search at its best thread count): "
            f"{_figure(flat_numpy, 'numpy exact', what='queries')}."
        )
    if build:
        sentences.append(
            f"The pick's index built in {cells.number(build.get('seconds'), 1)} s on "
            f"{_threads(build.get('threads'))}, "
            f"{cells.number((build.get('index_bytes') or 0) / 2**20, 0)} MiB."
        )
    candidates = [
        f"{found.get('index')} {_ms((found.get('best') or {}).get('ms'))} ms a query at "
        f"recall@100 {cells.number((found.get('best') or {}).get('recall'), 3)} (built in "
        f"{cells.number(found.get('build_s'), 1)} s, {cells.number(found.get('index_mib'), 0)} MiB)"
        for found in plugin.get("candidates") or []
    ]
    if plugin.get("index_rule") or candidates:
        rule = plugin.get("index_rule")
        sentences.append(
            (f"The profile's index rule: {rule}. " if rule else "")
            + (
                "The tune step measured, on the tuning queries (best of its interleaved "
                f"rounds, not through `compare`): {'; '.join(candidates)}."
                if candidates
                else ""
            )
        )
    sentences.append(_method(data or {}, name))
    return "\n".join([table, "", " ".join(s.strip() for s in sentences if s.strip())])


@block("recsys.ann", "recsys")
def ann(results: Results) -> str:
    """ANN against exact top-100 on the demo catalog, one query at a time."""
    return _ann_table(results, "ann")


@block("recsys.isotropic", "recsys")
def isotropic(results: Results) -> str:
    """The same on isotropic random vectors (ANN's worst case)."""
    return _ann_table(results, "isotropic")


def _sweep(section: dict[str, Any]) -> str:
    """Recall@100 by operating point, per index the sweep built."""
    groups: dict[tuple[str, Any], list[dict[str, Any]]] = {}
    for point in (section.get("sweep") or {}).get("points") or []:
        groups.setdefault((str(point.get("index")), point.get("k_prime")), []).append(point)
    k = section.get("k")
    parts = []
    for (index, k_prime), points in groups.items():
        kind = (points[0].get("spec") or {}).get("kind")
        deeper = f", k' {cells.number(k_prime)}" if k_prime and k and k_prime != k else ""
        values = ", ".join(
            f"{cells.number(p.get('runtime'))}: {cells.number(p.get('recall'), 3)}" for p in points
        )
        parts.append(
            f"{index}{deeper}, recall@100 by {RUNTIME_PARAM.get(str(kind), 'runtime')}: {values}"
        )
    return "; ".join(parts)


@block("recsys.sweep", "recsys")
def sweep(results: Results) -> str:
    """Held-out recall@100 by nprobe, on both catalogs."""
    data = _data(results)
    if not data:
        return _missing(results)
    lines = []
    for name, label in (("ann", "demo catalog"), ("isotropic", "isotropic catalog")):
        section = data.get(name) or {}
        text = _sweep(section) if section else ""
        lines.append(f"* {label}: {text or _missing(results)}.")
    return "\n".join(lines)


@block("recsys.batches", "recsys")
def batches(results: Results) -> str:
    """Per-query time by batch size, exact against the picked ANN point, both catalogs."""
    data = _data(results)
    if not data:
        return _missing(results)
    rows, compared = [], []
    for name, label in (("ann", "demo"), ("isotropic", "isotropic")):
        for row in (data.get(name) or {}).get("batches") or []:
            compared.append(row)
            rows.append(
                [
                    label,
                    cells.number(row.get("batch")),
                    _ms(row.get("exact_ms_per_query")),
                    _ms(row.get("ann_ms_per_query")),
                    cells.ratio(row.get("speedup"), row.get("ci"), 1),
                    cells.rests_on(
                        row, what="batch" if row.get("inputs_total") == 1 else "batches"
                    ).removeprefix("timed on "),
                ]
            )
    if not rows:
        return _missing(results)
    return "\n".join(
        [
            cells.table(
                ["catalog", "batch", "exact ms/q", "ANN ms/q", "speedup [95 % CI]", "timed on"],
                rows,
                "lrrrrl",
            ),
            "",
            "ms/q: each side's time a batch over the batch size, in that row's comparison "
            f"(held-out queries; {_waits(compared)}). {_method(data)}",
        ]
    )


@block("recsys.two_stage", "recsys")
def two_stage(results: Results) -> str:
    """The two-stage demo, held out, one request at a time after each change."""
    data = _data(results)
    section = (data or {}).get("two_stage") or {}
    held = section.get("held_out") or {}
    if not held:
        return _missing(results)
    rows, compared = [], []
    for key, label in TWO_STAGE:
        found = held.get(key) or {}
        row = found.get("vs_full_ranking") or {}
        if not row:
            continue
        compared.append((label.strip("*+ "), row))
        ms = row.get("b_ms_per_input")
        rows.append(
            [
                label,
                cells.number(1000 / ms if ms else None, 0),
                _ms(ms),
                _ms(row.get("b_p99_ms")),
                cells.ratio(row.get("speedup"), row.get("ci"), 1),
                f"{cells.number(found.get('top50_kept'), 3)} "
                f"{cells.interval(found.get('top50_kept_ci'), 3)}".strip(),
                cells.number(found.get("ndcg_at_50"), 3),
            ]
        )
    if not rows:
        return _missing(results)
    full_ms = [row["a_ms_per_input"] for _, row in compared if row.get("a_ms_per_input")]
    sentences = [
        "Each row is timed side by side with the full ranking ("
        + "–".join(cells.number(v, 0) for v in sorted({min(full_ms), max(full_ms)}))
        + " ms a request on its side across the rows), one request at a time (requests/s = "
        f"1,000 / ms): {_coverage(compared, 'held-out requests')}; "
        f"{_waits([r for _, r in compared])}."
        if full_ms
        else "",
    ]
    library = section.get("library_baseline") or {}
    baseline, final = library.get("vs_full_ranking"), library.get("final_vs_library_baseline")
    if baseline or final:
        sentences.append(
            "The library-defaults two-stage (exact retrieval of the same "
            f"{cells.number(library.get('n_candidates'))} candidates by faiss `IndexFlatIP` "
            f"on {_threads(library.get('threads'))}, then the same ranker)"
            + (f": {_figure(baseline, 'the full ranking', 1)}" if baseline else "")
            + (
                f"; after `{library.get('final')}` the plugin's pipeline is "
                f"{_figure(final, 'it', bold=True)}"
                if final
                else ""
            )
            + "."
        )
    alone = held.get(ALONE) or {}
    if alone.get("min_request_kept") is not None:
        sentences.append(
            f"The worst request keeps {cells.percent(alone.get('min_request_kept'), 0)} of its "
            "top 50."
        )
    tuning = (section.get("tuning") or {}).get(ALONE) or {}
    params = tuning.get("params") or {}
    if tuning:
        sentences.append(
            f"Tuned on {cells.number(section.get('tune_requests'))} requests in "
            f"{cells.number(tuning.get('tune_seconds'), 0)} s: floor N with exact retrieval "
            f"{cells.number(tuning.get('n_floor_exact_retrieval'))}; "
            f"{cells.number(params.get('n_candidates'))} candidates from {tuning.get('index')} "
            f"at {params.get('runtime_param')} {params.get('runtime')} (tuning-split share kept "
            f"{cells.number(tuning.get('tune_recall'), 3)})."
        )
    sentences += [f"{SIMULATED[0].upper()}{SIMULATED[1:]}.", _method(data or {})]
    return "\n".join(
        [
            cells.table(
                [
                    "pipeline",
                    "requests/s",
                    "ms / request",
                    "P99 ms",
                    "vs full [95 % CI]",
                    "top-50 kept [95 % CI]",
                    "NDCG@50",
                ],
                rows,
                "lrrrrrr",
            ),
            "",
            " ".join(s for s in sentences if s),
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
    ann_, held = data.get("ann") or {}, _held_out(data)
    best = met.get("two_stage: best") or {}
    after = held.get(str(best.get("after"))) or {}
    full = after.get("vs_full_ranking") or {}
    alone = (held.get(ALONE) or {}).get("vs_full_ranking") or {}
    exact = _compared(data, "ann", "picked_vs_numpy_exact")
    flat = _compared(data, "ann", "picked_vs_faiss_flat")
    plugin = ann_.get("plugin") or {}
    build = plugin.get("build") or {}

    def verdict(key: str) -> str:
        value = met.get(key)
        return cells.pending(RUN) if value is None else ("met" if value else "**not met**")

    alone_text = (
        f"; the two-stage change alone {cells.ratio(alone.get('speedup'), alone.get('ci'), 1)} "
        "end to end"
        if alone and best.get("after") != ALONE
        else ""
    )
    rows = [
        [
            "two-stage vs full ranking >= 100x requests/s at >= 95 % of the top-k",
            f"after `{best.get('after')}`: "
            f"**{cells.ratio(full.get('speedup') or best.get('speedup'), full.get('ci'), 1)}** "
            f"at {cells.number(after.get('top50_kept'), 3)}{alone_text}; {SIMULATED}",
            verdict(
                "two_stage: >= 100x the full ranking keeping >= 95 % (simulated feature store)"
            ),
        ],
        [
            "ANN vs exact, one query at a time, recall@100 >= 0.95: >= 20x numpy",
            f"**{cells.ratio(exact.get('speedup'), exact.get('ci'), 1)}** at "
            f"{cells.number((ann_.get('picked') or {}).get('held_out_recall'), 3)} "
            f"({cells.ratio(flat.get('speedup'), flat.get('ci'), 1)} faiss flat)",
            verdict("ann: >= 20x numpy exact"),
        ],
        [
            "picked point within 1.2x of the sweep's best",
            _over_best(data, "ann", ann_, bold=True),
            verdict("ann: picked within 1.2x of the sweep's best at recall@100 >= 0.95"),
        ],
        [
            "index build time and memory",
            f"{_index_name(ann_, (ann_.get('picked') or {}).get('index') or plugin.get('index'))} "
            f"{cells.number(build.get('seconds'), 1)} s on {_threads(build.get('threads'))}, "
            f"{cells.number((build.get('index_bytes') or 0) / 2**20, 0)} MiB",
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
