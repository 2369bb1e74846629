"""``llm.cuda_graphs``: a static KV cache and one CUDA graph per batch-1 decode step (the
step captured as is, and compiled by ``torch.compile`` first; the faster with the same
tokens is kept). Lossless. Needs the model on a CUDA device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Proposal, Tuned
from pipetune.plugins.llm.changes.common import (
    GenerateTuning,
    check_same,
    timed,
    tune_generate,
)
from pipetune.plugins.llm.changes.common import materialize_config as materialize
from pipetune.plugins.llm.records import GenerateConfig, GenerationRequest

ID = "llm.cuda_graphs"
#: The CUDA-graph tune step's two captures: the eager decode step, and the step compiled
#: by ``torch.compile`` first (its ~1,200 small kernels fused into ~400 on the CPU: see
#: docs/benchmarks/llm.md). Both are measured; the faster one with the same tokens is kept.
GRAPH_VARIANTS = (("captured", False), ("compiled, then captured", True))


@dataclass(frozen=True)
class CudaGraphsParams(ChangeParams):
    cuda_graph: bool = True
    compile_step: bool | None = None
    static_cache_len: int | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    return tune_generate(proposal, pipeline, context, _tune_block)


def _tune_block(t: GenerateTuning) -> Tuned:
    from pipetune.plugins.llm.cuda_graphs import cuda_graph_available

    if not cuda_graph_available(t.stage.slots["model"]):
        raise Rejected("CUDA graphs need the model on a CUDA device")
    return _tune_cuda_graphs(t.base, t.config, t.requests, t.engine, t.floor, t.min_speedup)


def _tune_cuda_graphs(
    base: Any,
    config: GenerateConfig,
    requests: list[GenerationRequest],
    engine: Any,
    floor: float,
    min_speedup: float,
) -> Tuned:
    """Static cache + one CUDA graph per decode step, captured as is and compiled first.

    A compiled variant that fails to compile, falls back to the eager step, or changes a
    token is left out with the reason in the notes; the plain capture decides alone then.
    """
    sample = requests[:4]
    # warm up (capture, compile) on the request that decodes longest: a one-token request
    # never reaches the decode step
    warm_up = max(
        sample,
        key=lambda r: config.max_new_tokens if r.max_new_tokens is None else r.max_new_tokens,
    )
    before, t_before = timed(lambda: [base.generate(r) for r in sample])
    measured: dict[str, dict[str, Any]] = {}
    best: tuple[float, bool, Any] | None = None
    for name, compile_step in GRAPH_VARIANTS:
        candidate = engine(config.evolve(cuda_graph=True, compile_step=compile_step))
        try:
            candidate.generate(warm_up)
            after, t_after = timed(lambda c=candidate: [c.generate(r) for r in sample])
            error = getattr(candidate._static_runner, "compile_error", None)
            if error:
                raise Rejected(f"fell back to the eager step: {error}")
            fidelity = check_same(f"CUDA graphs ({name})", before, after, floor)
        except Exception as exc:
            if not compile_step:
                raise
            # inductor, capture or tokens: the compiled variant is left out, the plain
            # capture decides
            reason = str(exc) if isinstance(exc, Rejected) else f"{type(exc).__name__}: {exc}"
            measured[name] = {"left_out": reason[:500]}
            continue
        speedup = t_before / t_after if t_after else 0.0
        measured[name] = {"speedup": speedup, "fidelity": fidelity.to_dict()}
        if best is None or speedup > best[0]:
            best = (speedup, compile_step, fidelity)
    assert best is not None  # the plain capture either measured or raised
    speedup, compile_step, fidelity = best
    if speedup < min_speedup:
        raise Rejected(f"CUDA graph decode measured {speedup:.2f}x: does not pay")
    return Tuned(
        params={
            "cuda_graph": True,
            "compile_step": compile_step,
            "static_cache_len": config.static_cache_len,
        },
        notes={"speedup": speedup, "fidelity": fidelity.to_dict(), "variants": measured},
        est_stage_speedup=speedup,
    )


CHANGE = ChangeType(ID, CudaGraphsParams, materialize, tune)
