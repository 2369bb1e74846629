"""Vision: decode and frame skipping (``benchmarks/results/vision.json``).

The page's tables are ``benchmarks.vision.report``'s own (block ``vision.tables``); this
module adds the summary rows, the README cell and the scan rules' effects.

Expected keys, sections ``decode``, ``frame_skip``, ``frame_items`` (``_quick`` for smoke
runs) and ``decode_subset`` (a GPU lease): ``command``, ``machine``, ``host_load``,
``rows[].{variant, role, label_agreement | frame_agreement, mean_psnr_db, events,
events_in_time, max_latency, model_run_fraction, vs_teaching, vs_library, worst_case}``
where each ``vs_*``/``worst_case`` is a comparison row (``speedup``, ``ci``,
``inputs_timed``, ``inputs_total``, ``samples_per_side``, ``p99_speedup``/``p99_note``).
Runs from before ``compare`` hold ``speedup`` (and ``speedup_vs_batched``) per row.
"""

from __future__ import annotations

from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

DECODE = "python -m benchmarks.vision.decode"
FRAMES = "python -m benchmarks.vision.frame_skip"


@block("vision.tables", "vision")
def tables(results: Results) -> str:
    """docs/benchmarks/vision.md's tables, as ``benchmarks.vision.report`` renders them."""
    from benchmarks.vision.report import render

    return render(results.area("vision"))


def _section(results: Results, key: str, command: str) -> dict[str, Any] | None:
    return dict(cells.headline(results.section("vision", key), command) or {}) or None


def _row(section: dict[str, Any], *words: str, role: str | None = None) -> dict[str, Any]:
    """The first row whose variant holds every word (and has ``role``, when given)."""
    for row in section.get("rows") or []:
        name = str(row.get("variant", ""))
        if all(w in name for w in words) and (role is None or row.get("role") == role):
            return row
    return {}


def _figure(
    section: dict[str, Any], row: dict[str, Any], quality: str, where: str = ""
) -> list[str]:
    """The five summary cells of one row: new runs carry comparison rows, older runs a
    bare ratio (their interval, coverage and trade-offs are pending)."""
    vs = row.get("vs_teaching")
    if vs:
        library = row.get("vs_library") or {}
        worst = row.get("worst_case") or {}
        return [
            f"**{cells.ratio(vs.get('speedup'), vs.get('ci'))}** `{row.get('variant')}`{where}",
            cells.ratio(library.get("speedup"), library.get("ci"), bold=True),
            quality,
            f"{cells.p99(vs)}; worst case {cells.ratio(worst.get('speedup'), worst.get('ci'))}",
            f"{cells.rests_on(vs)}; {cells.load(section)}",
        ]
    library = row.get("speedup_vs_batched")
    return [
        f"**{cells.times(row.get('speedup'))}** `{row.get('variant')}`{where} (a run before "
        "coverage and intervals were recorded)",
        f"{cells.times(library)} (no interval)" if library else cells.PENDING,
        quality,
        f"P99 and worst case: {cells.PENDING}",
        f"inputs and samples: {cells.PENDING}; {cells.load(section)}",
    ]


def _decode_row(section: dict[str, Any]) -> dict[str, Any]:
    return _row(section, "OpenCV reduced decode", role="pipetune") or _row(
        section, "opencv reduced (IMREAD"
    )


def _frame_row(section: dict[str, Any]) -> dict[str, Any]:
    return _row(section, "vision.motion_gate")


def _decode_quality(row: dict[str, Any]) -> str:
    return (
        f"{cells.percent(row.get('label_agreement'), 0)} labels, "
        f"{cells.number(row.get('mean_psnr_db'), 0)} dB PSNR"
    )


def _frame_quality(row: dict[str, Any]) -> str:
    return (
        f"{cells.percent(row.get('frame_agreement'))} per frame, "
        f"{row.get('events_in_time')}/{row.get('events')} events within "
        f"{row.get('max_latency')} frames; the model on "
        f"{cells.percent(row.get('model_run_fraction'))} of frames"
    )


def _pending(results: Results, key: str, command: str) -> str:
    """The summary cells of a section with no headline run (a smoke run at most)."""
    missing = cells.missing(results.section("vision", f"{key}_quick"), command)
    return cells.row_cells(missing, missing, "—", "—", missing)


@block("vision.summary.decode", "vision")
def decode_summary(results: Results) -> str:
    section = _section(results, "decode", DECODE)
    row = _decode_row(section or {})
    if not section or not row:
        return _pending(results, "decode", DECODE)
    return cells.row_cells(*_figure(section, row, _decode_quality(row)))


def _frames(results: Results, key: str) -> str:
    """The motion gate's summary cells from section ``key`` (clips or frames as items)."""
    section = _section(results, key, FRAMES)
    row = _frame_row(section or {})
    if not section or not row:
        return _pending(results, key, FRAMES)
    return cells.row_cells(*_figure(section, row, _frame_quality(row)))


@block("vision.summary.frames", "vision")
def frames_summary(results: Results) -> str:
    return _frames(results, "frame_skip")


@block("vision.summary.plain_decode", "vision")
def plain_decode_summary(results: Results) -> str:
    """A plain Pillow stage (#20): the gain the proposal shows, measured on the workload's
    own JPEGs, and the stage with it applied against the stage as written."""
    section = _section(results, "decode", DECODE)
    row = _row(section or {}, "plain Pillow stage", "applied by pipetune")
    shown = ((section or {}).get("plain_stage") or {}).get("pil") or {}
    written = row.get("vs_written")
    if not section or not shown or not written:  # no run that compares it with as written
        return _pending(results, "decode", DECODE)
    measured = shown.get("measured") or {}
    gain = measured.get("speedup")
    applied = cells.ratio(written.get("speedup"), written.get("ci"), bold=True)
    closure = ((section.get("plain_stage") or {}).get("pil_closure")) or {}
    out_of_reach = (
        f"; decoder out of reach: shown as a one-line edit "
        f"({cells.times((closure.get('measured') or {}).get('speedup'))} measured)"
        if closure
        else ""
    )
    met = "met" if gain and gain >= 3 and shown.get("applicable") else "not met"
    library = row.get("vs_library") or {}
    worst = row.get("worst_case") or {}
    written_worst = _row(section, "plain Pillow stage as written").get("worst_case") or {}
    return cells.row_cells(
        f"shows **{cells.times(gain)}** measured on {measured.get('images')} of the workload's "
        f"JPEGs ({measured.get('samples_per_side')} samples a side) and applies it: {applied} "
        f"the stage as written{out_of_reach} — {met}",
        cells.ratio(library.get("speedup"), library.get("ci"), bold=True),
        _decode_quality(row),
        f"{cells.p99(written)}; worst case (images too small to "
        f"decode reduced) {cells.ratio(worst.get('speedup'), worst.get('ci'))} the teaching "
        f"baseline (the stage as written: {cells.ratio(written_worst.get('speedup'))})",
        f"{cells.rests_on(written)}; {cells.load(section)}",
    )


@block("vision.summary.frame_items", "vision")
def frame_items_summary(results: Results) -> str:
    """Frames fed as items (#20): the motion gate the plugin detects and applies."""
    return _frames(results, "frame_items")


def _gpu(results: Results) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    for key in ("decode_gpu", "decode_subset", "decode"):
        section = _section(results, key, DECODE)
        if not section or not (section.get("machine") or {}).get("gpu"):
            continue
        for row in section.get("rows") or []:
            measured = row.get("speedup") or row.get("vs_teaching")
            if "nvJPEG" in str(row.get("variant")) and measured:
                return section, row
    return None, {}


@block("vision.summary.nvjpeg", "vision")
def nvjpeg_summary(results: Results) -> str:
    section, row = _gpu(results)
    if not section:
        missing = cells.pending(f"{DECODE} --only nvjpeg", "on a GPU machine")
        return cells.row_cells(missing, missing, "—", "—", missing)
    where = f" on an {(section.get('machine') or {}).get('gpu')}"
    return cells.row_cells(*_figure(section, row, _decode_quality(row), where))


@block("readme.vision", "vision")
def readme(results: Results) -> str:
    """README's plugin table: the ``vision`` row's measured figure."""
    parts = []
    section = _section(results, "decode", DECODE)
    row = _decode_row(section or {})
    parts.append(
        f"reduced decode {_short(section, row)} at {_decode_quality(row)} (CPU)"
        if row
        else f"decode: {cells.missing(results.section('vision', 'decode_quick'), DECODE)}"
    )
    gpu, gpu_row = _gpu(results)
    if gpu:
        parts.append(f"nvJPEG {_short(gpu, gpu_row)} on an {(gpu.get('machine') or {}).get('gpu')}")
    section = _section(results, "frame_skip", FRAMES)
    row = _frame_row(section or {})
    parts.append(
        f"motion gate {_short(section, row)}, {row.get('events_in_time')}/{row.get('events')} "
        f"events within {row.get('max_latency')} frames"
        if row
        else f"frames: {cells.missing(results.section('vision', 'frame_skip_quick'), FRAMES)}"
    )
    return "; ".join(parts)


def _short(section: dict[str, Any] | None, row: dict[str, Any]) -> str:
    """A row's ratio against the teaching baseline, its library-defaults ratio and what
    it rests on, in a few words."""
    vs = row.get("vs_teaching")
    if vs:
        library = (row.get("vs_library") or {}).get("speedup")
        return (
            f"{cells.ratio(vs.get('speedup'), vs.get('ci'))} ({cells.times(library)} the library "
            f"defaults; {cells.rests_on(vs)}; {cells.load(section)})"
        )
    return (
        f"{cells.times(row.get('speedup'))} the teaching baseline (the library-defaults "
        f"ratio, inputs and samples: {cells.PENDING})"
    )


@effect("PT-VIS001", "the demo's 4000x3000 JPEGs for a 224x224 classifier", DECODE, "vision")
def vis001(results: Results) -> str:
    section = _section(results, "decode", DECODE)
    row = _decode_row(section or {})
    if not row:
        return cells.missing(results.section("vision", "decode_quick"), DECODE)
    return f"reduced decode {_short(section, row)}, {_decode_quality(row)}"


@effect("PT-VIS002", "the demo's camera clips, every frame to the model", FRAMES, "vision")
def vis002(results: Results) -> str:
    section = _section(results, "frame_skip", FRAMES)
    row = _frame_row(section or {})
    if not row:
        return cells.missing(results.section("vision", "frame_skip_quick"), FRAMES)
    return f"the motion gate {_short(section, row)}: {_frame_quality(row)}"
