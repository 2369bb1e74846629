"""all-MiniLM-L6-v2 on an NVIDIA GPU: eager fp32 vs fp16/bf16 vs compiled with CUDA graphs.

Run from the repository root on a machine with a CUDA build of torch and a GPU::

    python -m benchmarks.hardware.gpu            # a few minutes
    python -m benchmarks.hardware.gpu --quick    # a smoke run

Without a CUDA device it records why in the ``gpu_encoder`` section of
``benchmarks/results/hardware.json`` and exits 0: no GPU figure is ever invented.

Variants (host tensors in, host tensors out, for all of them: the transfer is part of
the cost a pipeline pays):

* ``cuda eager fp32`` / ``fp16`` / ``bf16``: a copy of the module moved (and cast) to the
  GPU, called eagerly under ``torch.inference_mode()``;
* ``torch-cuda fp32/fp16/bf16 + CUDA graphs``: the hardware plugin's ``torch-cuda``
  backend: ``torch.compile(mode="reduce-overhead")``, pinned-memory inputs.

Sentences are padded to bucket lengths (16, 32, 64, 128 tokens) for every variant alike,
so CUDA graphs are recorded once per bucket and reused, as a serving system would do.
Agreement is measured against CPU fp32 eager: embedding cosine, max-abs-diff, and the
label agreement of a logistic topic head trained on CPU fp32 embeddings.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.hardware.data import sentences
from benchmarks.hardware.encoder import (
    RESULTS,
    _loadavg,
    _write,
    load_encoder,
    pooled,
    predict,
    train_head,
)
from pipetune.core.kernel.artifacts import library_version
from pipetune.core.measure.machine import describe_machine, detect_machine

BUCKETS = (16, 32, 64, 128)


def bucketed(tokenizer: Any, texts: list[str]) -> dict[str, Any]:
    longest = max(len(tokenizer(t, truncation=True, max_length=128)["input_ids"]) for t in texts)
    length = next(b for b in BUCKETS if b >= longest)
    encoded = tokenizer(
        texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
    )
    return dict(encoded)


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    machine = detect_machine()
    if not torch.cuda.is_available():
        build = "CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
        reason = f"no CUDA device (torch {torch.__version__}, {build}); nothing measured"
        _write(
            args.output,
            "gpu_encoder",
            {
                "skipped": reason,
                "machine": machine.to_dict(),
                "command": "python -m benchmarks.hardware.gpu",
            },
        )
        print(f"gpu benchmark skipped: {reason}")
        return 0

    from pipetune.plugins.hardware.backends.torch_cuda import TorchCudaBackend

    quick = args.quick
    n_latency, n_throughput, n_eval, n_train = (
        (32, 128, 128, 300) if quick else (300, 2048, 1024, 1000)
    )
    rounds = 2 if quick else 3
    tokenizer, model = load_encoder()
    texts, _ = sentences(n_latency + n_throughput, seed=1)
    eval_texts, eval_labels = sentences(n_eval, seed=2)
    train_texts, train_labels = sentences(n_train, seed=3)
    singles = [bucketed(tokenizer, [t]) for t in texts[:n_latency]]
    batches = [
        bucketed(tokenizer, texts[n_latency + i : n_latency + i + 32])
        for i in range(0, n_throughput, 32)
    ]
    eval_batches = [bucketed(tokenizer, eval_texts[i : i + 32]) for i in range(0, n_eval, 32)]
    train_batches = [bucketed(tokenizer, train_texts[i : i + 32]) for i in range(0, n_train, 32)]

    def cpu_embed(batch_list: list[dict[str, Any]]) -> np.ndarray:
        with torch.inference_mode():
            return np.concatenate(
                [pooled(model(**b).last_hidden_state, b["attention_mask"]) for b in batch_list]
            )

    log("CPU fp32 reference embeddings...")
    head = train_head(cpu_embed(train_batches), train_labels)
    reference = cpu_embed(eval_batches)
    reference_pred = predict(head, reference)

    variants: dict[str, Callable[..., Any]] = {}
    info: dict[str, Any] = {}
    bf16 = torch.cuda.is_bf16_supported()
    for precision in ("fp32", "fp16") + (("bf16",) if bf16 else ()):
        import copy

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        gpu_copy = copy.deepcopy(model).to("cuda", dtype=dtype).eval()

        def eager(_m: Any = gpu_copy, **batch: Any) -> Any:
            with torch.inference_mode():
                moved = {k: v.to("cuda", non_blocking=True) for k, v in batch.items()}
                return _m(**moved).last_hidden_state.float().cpu()

        variants[f"cuda eager {precision}"] = eager
        started = time.perf_counter()
        compiled = TorchCudaBackend().compile(model, singles[0], precision, cuda_graphs=True)
        for sample in [singles[0], *batches[:1]]:  # record graphs for the first buckets
            compiled(**sample)
        info[f"torch-cuda {precision} + CUDA graphs"] = {
            "build_s": round(time.perf_counter() - started, 2)
        }
        variants[f"torch-cuda {precision} + CUDA graphs"] = lambda _c=compiled, **batch: (
            _c(**batch).last_hidden_state
        )

    log("warm-up (one CUDA graph recorded per input shape)...")
    shapes: dict[tuple[int, ...], dict[str, Any]] = {}
    for sample in singles + batches + eval_batches:
        shapes.setdefault(tuple(sample["input_ids"].shape), sample)
    for fn in variants.values():
        for sample in shapes.values():
            for _ in range(2):
                fn(**sample)
    torch.cuda.synchronize()

    log("latency, batch 1...")
    latency: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            for batch in singles:
                started = time.perf_counter()
                variants[name](**batch)
                latency[name].append((time.perf_counter() - started) * 1000)
    log("throughput, batch 32...")
    count = sum(int(b["input_ids"].shape[0]) for b in batches)
    throughput: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            started = time.perf_counter()
            for batch in batches:
                variants[name](**batch)
            throughput[name].append(count / (time.perf_counter() - started))

    base_lat = float(np.percentile(latency["cuda eager fp32"], 50))
    base_thr = statistics.median(throughput["cuda eager fp32"])
    rows = []
    for name, fn in variants.items():
        embeddings = np.concatenate([pooled(fn(**b), b["attention_mask"]) for b in eval_batches])
        cosines = np.sum(embeddings * reference, axis=1)
        p50 = float(np.percentile(latency[name], 50))
        thr = statistics.median(throughput[name])
        rows.append(
            {
                "variant": name,
                "latency_b1": {"p50_ms": p50, "p99_ms": float(np.percentile(latency[name], 99))},
                "throughput_b32": {"sentences_per_s": thr},
                "latency_speedup_vs_cuda_eager_fp32": base_lat / p50,
                "throughput_speedup_vs_cuda_eager_fp32": thr / base_thr,
                "cosine_min_vs_cpu_fp32": float(np.min(cosines)),
                "label_agreement_vs_cpu_fp32": float(
                    np.mean(predict(head, embeddings) == reference_pred)
                ),
                "accuracy": float(np.mean(predict(head, embeddings) == np.array(eval_labels))),
                "build": info.get(name, {}),
            }
        )
    machine = detect_machine()
    section = {
        "benchmark": "all-MiniLM-L6-v2 on an NVIDIA GPU: eager vs half precision vs CUDA graphs",
        "command": "python -m benchmarks.hardware.gpu" + (" --quick" if quick else ""),
        "quick": quick,
        "machine": machine.to_dict(),
        "machine_rows": dict(describe_machine(machine)),
        "libraries": {lib: library_version(lib) for lib in ("torch", "transformers")},
        "buckets": list(BUCKETS),
        "variants": rows,
        "load_average": _loadavg(),
    }
    _write(args.output, "gpu_encoder", section)
    print(f"\n{section['benchmark']}")
    for what, value in section["machine_rows"].items():
        print(f"  {what:8s} {value}")
    print(
        f"{'variant':36s} {'b1 p50 ms':>9s} {'x':>6s} {'b32 sent/s':>10s} {'x':>6s} "
        f"{'cos min':>8s} {'labels':>7s}"
    )
    for row in rows:
        print(
            f"{row['variant']:36s} {row['latency_b1']['p50_ms']:9.3f} "
            f"{row['latency_speedup_vs_cuda_eager_fp32']:6.2f} "
            f"{row['throughput_b32']['sentences_per_s']:10.1f} "
            f"{row['throughput_speedup_vs_cuda_eager_fp32']:6.2f} "
            f"{row['cosine_min_vs_cpu_fp32']:8.5f} {row['label_agreement_vs_cpu_fp32']:7.1%}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
