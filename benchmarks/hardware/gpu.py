"""all-MiniLM-L6-v2 on an NVIDIA GPU: eager fp32 vs fp16/bf16 vs compiled with CUDA graphs.

Run from the repository root on a machine with a CUDA build of torch and a GPU::

    python -m benchmarks.hardware.gpu            # a few minutes
    python -m benchmarks.hardware.gpu --quick    # a smoke run

Without a CUDA device it records why in the ``gpu_encoder_skipped`` section of
``benchmarks/results/hardware.json`` and exits 0: no GPU figure is ever invented, and
the figures a GPU machine measured (``gpu_encoder``) are kept.

Variants (host tensors in, host tensors out, for all of them: the transfer is part of
the cost a pipeline pays):

* ``cuda eager fp32`` / ``fp16`` / ``bf16``: a copy of the module moved (and cast) to the
  GPU, called eagerly under ``torch.inference_mode()``;
* ``torch-cuda fp32/fp16/bf16 + CUDA graphs``: the hardware plugin's ``torch-cuda``
  backend: ``torch.compile(mode="reduce-overhead")``, pinned-memory inputs.

Sentences are padded to bucket lengths (16, 32, 64, 128 tokens) for every variant alike,
so CUDA graphs are recorded once per bucket and reused, as a serving system would do.
Every variant is measured against ``cuda eager fp32`` through the project's comparison
harness (:func:`pipetune.core.measure.comparison.compare`: paired ABBA/BAAB rounds, equal
passes, an interval, the inputs, samples and host load behind each figure), one sentence
a call and 32 a call. Agreement is measured against CPU fp32 eager: embedding cosine and
the label agreement of a logistic topic head trained on CPU fp32 embeddings.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.hardware.data import sentences
from benchmarks.hardware.encoder import (
    RESULTS,
    _write,
    load_encoder,
    pooled,
    predict,
    side_by_side,
    train_head,
    variant_rows,
)
from pipetune.core.kernel.artifacts import library_version
from pipetune.core.runtime.machine import describe_machine, detect_machine

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
        # Recorded in its own section: a run on a machine without a GPU never replaces
        # the figures a GPU machine measured.
        _write(
            args.output,
            "gpu_encoder_skipped",
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
    rounds = 2 if quick else 8
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
    reference_embeddings = cpu_embed(eval_batches)
    reference_pred = predict(head, reference_embeddings)

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

    reference = "cuda eager fp32"
    with common.host_load() as load:
        log("batch 1, each variant against eager fp32 (compare)...")
        b1 = side_by_side(
            variants, singles, reference=reference, rounds=rounds, threads=None, log=log
        )
        log("batch 32, each variant against eager fp32 (compare)...")
        b32 = side_by_side(
            variants, batches, reference=reference, rounds=rounds, threads=None, log=log
        )
    rows = []
    for row in variant_rows(list(variants), 32.0, b1, b32, {}, info):
        embeddings = np.concatenate(
            [pooled(variants[row["variant"]](**b), b["attention_mask"]) for b in eval_batches]
        )
        predicted = predict(head, embeddings)
        cosines = np.sum(embeddings * reference_embeddings, axis=1)
        row["cosine_min_vs_cpu_fp32"] = float(np.min(cosines))
        row["label_agreement_vs_cpu_fp32"] = float(np.mean(predicted == reference_pred))
        row["accuracy"] = float(np.mean(predicted == np.array(eval_labels)))
        row["latency_speedup_vs_cuda_eager_fp32"] = row["latency_speedup"]
        row["throughput_speedup_vs_cuda_eager_fp32"] = row["throughput_speedup"]
        rows.append(row)
    machine = detect_machine()
    section = {
        "benchmark": "all-MiniLM-L6-v2 on an NVIDIA GPU: eager vs half precision vs CUDA graphs",
        "command": "python -m benchmarks.hardware.gpu" + (" --quick" if quick else ""),
        "quick": quick,
        "machine": machine.to_dict(),
        "machine_rows": dict(describe_machine(machine)),
        "libraries": {lib: library_version(lib) for lib in ("torch", "transformers")},
        "buckets": list(BUCKETS),
        "harness": "pipetune.core.measure.comparison.compare",
        "variants": rows,
        "host_load": load,
    }
    _write(args.output, "gpu_encoder" + ("_quick" if quick else ""), section)
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
