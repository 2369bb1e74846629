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
    verdict = "met" if ratio is not None and ratio <= 1.2 else "not met"
    return cells.row_cells(
        f"{found.get('index')}: picked / sweep best **{cells.number(ratio)}** — {verdict}; "
        f"**{cells.ratio(exact.get('speedup'), exact.get('ci'))}** numpy exact",
        f"{cells.ratio(flat.get('speedup'), flat.get('ci'), bold=True)} faiss `IndexFlatIP`",
        f"recall@100 {cells.number(found.get('held_out_recall'), 3)}",
        cells.p99(exact),
        f"{_rests(exact, found, 'queries')}; {_load(data or {})}",
    )


def _plain(results: Results) -> dict[str, Any] | None:
    for key in ("plain_script", "plain_script_recsys_only"):
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
    loop, script = section.get("optimize") or {}, section.get("plain_script") or {}
    met = "met" if section.get("target_met") else "not met"
    return cells.row_cells(
        f"**{cells.ratio(loop.get('speedup'), loop.get('ci'))}** through the loop; a plain "
        f"script after `load_recipe` {cells.times(script.get('speedup'))} "
        f"({cells.percent(section.get('relative_difference'), 0)} apart: {met})",
        "—",
        "—",
        SIMULATED,
        f"{cells.rests_on(loop)}; {cells.load(loop)}",
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
