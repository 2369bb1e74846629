"""Hardware: one encoder on every backend (``benchmarks/results/hardware.json``).

Expected keys, sections ``cpu_encoder`` and ``gpu_encoder`` (``_quick`` for smoke runs):
``command``, ``machine``/``machine_rows``, ``libraries``, ``threads``, ``host_load`` (or
``conditions``/``load_average``), ``sizes``, ``variants[]`` with ``variant``,
``latency_b1.{p50_ms, p99_ms}``, ``throughput_b32.sentences_per_s``, ``latency_speedup``,
``throughput_speedup``, ``b1``/``b32`` (comparison rows from ``benchmarks.common``:
``speedup``, ``ci``, ``inputs_timed``, ``inputs_total``, ``samples_per_side``,
``p99_speedup``/``p99_note``), and agreement: ``cosine_min``, ``max_abs_diff``,
``label_agreement`` (GPU: ``cosine_min_vs_cpu_fp32``, ``label_agreement_vs_cpu_fp32``).
"""

from __future__ import annotations

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
        lat, thr = row.get("latency_b1") or {}, row.get("throughput_b32") or {}
        rows.append(
            [
                row.get("variant", "–"),
                f"{cells.number(lat.get('p50_ms'))} / {cells.number(lat.get('p99_ms'), 1)}",
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
            f"Batch 1 rests on: {_rests_on(section, 'b1')}. Batch 32 rests on: "
            f"{_rests_on(section, 'b32')}. The topic head is "
            f"{cells.percent(head.get('eager_accuracy'))} accurate on eager embeddings. "
            f"Threads: {section.get('threads')} intra-op for every variant. "
            + cells.conditions(section, CPU),
        ]
    )


@block("hardware.gpu", "hardware")
def gpu(results: Results) -> str:
    section = _gpu(results)
    if not section:
        return cells.missing(results.section("hardware", "gpu_encoder_quick"), GPU)
    rows = []
    for row in section.get("variants") or []:
        lat, thr = row.get("latency_b1") or {}, row.get("throughput_b32") or {}
        build = (row.get("build") or {}).get("build_s")
        rows.append(
            [
                row.get("variant", "–"),
                f"{cells.number(lat.get('p50_ms'))} / {cells.number(lat.get('p99_ms'))}",
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
    return cells.row_cells(
        f"batch 1: {_listed(section, 'b1')}; batch 32: {_listed(section, 'b32')} "
        f"({section.get('threads')} threads)",
        "— (eager torch fp32 under `inference_mode` is the baseline)",
        f"labels vs eager: {labels}",
        f"{top.get('variant')} at batch 1: {cells.p99(top.get('b1'))}; int8 and bf16 are lossy "
        f"(worst cosine {cells.number(_cosine(top), 3)})",
        f"batch 1: {_rests_on(section, 'b1')}; {cells.load(section)}",
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
            f"{cells.percent(_labels(top))} labels ({_rests_on(section, 'b1')}; "
            f"{cells.load(section)})"
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
