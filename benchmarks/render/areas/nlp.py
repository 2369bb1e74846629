"""nlp: the headline demo, the one-document-at-a-time classifier, the tokenizer side by
side and the demo's wall time (``benchmarks/results/nlp.json``).

Expected keys, at the top of the file (``python -m benchmarks.nlp.run``): ``command``,
``machine``, ``load_average_at_start``/``load_average_at_end``, ``workload.documents``,
``truncation.{tuning_documents, chosen_max_length, curve[],
agreement_on_all_documents_at_chosen}``, ``pipelines.{harness, command, machine,
measured_at, documents, settings, rows[].{name, kind, docs_per_s, vs_baseline,
vs_library_defaults, agreement_on_sample, cache_hit_rate}}`` (``vs_*``: comparison rows
from ``benchmarks.common``, with ``rounds``; part 3 may be rerun alone with ``--parts
pipelines``, so it carries its own command and machine; results written before part 3
went through ``compare`` hold ``rows[].{speedup_vs_baseline,
speedup_vs_baseline_per_round, speedup_vs_competent}`` and render as such, labelled),
``fidelity_all_documents[name]``,
``optimize.{speedup.{throughput, throughput_ci}, trials[], requirements_met}``,
``side_by_side[teaching baseline|library defaults].{throughput_ratio, throughput_ci,
p99_ratio, coverage.{inputs_timed, inputs_total, samples_per_side, host_load}}``,
``side_by_side.agreement_with_teaching_baseline``.
Key ``one_at_a_time_classifier`` (``python -m benchmarks.nlp.classifier``): ``documents``,
``loop.{kept, speedup}``, ``agreement_with_original``, ``side_by_side.{rows[],
best_hand, best_kept, kept_best_over_hand_best}``.
Key ``tokenizer_side_by_side`` (``python -m benchmarks.nlp.tokenizer``): ``documents``,
``sections``, ``distinct_sections``, ``characters``, ``ids_identical``, ``ids_checked``,
``headline``, ``comparisons[label]`` (a comparison row from ``benchmarks.common``:
``speedup, ci, throughput_rps.{a, b}, p99_speedup, p99_note, inputs_timed, inputs_total,
samples_per_side, host_load``). Key ``demo_time`` (``python -m benchmarks.nlp.demo_time``):
``ran``, ``wall_s``, ``exit_code``, ``target_s``, ``setup_ran``, ``host_load.{
load_average_before, load_average_after, other_cpu, cores, demo_run_queue_wait,
priority}``, ``headline.{line, speedup, ci, coverage, host_load, requirements}``. A
``_quick`` key is a smoke run: never a headline.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

RUN = "python -m benchmarks.nlp.run"
PIPELINES = "python -m benchmarks.nlp.run --parts pipelines"
CLASSIFIER = "python -m benchmarks.nlp.classifier"
TOKENIZER = "python -m benchmarks.nlp.tokenizer"
DEMO_TIME = "python -m benchmarks.nlp.demo_time"
#: Keys the other scripts write beside ``benchmarks.nlp.run``'s top level.
OTHER_KEYS = (
    "one_at_a_time_classifier",
    "tokenizer_side_by_side",
    "tokenizer_side_by_side_quick",
    "demo_time",
    "demo_time_quick",
)
TOKENIZER_TARGET = 10.0


def _top(results: Results) -> dict[str, Any]:
    return {k: v for k, v in results.area("nlp").items() if k not in OTHER_KEYS}


def _run(results: Results) -> dict[str, Any] | None:
    return dict(cells.headline(_top(results), RUN) or {}) or None


def _missing(results: Results) -> str:
    return cells.missing(_top(results) or None, RUN)


def _own(results: Results, key: str, command: str) -> tuple[dict[str, Any] | None, str]:
    """The section another script writes under ``key``, or ``None`` and the cell saying
    it is pending (a smoke run's ``_quick`` key is never a headline)."""
    area = results.area("nlp")
    found = area.get(key)
    section = cells.headline(found, command)
    if section:
        return dict(section), ""
    return None, cells.missing(found or area.get(f"{key}_quick"), command)


def _side(section: dict[str, Any], name: str) -> dict[str, Any] | None:
    """One of part 5's comparisons as a row the cells read."""
    found = (section.get("side_by_side") or {}).get(name)
    if not found:
        return None
    coverage = found.get("coverage") or {}
    samples = coverage.get("samples_per_side")
    shown = samples is not None and samples >= 100
    return {
        "speedup": found.get("throughput_ratio"),
        "ci": found.get("throughput_ci"),
        "inputs_timed": coverage.get("inputs_timed"),
        "inputs_total": coverage.get("inputs_total"),
        "samples_per_side": samples,
        "host_load": coverage.get("host_load"),
        "p99_speedup": found.get("p99_ratio") if shown else None,
        "p99_note": None if shown else f"n/a ({samples} samples)",
    }


def _agreement(section: dict[str, Any], name: str) -> dict[str, Any]:
    found = (section.get("side_by_side") or {}).get("agreement_with_teaching_baseline") or {}
    return found.get(name) or {}


def _pipeline_row(section: dict[str, Any], start: str) -> dict[str, Any] | None:
    rows = (section.get("pipelines") or {}).get("rows") or []
    return next((r for r in rows if str(r.get("name", "")).startswith(start)), None)


def _pipes(results: Results) -> tuple[dict[str, Any] | None, str]:
    """Part 3's section, or ``None`` and the cell saying it is pending. Part 3 through
    ``compare`` carries its own command (it may run alone); an older one the file's."""
    top = _top(results)
    pipes = top.get("pipelines")
    if not pipes:
        return None, _missing(results)
    if "command" in pipes:
        found = cells.headline(pipes, PIPELINES)
        return (dict(found), "") if found else (None, cells.missing(pipes, PIPELINES))
    return (dict(pipes), "") if _run(results) else (None, _missing(results))


def _through_compare(pipes: dict[str, Any]) -> bool:
    return pipes.get("harness") == "pipetune.core.measure.comparison.compare"


def _hand_timed(pipes: dict[str, Any]) -> str:
    """What an older part 3 (before it went through ``compare``) rests on, labelled."""
    return (
        f"hand-timed on the first {cells.number(pipes.get('documents'))} documents × "
        f"{cells.number(pipes.get('rounds'))} interleaved rounds before part 3 went through "
        f"`compare` (no interval); {cells.pending(PIPELINES)}"
    )


def _compared(row: dict[str, Any] | None, what: str = "documents") -> str:
    """``timed on 12 of 310 documents, 24 samples per side, 4 rounds``."""
    if not row:
        return "–"
    rounds = row.get("rounds")
    extra = f", {cells.number(rounds)} rounds" if rounds is not None else ""
    return cells.rests_on(row, what=what) + extra


def _vs_baseline(row: dict[str, Any]) -> tuple[Any, Any]:
    """A part-3 row's speedup over the baseline and its interval, in either shape."""
    found = row.get("vs_baseline")
    if isinstance(found, dict):
        return found.get("speedup"), found.get("ci")
    return row.get("speedup_vs_baseline"), None


def _tokenizer_rows(section: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str]:
    """The headline comparison (one document a call), the other one, and its label."""
    comparisons: dict[str, Any] = section.get("comparisons") or {}
    label = section.get("headline") or "one document a call"
    others = [(k, v) for k, v in comparisons.items() if k != label]
    other_label, other = others[0] if others else ("", {})
    return comparisons.get(label) or {}, other or {}, other_label


@block("nlp.tokenizer", "nlp")
def tokenizer(results: Results) -> str:
    section, missing = _own(results, "tokenizer_side_by_side", TOKENIZER)
    if not section:
        return missing
    rows = []
    for label, row in (section.get("comparisons") or {}).items():
        rps = row.get("throughput_rps") or {}
        rows.append(
            [
                label,
                cells.number(rps.get("a"), 0),
                cells.number(rps.get("b"), 0),
                cells.ratio(row.get("speedup"), row.get("ci"), bold=True),
                cells.p99(row),
                cells.rests_on(row, what="documents"),
                cells.load(row),
            ]
        )
    header = ["tokenize stage", "python docs/s", "rust docs/s", "rust over python",
              "P99 change", "rests on", "host load"]  # fmt: skip
    checked = section.get("ids_checked") or {}
    return "\n".join(
        [
            cells.table(header, rows, "lrrrrll"),
            "",
            f"Every document's sections: {cells.number(section.get('documents'))} documents, "
            f"{cells.number(section.get('sections'))} sections "
            f"({cells.number(section.get('distinct_sections'))} distinct, "
            f"{cells.number(section.get('characters'))} characters). Ids identical on "
            f"{cells.number(checked.get('documents'))} documents, one a call and batched: "
            f"{section.get('ids_identical')}. The Rust tokenizer is also the library default "
            "(`AutoTokenizer` returns it), so there is no separate library-defaults ratio. "
            + cells.conditions(section, TOKENIZER),
        ]
    )


@block("nlp.truncation", "nlp")
def truncation(results: Results) -> str:
    section = _run(results)
    trunc = (section or {}).get("truncation")
    if not trunc:
        return _missing(results)
    rows = []
    for point in trunc.get("curve") or []:
        low, high = point.get("ci") or (None, None)
        chosen = point.get("max_length") == trunc.get("chosen_max_length")
        length = f"**{point.get('max_length')}**" if chosen else str(point.get("max_length"))
        rows.append(
            [
                length,
                str(point.get("split")),
                cells.percent(point.get("agreement")),
                f"{cells.percent(low)}–{cells.percent(high)}",
                cells.number(point.get("n")),
            ]
        )
    everywhere = trunc.get("agreement_on_all_documents_at_chosen") or {}
    return "\n".join(
        [
            cells.table(["max length", "split", "label agreement", "95 % CI", "documents"],
                        rows, "llrrr"),
            "",
            f"Chosen: **{trunc.get('chosen_max_length')}**, searched on "
            f"{cells.number(trunc.get('tuning_documents'))} tuning documents; at the chosen "
            f"length {cells.percent(everywhere.get('agreement'))} of all "
            f"{cells.number(everywhere.get('n'))} documents keep their label "
            f"(95 % CI {cells.percent((everywhere.get('ci95') or [None])[0])}–"
            f"{cells.percent((everywhere.get('ci95') or [None, None])[-1])}).",
        ]
    )  # fmt: skip


@block("nlp.pipelines", "nlp")
def pipelines(results: Results) -> str:
    pipes, missing = _pipes(results)
    if not pipes:
        return missing
    fidelity = _top(results).get("fidelity_all_documents") or {}
    if not _through_compare(pipes):
        return _pipelines_hand_timed(pipes, fidelity, _run(results) or {})
    rows, against_library = [], []
    for row in pipes.get("rows") or []:
        name = str(row.get("name"))
        agree = fidelity.get(name) or row.get("agreement_on_sample") or {}
        base, library = row.get("vs_baseline"), row.get("vs_library_defaults")
        hits = row.get("cache_hit_rate")
        rows.append(
            [
                name,
                cells.number(row.get("docs_per_s")),
                cells.ratio(base.get("speedup"), base.get("ci")) if base else "1 (the reference)",
                cells.ratio(library.get("speedup"), library.get("ci")) if library else "–",
                f"{cells.percent(agree.get('agreement'))} ({cells.number(agree.get('n'))})"
                if agree
                else "–",
                cells.percent(hits, 0) if hits is not None else "–",
                _compared(base or library),
                cells.load(base or library),
            ]
        )
        if library and base:
            against_library.append(f"{name}: {_compared(library)}; {cells.load(library)}")
    header = ["pipeline", "docs/s", "vs baseline [95 % interval]",
              "vs library defaults [95 % interval]", "label agreement (documents)",
              "cache hits", "rests on", "host load"]  # fmt: skip
    return "\n".join(
        [
            cells.table(header, rows, "lrrrrrll"),
            "",
            "Each variant against the baseline through `compare` (paired ABBA rounds on "
            f"documents spread over all {cells.number(pipes.get('documents'))}; the batched "
            "sides serve 32 documents a call, so their passes hold two batches; the section "
            "cache is emptied before every timed pass); the baseline's docs/s is the median "
            "of its sides, its ratio to the library defaults that comparison read the other "
            "way. Label agreement on every document for the composed and library-defaults "
            "pipelines, on the documents timed for the single changes. Against the library "
            "defaults: "
            + ("; ".join(against_library) or "–")
            + ". "
            + cells.conditions(pipes, PIPELINES),
        ]
    )


def _pipelines_hand_timed(
    pipes: dict[str, Any], fidelity: dict[str, Any], section: dict[str, Any]
) -> str:
    """Part 3 as results written before it went through ``compare`` hold it."""
    rows = []
    for row in pipes.get("rows") or []:
        agree = fidelity.get(row.get("name")) or row.get("agreement_on_sample") or {}
        per_round = ", ".join(
            cells.number(v) for v in row.get("speedup_vs_baseline_per_round") or []
        )
        hits = row.get("cache_hit_rate")
        rows.append(
            [
                str(row.get("name")),
                cells.number(row.get("docs_per_s")),
                f"{cells.times(row.get('speedup_vs_baseline'))} ({per_round})",
                cells.times(row.get("speedup_vs_competent")),
                f"{cells.percent(agree.get('agreement'))} ({cells.number(agree.get('n'))})",
                cells.percent(hits, 0) if hits is not None else "—",
            ]
        )
    header = ["pipeline", "docs/s", "vs baseline (per round)", "vs library defaults",
              "label agreement (documents)", "cache hits"]  # fmt: skip
    return (
        f"{cells.table(header, rows, 'lrrrrr')}\n\nRests on: {_hand_timed(pipes)}. "
        + cells.conditions(section, RUN)
    )


@block("nlp.optimize", "nlp")
def optimize(results: Results) -> str:
    section = _run(results)
    loop = (section or {}).get("optimize")
    if not loop:
        return _missing(results)
    rows = [
        [
            f"`{t.get('proposal')}` @ {t.get('stage')}",
            cells.ratio(t.get("speedup"), t.get("speedup_ci")),
            cells.percent(t.get("fidelity"), 0),
            f"{t.get('status')}",
        ]
        for t in loop.get("trials") or []
    ]
    speed = loop.get("speedup") or {}
    return "\n".join(
        [
            cells.table(["trial", "measured [95 % interval]", "label agreement", "verdict"],
                        rows, "lrrl"),
            "",
            f"The kept pipeline re-measured against the original: "
            f"**{cells.ratio(speed.get('throughput'), speed.get('throughput_ci'))}** throughput "
            f"({cells.number(loop.get('baseline_throughput_rps'))} → "
            f"{cells.number(loop.get('final_throughput_rps'))} documents/s); requirements met: "
            f"{loop.get('requirements_met')}. Inputs and samples behind it: "
            f"{cells.PENDING} (recorded by part 5).",
        ]
    )  # fmt: skip


@block("nlp.side_by_side", "nlp")
def side_by_side(results: Results) -> str:
    section = _run(results)
    if not section or not section.get("side_by_side"):
        return _missing(results) if not section else cells.pending(RUN, "part 5 not yet run")
    rows = []
    for name in ("teaching baseline", "library defaults"):
        row = _side(section, name) or {}
        agree = _agreement(section, "optimized" if name == "teaching baseline" else name)
        rows.append(
            [
                f"the {name}",
                cells.ratio(row.get("speedup"), row.get("ci"), bold=True),
                cells.p99(row),
                f"{cells.percent(agree.get('agreement'))} of {cells.number(agree.get('n'))}"
                if agree
                else "–",
                cells.rests_on(row),
                cells.load(row),
            ]
        )
    header = [
        "the loop's pipeline against",
        "throughput",
        "P99 change",
        "that side's agreement with the teaching baseline",
        "rests on",
        "host load",
    ]
    return f"{cells.table(header, rows, 'lrrrll')}\n\n{cells.conditions(section, RUN)}"


def _classifier(results: Results) -> dict[str, Any] | None:
    found = results.area("nlp").get("one_at_a_time_classifier")
    return dict(cells.headline(found, CLASSIFIER) or {}) or None


@block("nlp.classifier", "nlp")
def classifier(results: Results) -> str:
    section = _classifier(results)
    if not section:
        return cells.missing(results.area("nlp").get("one_at_a_time_classifier"), CLASSIFIER)
    side = section.get("side_by_side") or {}
    rows = []
    for row in side.get("rows") or []:
        data = row.get("comparison") or {}
        rows.append(
            [
                f"{row.get('threads')} threads, hand batch {row.get('hand_batch')}",
                cells.number(row.get("hand_docs_per_s")),
                cells.number(row.get("kept_docs_per_s")),
                cells.ratio(row.get("speedup"), row.get("ci")),
                cells.rests_on(data),
                cells.load(data),
            ]
        )
    agree = (section.get("agreement_with_original") or {}).get("kept") or {}
    best = side.get("best_hand") or {}
    return "\n".join(
        [
            cells.table(["hand version", "hand docs/s", "kept docs/s", "kept over hand",
                         "rests on", "host load"], rows, "lrrrll"),
            "",
            f"Kept: {', '.join((section.get('loop') or {}).get('kept') or []) or 'nothing'}; "
            "the kept pipeline at its best "
            f"**{cells.times(side.get('kept_best_over_hand_best'))}** "
            f"the best hand version (batch {best.get('hand_batch')}, {best.get('threads')} "
            f"threads); agreement with the original {cells.percent(agree.get('agreement'))} on "
            f"{cells.number(agree.get('n'))} documents. " + cells.conditions(section, CLASSIFIER),
        ]
    )  # fmt: skip


@block("nlp.summary.demo", "nlp")
def demo_summary(results: Results) -> str:
    section = _run(results)
    if not section:
        missing = _missing(results)
        return cells.row_cells(missing, missing, "—", "—", missing)
    teaching, library = _side(section, "teaching baseline"), _side(section, "library defaults")
    if teaching:
        agree = _agreement(section, "optimized")
        lib_agree = _agreement(section, "library defaults")
        return cells.row_cells(
            f"{cells.ratio(teaching['speedup'], teaching['ci'], bold=True)} the teaching "
            "baseline, side by side through `compare`",
            cells.ratio((library or {}).get("speedup"), (library or {}).get("ci"), bold=True),
            f"{cells.percent(agree.get('agreement'))} label agreement on "
            f"{cells.number(agree.get('n'))} documents",
            f"{cells.p99(teaching)}; the library-defaults baseline truncates at 256 tokens "
            f"({cells.percent(lib_agree.get('agreement'))} agreement)",
            f"{cells.rests_on(teaching)}; {cells.load(teaching)}",
        )
    loop = section.get("optimize") or {}
    speed = loop.get("speedup") or {}
    kept = ", ".join(
        f"{t.get('proposal')} {cells.times(t.get('speedup'))}"
        for t in loop.get("trials") or []
        if t.get("status") == "accepted"
    )
    composed, composed_ci = _vs_baseline(
        _pipeline_row(section, "nlp + batching + section cache") or {}
    )
    return cells.row_cells(
        f"{cells.ratio(speed.get('throughput'), speed.get('throughput_ci'), bold=True)} through "
        f"the loop ({kept}); the composed nlp + generic changes "
        f"{cells.ratio(composed, composed_ci, 1)}",
        cells.pending(RUN, "part 5: the library-defaults baseline through compare"),
        "100 % label agreement"
        if all(
            (v or {}).get("agreement") == 1.0
            for v in (section.get("fidelity_all_documents") or {}).values()
        )
        else "see the page",
        f"P99: {cells.PENDING}",
        f"inputs and samples: {cells.PENDING}; {cells.load(section)}",
    )


@block("nlp.summary.classifier", "nlp")
def classifier_summary(results: Results) -> str:
    section = _classifier(results)
    if not section:
        missing = cells.missing(results.area("nlp").get("one_at_a_time_classifier"), CLASSIFIER)
        return cells.row_cells(missing, missing, "—", "—", missing)
    side = section.get("side_by_side") or {}
    agree = (section.get("agreement_with_original") or {}).get("kept") or {}
    first = ((side.get("rows") or [{}])[0]).get("comparison") or {}
    return cells.row_cells(
        f"**{cells.times(side.get('kept_best_over_hand_best'))}** the best hand version",
        "the hand versions are the library-defaults baselines",
        f"{cells.percent(agree.get('agreement'))} on {cells.number(agree.get('n'))} documents",
        "best over best divides two throughputs from separate comparisons",
        f"{cells.rests_on(first)}; {cells.load(first)}",
    )


@block("nlp.summary.tokenizer", "nlp")
def tokenizer_summary(results: Results) -> str:
    section, missing = _own(results, "tokenizer_side_by_side", TOKENIZER)
    if not section:
        return cells.row_cells(missing, "—", "—", "—", missing)
    head, other, label = _tokenizer_rows(section)
    target = "met" if (head.get("speedup") or 0) >= TOKENIZER_TARGET else "not met"
    checked = section.get("ids_checked") or {}
    batched = (
        f"{label}: {cells.ratio(other.get('speedup'), other.get('ci'))} (`encode_batch` over "
        "a call's sections spreads over every core; the pure-Python one uses one); "
        if other
        else ""
    )
    return cells.row_cells(
        f"{cells.ratio(head.get('speedup'), head.get('ci'), bold=True)} one document a call, "
        f"side by side through `compare` — {target}",
        "— (the Rust tokenizer is the library default: `AutoTokenizer` returns it)",
        f"ids identical on {cells.number(checked.get('documents'))} documents "
        f"({cells.number(checked.get('sections'))} sections)"
        if section.get("ids_identical")
        else "ids differ",
        f"{batched}{cells.p99(head)}",
        f"{cells.rests_on(head, what='documents')} "
        f"({cells.number(section.get('sections'))} sections); {cells.load(head)}",
    )


@block("nlp.summary.truncation", "nlp")
def truncation_summary(results: Results) -> str:
    section = _run(results)
    trunc = (section or {}).get("truncation")
    if not trunc:
        missing = _missing(results)
        return cells.row_cells(missing, "—", "—", "—", missing)
    everywhere = trunc.get("agreement_on_all_documents_at_chosen") or {}
    return cells.row_cells(
        f"**{trunc.get('chosen_max_length')}**",
        "—",
        f"{cells.percent(everywhere.get('agreement'))} on all {cells.number(everywhere.get('n'))}"
        " documents",
        "—",
        f"searched on {cells.number(trunc.get('tuning_documents'))} tuning documents",
    )


@block("nlp.summary.demo_time", "nlp")
def demo_time_summary(results: Results) -> str:
    section, missing = _own(results, "demo_time", DEMO_TIME)
    if not section:
        return cells.row_cells(missing, "—", "—", "—", missing)
    wall, target = section.get("wall_s"), section.get("target_s") or 300.0
    met = (
        "met"
        if wall is not None and wall < target and section.get("exit_code") in (0, 3)
        else "not met"
    )
    headline = section.get("headline") or {}
    speed = (
        f"its headline {cells.ratio(headline.get('speedup'), headline.get('ci'))} throughput "
        f"({headline.get('coverage') or 'coverage not printed'})"
        if headline.get("speedup") is not None
        else "its headline not found in what it printed"
    )
    return cells.row_cells(
        f"**{_minutes(wall)}** for `{section.get('ran') or 'pipetune demo'}` "
        f"(exit {section.get('exit_code')}) — {met}",
        "—",
        str(headline.get("requirements") or "—"),
        f"{speed}; the demo's one-off set-up (head, baseline outputs) "
        + ("ran in this run" if section.get("setup_ran") else "was cached"),
        f"one run; {_demo_load(section)}",
    )


def _minutes(seconds: Any) -> str:
    """``4.2 min (252 s)``."""
    if seconds is None:
        return "–"
    return f"{seconds / 60:.1f} min ({cells.number(seconds, 0)} s)"


def _demo_load(section: dict[str, Any]) -> str:
    """The host's load around the demo's subprocess, as the benchmark recorded it."""
    load = section.get("host_load") or {}
    parts = []
    before, after = load.get("load_average_before"), load.get("load_average_after")
    if before is not None:
        parts.append(f"load average {cells.number(before, 1)}→{cells.number(after, 1)}")
    if load.get("other_cpu") is not None:
        parts.append(f"other processes {load['other_cpu']:.1f} of {load.get('cores')} cores")
    wait = load.get("demo_run_queue_wait")
    parts.append(
        f"the demo's run-queue wait {cells.percent(wait, 0)} (its threads sampled)"
        if wait is not None
        else "the demo's run-queue wait not recorded"
    )
    priority = load.get("priority")
    if priority and priority != "normal":
        parts.append(f"run at {priority} priority")
    text = ", ".join(parts)
    return f"busy host ({text}): noisy" if wait is not None and wait > cells.BUSY_WAIT else text


@block("readme.nlp", "nlp")
def readme(results: Results) -> str:
    """README's plugin table: the ``nlp`` row's measured figure."""
    section = _run(results)
    if not section:
        return _missing(results)
    teaching, library = _side(section, "teaching baseline"), _side(section, "library defaults")
    if teaching:
        return (
            f"`pipetune demo`: {cells.ratio(teaching['speedup'], teaching['ci'])} the teaching "
            f"baseline ({cells.times((library or {}).get('speedup'))} the library defaults), "
            f"{cells.p99(teaching)}; {cells.rests_on(teaching)}; {cells.load(teaching)}"
        )
    speed = (section.get("optimize") or {}).get("speedup") or {}
    return (
        f"`pipetune demo`: {cells.ratio(speed.get('throughput'), speed.get('throughput_ci'))} "
        "through the loop, 100 % label agreement; the library-defaults ratio, inputs and "
        f"samples: {cells.pending(RUN)}"
    )


def _alone(results: Results, start: str, what: str) -> str:
    pipes, missing = _pipes(results)
    row = next(
        (r for r in (pipes or {}).get("rows") or [] if str(r.get("name", "")).startswith(start)),
        None,
    )
    if not pipes or not row:
        return missing or _missing(results)
    agree = row.get("agreement_on_sample") or {}
    speedup, ci = _vs_baseline(row)
    figure = (
        f"{what} {cells.ratio(speedup, ci, bold=True)} end to end, "
        f"{cells.percent(agree.get('agreement'), 0)} label agreement "
        f"({cells.number(agree.get('n'))} documents)"
    )
    if not _through_compare(pipes):
        return f"{figure}; {_hand_timed(pipes)}; {cells.load(_run(results))}"
    base = row.get("vs_baseline")
    return f"{figure}, through `compare`; {_compared(base)}; {cells.load(base)}"


@effect(
    "PT-NLP001",
    "the nlp demo's tokenize stage, pure-Python tokenizer against the Rust one",
    TOKENIZER,
    "nlp",
)
def nlp001(results: Results) -> str:
    section, missing = _own(results, "tokenizer_side_by_side", TOKENIZER)
    if not section:
        return missing
    head, other, label = _tokenizer_rows(section)
    batched = f", {cells.ratio(other.get('speedup'), other.get('ci'))} {label}" if other else ""
    return (
        f"the Rust tokenizer {cells.ratio(head.get('speedup'), head.get('ci'), bold=True)} "
        f"the pure-Python one, one document a call{batched}, ids identical; "
        f"{cells.rests_on(head, what='documents')}; {cells.load(head)}"
    )


@effect("PT-NLP002", "the nlp demo, sections padded to 512", PIPELINES, "nlp")
def nlp002(results: Results) -> str:
    return _alone(results, "dynamic padding alone", "dynamic padding alone")


@effect("PT-NLP004", "the nlp demo, `no_grad`", PIPELINES, "nlp")
def nlp004(results: Results) -> str:
    return _alone(results, "inference_mode alone", "`inference_mode` instead of `no_grad` alone")
