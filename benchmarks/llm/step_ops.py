"""How many operators one batch-1 static-cache decode step runs, eager and compiled.

    python -m benchmarks.llm.step_ops [--max-len 320]

The step is the one :class:`~pipetune.plugins.llm.cuda_graphs.GraphDecoder` captures in a
CUDA graph. A replayed graph has no launch overhead left, but every kernel in it still
costs a few microseconds of fixed time on the GPU, so for a small model the number of
kernels per step sets the speed. Counted here on the CPU (no GPU needed):

* **eager**: the top-level aten operators of one step under the torch profiler (views and
  dispatch-only wrappers left out), with the ones that are CPU-only bookkeeping (a Python
  scalar wrapped into a tensor) counted apart, since a GPU runs no kernel for them;
* **compiled**: the kernels in the code inductor generates for the same step
  (``torch.compile``; fused C++ kernels and external matrix products on a CPU; on a GPU
  inductor emits Triton kernels instead, fused by the same scheduler).

Writes ``benchmarks/results/llm_step_ops.json``. Same model as ``benchmarks.llm.run``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "llm_step_ops.json"

#: Operators that only view, alias or dispatch to another operator (no kernel of their own).
VIEWS = frozenset(
    f"aten::{name}"
    for name in (
        "view",
        "as_strided",
        "transpose",
        "t",
        "slice",
        "unsqueeze",
        "squeeze",
        "expand",
        "reshape",
        "_unsafe_view",
        "_reshape_alias",
        "select",
        "permute",
        "detach",
        "alias",
        "lift_fresh",
        "empty",
        "empty_strided",
        "contiguous",
        "to",
        "matmul",
        "linear",
        "scaled_dot_product_attention",
        "resolve_conj",
        "resolve_neg",
        "result_type",
        "item",
        "_local_scalar_dense",
        "is_nonzero",
        "dropout",
    )
)
#: CPU-side bookkeeping: a Python scalar (an epsilon, a divisor) wrapped into a tensor.
SCALAR_WRAPS = frozenset({"aten::_to_copy", "aten::scalar_tensor"})


def _decoder(loaded: Any, max_len: int, compile: bool) -> Any:
    """A static decoder 20 tokens into a request (EOS off)."""
    from pipetune.plugins.llm.cuda_graphs import StaticDecoder
    from pipetune.plugins.llm.engine import Engine
    from pipetune.plugins.llm.records import GenerateConfig, GenerationRequest

    engine = Engine(loaded.model, GenerateConfig(eos_token_ids=(-1,)))
    decoder = StaticDecoder(engine, max_len=max_len, compile=compile)
    prompt = loaded.tokenizer.encode("Write a short story about a lighthouse keeper.")
    steps = decoder.steps(engine.prepare(GenerationRequest(tuple(prompt), 64), 0))
    for _ in range(20):
        next(steps)
    return decoder


def eager_ops(loaded: Any, max_len: int) -> dict[str, Any]:
    from torch.profiler import ProfilerActivity, profile

    decoder = _decoder(loaded, max_len, compile=False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        decoder._step_and_argmax()
    counts: Counter[str] = Counter()
    for event in prof.events():
        parent = event.cpu_parent
        if parent is not None and parent.name.startswith("aten::") and parent.name not in VIEWS:
            continue  # runs inside another operator's kernel
        if event.name.startswith("aten::") and event.name not in VIEWS:
            counts[event.name] += 1
    wraps = sum(n for name, n in counts.items() if name in SCALAR_WRAPS)
    return {
        "operators": sum(counts.values()),
        "cpu_scalar_wraps": wraps,
        "device_kernels": sum(counts.values()) - wraps,
        "by_operator": dict(counts.most_common()),
    }


def compiled_kernels(loaded: Any, max_len: int) -> dict[str, Any]:
    import torch
    from torch._inductor import config as inductor_config
    from torch._inductor.utils import run_and_get_code

    decoder = _decoder(loaded, max_len, compile=True)
    started = time.perf_counter()
    # a cached graph would skip code generation, and with it the code counted here
    with inductor_config.patch(fx_graph_cache=False), torch.no_grad():
        _, sources = run_and_get_code(decoder._compiled_step())
    compile_s = time.perf_counter() - started
    calls: Counter[str] = Counter()
    for source in sources:
        body = source[source.find("def call(") :]
        for name in re.findall(r"^\s+([A-Za-z_][\w.]*)(?:\.run)?\(", body, re.M):
            if name.startswith(("cpp_fused", "triton_")):
                calls["fused kernel"] += 1
            elif name.startswith("extern_kernels."):
                calls[name.removeprefix("extern_kernels.")] += 1
    return {
        "kernels": sum(calls.values()),
        "by_kind": dict(calls.most_common()),
        "compile_s": compile_s,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--max-len", type=int, default=320, help="static cache length")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    from pipetune.plugins.llm.model_loading import load_reference_model

    loaded = load_reference_model()
    layers = loaded.model.config.num_hidden_layers
    results = {
        "command": f"python -m benchmarks.llm.step_ops --max-len {args.max_len}",
        "model": loaded.name,
        "layers": layers,
        "torch": torch.__version__,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "eager": eager_ops(loaded, args.max_len),
        "compiled": compiled_kernels(loaded, args.max_len),
    }
    eager, compiled = results["eager"], results["compiled"]
    print(
        f"{loaded.name}, {layers} layers, one batch-1 static-cache decode step:\n"
        f"  eager:    {eager['operators']} operators, {eager['device_kernels']} of them "
        f"kernels on a GPU ({eager['device_kernels'] / layers:.0f} per layer)\n"
        f"  compiled: {compiled['kernels']} kernels {compiled['by_kind']} "
        f"(compiled in {compiled['compile_s']:.0f} s)"
    )
    for name, n in list(eager["by_operator"].items())[:12]:
        print(f"    {name:50s} {n}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
