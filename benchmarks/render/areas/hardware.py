"""Hardware: one encoder on every backend (``benchmarks/results/hardware.json``).

Expected keys, sections ``cpu_encoder`` and ``gpu_encoder`` (``_quick`` for smoke runs):
``command``, ``machine``/``machine_rows``, ``libraries``, ``threads``, ``host_load`` (or
``conditions``/``load_average``), ``sizes``, ``variants[]`` with ``variant``,
``latency_b1.{p50_ms, p99_ms}``, ``throughput_b32.sentences_per_s``, ``latency_speedup``,
``throughput_speedup``, ``b1``/``b32`` (comparison rows from ``benchmarks.common``:
``speedup``, ``ci``, ``inputs_timed``, ``inputs_total``, ``samples_per_side``,
``p99_speedup``/``p99_note``), and agreement: ``cosine_min``, ``max_abs_diff``,
``label_agreement`` (GPU: ``cosine_min_vs_cpu_fp32``, ``label_agreement_vs_cpu_fp32``).

The CPU section counts as measured through ``compare`` at both batch sizes (intervals,
P99 or ``n/a (N samples)``, coverage, each comparison's ``host_load.run_queue_wait``) when
it records ``workloads.b32.serving_batch_size`` and every variant's ``b1``/``b32`` rows
carry ``inputs_timed``, ``samples_per_side`` and ``host_load``; a section from before
(``sizes`` only) keeps its ratios, and what they rest on and their P99 read "pending a
quiet run" with the command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.render import cells
from benchmarks.render.registry import Results, block, effect

CPU = "python -m benchmarks.hardware.encoder"
GPU = "python -m benchmarks.hardware.gpu"


def _cpu(results: Results) -> dict[str, Any] | None:
    return dict(cells.headline(results.section("hardware", "cpu_encoder"), CPU) or {}) or None


def _gpu(results: Results) -> dict[str, Any] | None:
    found = results.section("hardware", "gpu_encoder")
    if found and found.get("skipped"):
        return None
    return dict(cells.headline(found, GPU) or {}) or None


def _speed(row: dict[str, Any], which: str, bold: bool = False) -> str:
    """A variant's ratio at batch 1 (``b1``) or 32 (``b32``), with its interval."""
    compared = row.get(which)
    key = "latency_speedup" if which == "b1" else "throughput_speedup"
    key_gpu = f"{key}_vs_cuda_eager_fp32"
    value = (compared or {}).get("speedup", row.get(key, row.get(key_gpu)))
    return cells.ratio(value, (compared or {}).get("ci"), bold=bold)


def _rests_on(section: dict[str, Any], which: str) -> str:
    """What the batch-1 or batch-32 figures rest on: the comparisons' coverage, or the
    sizes a run before ``compare`` recorded."""
    rows = [r.get(which) for r in section.get("variants") or [] if r.get(which)]
    if rows:
        inputs = min(r.get("inputs_timed") or 0 for r in rows)
        samples = min(r.get("samples_per_side") or 0 for r in rows)
        total = rows[0].get("inputs_total")
        what = "sentences" if which == "b1" else "batches of 32"
        covered = cells.rests_on({}, inputs=inputs, total=total, samples=samples, what=what)
        return f"each variant {covered}"
    sizes = section.get("sizes") or {}
    n = sizes.get("latency_sentences" if which == "b1" else "throughput_sentences")
    rounds = sizes.get("rounds")
    if n is None:
        return f"distinct inputs and samples: {cells.PENDING}"
    return (
        f"{cells.number(n)} sentences × {cells.number(rounds)} interleaved rounds; distinct "
        f"inputs and samples through compare: {cells.PENDING}"
    )


def _compared(section: dict[str, Any]) -> bool:
    """Whether the CPU section comes from a run through ``compare`` at both batch sizes,
    batch 32 served in batches (every comparison with its coverage and host load)."""
    b32 = (section.get("workloads") or {}).get("b32") or {}
    rows = [r for r in section.get("variants") or [] if r.get("variant") != "eager"]
    if not b32.get("serving_batch_size") or not rows:
        return False
    return all(
        isinstance(r.get(which), Mapping)
        and r[which].get("inputs_timed") is not None
        and r[which].get("samples_per_side") is not None
        and isinstance(r[which].get("host_load"), Mapping)
        for r in rows
        for which in ("b1", "b32")
    )


def _cpu_rests_on(section: dict[str, Any], which: str) -> str:
    """What the CPU batch-1 or batch-32 figures rest on: the fewest inputs and samples any
    variant's comparison timed; before ``compare``, the sizes and "pending a quiet run"."""
    if not _compared(section):
        sizes = section.get("sizes") or {}
        n = sizes.get("latency_sentences" if which == "b1" else "throughput_sentences")
        rounds = cells.number(sizes.get("rounds"))
        ran = f"a run before compare ({cells.number(n)} sentences × {rounds} rounds); " if n else ""
        return f"{ran}intervals, distinct inputs and samples: {cells.pending(CPU)}"
    rows = [r[which] for r in section.get("variants") or [] if r.get(which)]
    batch = ((section.get("workloads") or {}).get(which) or {}).get("serving_batch_size")
    what = "sentences" if which == "b1" else f"sentences (served in batches of {batch})"
    covered = cells.rests_on(
        {},
        inputs=min(r["inputs_timed"] for r in rows),
        total=rows[0].get("inputs_total"),
        samples=min(r["samples_per_side"] for r in rows),
        what=what,
    )
    return f"each variant {covered}"


def _waits(section: dict[str, Any]) -> str:
    """The range of run-queue wait across the CPU comparisons (``0 %–3 %``), flagged when
    the busiest was noisy; empty before ``compare``."""
    waits = [
        r[which]["host_load"].get("run_queue_wait")
        for r in section.get("variants") or []
        for which in ("b1", "b32")
        if _compared(section) and isinstance(r.get(which), Mapping)
    ]
    waits = [w for w in waits if w is not None]
    if not waits:
        return ""
    low, high = min(waits), max(waits)
    noisy = " (the busiest noisy)" if high > cells.BUSY_WAIT else ""
    return f"{cells.percent(low, 0)}–{cells.percent(high, 0)}{noisy}"


def _cpu_load(section: dict[str, Any]) -> str:
    """The host's load over the whole run, and the run-queue wait of each comparison."""
    waits = _waits(section)
    return (
        f"{cells.load(section)}; run-queue wait per comparison {waits}"
        if waits
        else cells.load(section)
    )


def _latency(row: dict[str, Any], digits: int) -> str:
    """``p50 / p99`` ms at batch 1; P99 ``n/a (N samples)`` where compare had too few."""
    lat = row.get("latency_b1") or {}
    p99 = lat.get("p99_ms")
    note = lat.get("p99_note") or (row.get("b1") or {}).get("p99_note")
    tail = cells.number(p99, digits) if p99 is not None or not note else note
    return f"{cells.number(lat.get('p50_ms'))} / {tail}"


def _top_p99(section: dict[str, Any], top: dict[str, Any]) -> str:
    """The fastest batch-1 variant's latency against eager: P50 both sides and the P99
    ratio (or ``n/a (N samples)``); pending with the command before ``compare``."""
    name = top.get("variant")
    if not _compared(section):
        return f"{name} at batch 1: P99 {cells.pending(CPU)}"
    found = top.get("b1") or {}
    p50 = found.get("p50_ms") or {}
    return (
        f"{name} at batch 1: P50 {cells.number(p50.get('b'))} ms (eager "
        f"{cells.number(p50.get('a'))} ms), {cells.p99(found)}"
    )


def _labels(row: dict[str, Any]) -> Any:
    return row.get("label_agreement", row.get("label_agreement_vs_cpu_fp32"))


def _cosine(row: dict[str, Any]) -> Any:
    return row.get("cosine_min", row.get("cosine_min_vs_cpu_fp32"))


@block("hardware.cpu", "hardware")
def cpu(results: Results) -> str:
    section = _cpu(results)
    if not section:
        return cells.missing(results.section("hardware", "cpu_encoder_quick"), CPU)
    rows = []
    for row in section.get("variants") or []:
        thr = row.get("throughput_b32") or {}
        rows.append(
            [
                row.get("variant", "–"),
                _latency(row, 1),
                _speed(row, "b1"),
                cells.number(thr.get("sentences_per_s"), 1),
                _speed(row, "b32"),
                cells.number(_cosine(row), 5),
                "0" if row.get("max_abs_diff") == 0 else f"{row.get('max_abs_diff', 0):.1e}",
                cells.percent(_labels(row)),
            ]
        )
    header = [
        "variant",
        "batch 1: p50 / p99 ms",
        "× eager, batch 1",
        "batch 32: sentences/s",
        "× eager, batch 32",
        "worst cosine",
        "max-abs-diff",
        "labels vs eager",
    ]
    head = section.get("head") or {}
    return "\n".join(
        [
            cells.table(header, rows, "lrrrrrrr"),
            "",
            f"Batch 1 rests on: {_cpu_rests_on(section, 'b1')}. Batch 32 rests on: "
            f"{_cpu_rests_on(section, 'b32')}. The topic head is "
            f"{cells.percent(head.get('eager_accuracy'))} accurate on eager embeddings. "
            f"Threads: {section.get('threads')} intra-op for every variant. "
            + cells.conditions(section, CPU)
            + (f" Run-queue wait per comparison: {_waits(section)}." if _waits(section) else ""),
        ]
    )


@block("hardware.gpu", "hardware")
def gpu(results: Results) -> str:
    section = _gpu(results)
    if not section:
        return cells.missing(results.section("hardware", "gpu_encoder_quick"), GPU)
    rows = []
    for row in section.get("variants") or []:
        thr = row.get("throughput_b32") or {}
        build = (row.get("build") or {}).get("build_s")
        rows.append(
            [
                row.get("variant", "–"),
                _latency(row, 2),
                _speed(row, "b1"),
                cells.number(thr.get("sentences_per_s"), 0),
                _speed(row, "b32"),
                cells.number(_cosine(row), 5),
                cells.percent(_labels(row), 0),
                f"{cells.number(build, 1)} s" if build is not None else "—",
            ]
        )
    header = [
        "variant",
        "batch 1 p50 / p99 ms",
        "× eager fp32, batch 1",
        "batch 32 sentences/s",
        "× eager fp32, batch 32",
        "worst cosine",
        "labels vs CPU fp32",
        "build",
    ]
    rows_text = cells.table(header, rows, "lrrrrrrr")
    return (
        f"{rows_text}\n\nBatch 1 rests on: {_rests_on(section, 'b1')}. Batch 32 rests on: "
        f"{_rests_on(section, 'b32')}. {cells.conditions(section, GPU)}"
    )


def _best(section: dict[str, Any], which: str, count: int = 3) -> list[dict[str, Any]]:
    key = "latency_speedup" if which == "b1" else "throughput_speedup"
    rows = [r for r in section.get("variants") or [] if r.get("variant") != "eager"]
    rows = [r for r in rows if "no hint" not in str(r.get("variant"))]
    return sorted(rows, key=lambda r: -(r.get(key) or r.get(f"{key}_vs_cuda_eager_fp32") or 0))[
        :count
    ]


def _listed(section: dict[str, Any], which: str) -> str:
    best = _best(section, which)
    return ", ".join(f"{r['variant']} {_speed(r, which, bold=i == 0)}" for i, r in enumerate(best))


@block("hardware.summary.cpu", "hardware")
def cpu_summary(results: Results) -> str:
    section = _cpu(results)
    if not section:
        missing = cells.missing(results.section("hardware", "cpu_encoder_quick"), CPU)
        return cells.row_cells(missing, "—", "—", "—", missing)
    labels = ", ".join(
        f"{r['variant']} {cells.percent(_labels(r))}"
        for r in section.get("variants") or []
        if r.get("variant") != "eager" and "no hint" not in r.get("variant", "")
    )
    top = (_best(section, "b1", 1) or [{}])[0]
    rests = f"batch 1: {_cpu_rests_on(section, 'b1')}"
    if _compared(section):
        rests += f"; batch 32: {_cpu_rests_on(section, 'b32')}"
    return cells.row_cells(
        f"batch 1: {_listed(section, 'b1')}; batch 32: {_listed(section, 'b32')} "
        f"({section.get('threads')} threads)",
        "— (eager torch fp32 under `inference_mode` is the baseline)",
        f"labels vs eager: {labels}",
        f"{_top_p99(section, top)}; int8 and bf16 are lossy "
        f"(worst cosine {cells.number(_cosine(top), 3)})",
        f"{rests}; {_cpu_load(section)}",
    )


@block("hardware.summary.gpu", "hardware")
def gpu_summary(results: Results) -> str:
    section = _gpu(results)
    if not section:
        missing = cells.missing(results.section("hardware", "gpu_encoder_quick"), GPU)
        return cells.row_cells(missing, "—", "—", "—", missing)
    labels = [_labels(r) for r in section.get("variants") or [] if _labels(r) is not None]
    cosines = [_cosine(r) for r in section.get("variants") or [] if _cosine(r) is not None]
    gpu_name = (section.get("machine") or {}).get("gpu") or "GPU"
    return cells.row_cells(
        f"batch 1: {_listed(section, 'b1')}; batch 32: {_listed(section, 'b32')} ({gpu_name})",
        "— (eager fp32 on the same GPU is the baseline)",
        f"lowest label agreement with CPU fp32 {cells.percent(min(labels), 0) if labels else '–'}, "
        f"worst cosine {cells.number(min(cosines), 4) if cosines else '–'}",
        "half precision without graphs is slower (launch-bound); build (compile + graphs) "
        "paid once per process",
        f"batch 1: {_rests_on(section, 'b1')}; {cells.load(section)}",
    )


THREADS = "python -m benchmarks.hardware.threads"


@block("hardware.summary.threads", "hardware")
def threads_summary(results: Results) -> str:
    """The thread plan on a busy host: each case's kept recipe in a plain process."""
    section = cells.headline(results.section("hardware", "threads"), THREADS)
    if not section:
        missing = cells.missing(results.section("hardware", "threads_quick"), THREADS)
        return cells.row_cells(missing, "—", "—", "—", missing)
    cases = section.get("cases") or {}
    plain = {name: case.get("plain_process") or {} for name, case in cases.items()}
    never_slower = all((p.get("speedup") or 0) >= 1.0 for p in plain.values())
    figures = ", ".join(
        f"{name} {cells.ratio(p.get('speedup'), p.get('ci'))} "
        f"({', '.join(cases[name].get('accepted') or []) or 'nothing kept'})"
        for name, p in plain.items()
    )
    pending = [name for name in section.get("cases_all") or [] if name not in cases]
    if pending:
        figures += f"; {', '.join(pending)}: {cells.pending(THREADS)}"
    rests = "; ".join(f"{name}: {cells.rests_on(p)}" for name, p in plain.items())
    first = next(iter(plain.values()), {})
    busy = section.get("busy_processes") or {}
    return cells.row_cells(
        f"kept recipe in a plain process: {figures} — {_threads_verdict(never_slower, pending)}",
        "the original pipeline in a plain process, library defaults",
        "each kept change's own gate",
        f"a second process keeps the host busy ({busy.get('loop')})",
        f"{rests}; {cells.load(first)}",
    )


def _threads_verdict(never_slower: bool, pending: list[str]) -> str:
    if not never_slower:
        return "slower in a case: not met"
    return "never slower in the cases run (the rest pending)" if pending else "never slower: met"


@block("readme.hardware", "hardware")
def readme(results: Results) -> str:
    """README's plugin table: the ``hardware`` row's measured figure."""
    parts = []
    section = _cpu(results)
    if section:
        top = (_best(section, "b1", 1) or [{}])[0]
        parts.append(
            f"MiniLM batch 1 on the CPU: {top.get('variant')} {_speed(top, 'b1')} eager at "
            f"{cells.percent(_labels(top))} labels ({_cpu_rests_on(section, 'b1')}; "
            f"{_cpu_load(section)})"
        )
    else:
        parts.append(f"CPU: {cells.missing(results.section('hardware', 'cpu_encoder_quick'), CPU)}")
    section = _gpu(results)
    if section:
        top = (_best(section, "b1", 1) or [{}])[0]
        gpu_name = (section.get("machine") or {}).get("gpu") or "GPU"
        parts.append(
            f"{top.get('variant')} {_speed(top, 'b1')} eager fp32 on an {gpu_name} "
            f"({_rests_on(section, 'b1')}; {cells.load(section)})"
        )
    else:
        parts.append(f"GPU: {cells.missing(results.section('hardware', 'gpu_encoder_quick'), GPU)}")
    return "; ".join(parts)


@effect("PT-HW001", "all-MiniLM-L6-v2 on an NVIDIA GPU, batch 1", GPU, "hardware")
def hw001(results: Results) -> str:
    section = _gpu(results)
    if not section:
        return cells.missing(results.section("hardware", "gpu_encoder_quick"), GPU)
    rows = {r.get("variant"): r for r in section.get("variants") or []}
    half = [rows[n] for n in ("cuda eager fp16", "cuda eager bf16") if n in rows]
    graphs = [r for n, r in rows.items() if "CUDA graphs" in str(n) and "fp32" not in str(n)]
    gpu_name = (section.get("machine") or {}).get("gpu") or "GPU"
    return (
        f"on an {gpu_name}: half precision alone "
        + ", ".join(f"{r['variant'].split()[-1]} {_speed(r, 'b1')}" for r in half)
        + " eager fp32; with `torch.compile` + CUDA graphs "
        + ", ".join(f"{r['variant'].split()[1]} {_speed(r, 'b1', bold=True)}" for r in graphs)
        + f"; lowest label agreement {cells.percent(_lowest_labels(rows.values()), 0)}; "
        f"{_rests_on(section, 'b1')}; {cells.load(section)}"
    )


def _lowest_labels(rows: Any) -> Any:
    found = [_labels(r) for r in rows if _labels(r) is not None]
    return min(found) if found else None
