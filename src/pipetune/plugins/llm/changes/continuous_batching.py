"""``llm.continuous_batching``: requests join and leave the running batch at every decode
step (the plugin's scheduler, or transformers' own on CUDA); the batch size is chosen on
the tuning split. Lossless."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import Rejected
from pipetune.core.kernel.model import Pipeline
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, InFlight, Proposal, Tuned
from pipetune.plugins.llm.changes.common import (
    GenerateTuning,
    check_same,
    materialize_config,
    timed,
    tune_generate,
)

ID = "llm.continuous_batching"
#: The batch sizes the continuous-batching tune step tries.
BATCH_SIZES = (4, 8, 16)


@dataclass(frozen=True)
class ContinuousBatchingParams(ChangeParams):
    batching: str = "continuous"
    max_batch: int | None = None
    engine: str | None = None


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    tuned = tune_generate(proposal, pipeline, context, _tune_continuous)
    batch = int(tuned.params["max_batch"])  # validated with passes that can fill it
    return tuned.evolve(
        in_flight=InFlight(inputs=batch, assumes=f"{batch} requests in flight at once")
    )


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    from pipetune.core.runtime.serving import with_serving

    result = materialize_config(change, pipeline, artifacts_dir)
    batch = change.params.get("max_batch")  # served in batches, or the engine sees one request
    return with_serving(result, batch_size=int(batch)) if batch else result


def _tune_continuous(t: GenerateTuning) -> Tuned:
    """Serve the tuning requests sequentially (the reference tokens and time), then with
    the plugin's scheduler at each batch size (static against continuous), then with
    transformers' own continuous batching where it runs; keep the fastest continuous
    point, if it beats sequential decoding by ``t.min_speedup``."""
    reference, t_ref = timed(lambda: t.base.generate_many(t.requests))
    tokens = sum(len(g.tokens) for g in reference)
    points, best = _scheduler_points(t, reference)
    chosen = _with_transformers(t, reference, points, best)
    sequential_tps = tokens / t_ref if t_ref else 0.0
    speedup = chosen["continuous_tokens_per_s"] / sequential_tps if sequential_tps else 0.0
    if speedup < t.min_speedup:
        raise Rejected(
            f"continuous batching measured {speedup:.2f}x the sequential tokens/s "
            f"({chosen['continuous_tokens_per_s']:.1f} vs {sequential_tps:.1f}) on "
            f"{len(t.requests)} requests: does not pay"
        )
    return Tuned(
        params={
            "batching": "continuous",
            "max_batch": chosen["max_batch"],
            "engine": chosen["engine"],
        },
        notes={
            "requests": len(t.requests),
            "sequential_tokens_per_s": sequential_tps,
            "points": points,
            "chosen": chosen,
        },
        est_stage_speedup=speedup,
    )


def _scheduler_points(
    t: GenerateTuning, reference: list[Any]
) -> tuple[list[dict[str, Any]], tuple[float, dict[str, Any]]]:
    """The plugin's scheduler at each batch size that the requests can fill: static and
    continuous batching served alike, the tokens checked against ``reference``; the points,
    and the fastest continuous one with its tokens/s."""
    from pipetune.plugins.llm.scheduler import serve_stream

    config, requests, engine = t.config, t.requests, t.engine
    points = []
    best: tuple[float, dict[str, Any]] | None = None
    sizes = [b for b in BATCH_SIZES if b <= max(len(requests), BATCH_SIZES[0])]
    for size in sizes:
        static_engine = engine(config.evolve(batching="static", max_batch=size))
        _, static = serve_stream(static_engine, requests)
        cont_engine = engine(config.evolve(batching="continuous", max_batch=size))
        records, cont = serve_stream(cont_engine, requests)
        fidelity = check_same(
            f"continuous batching (batch {size})",
            reference,
            [r.generation for r in records],
            t.floor,
        )
        point = {
            "max_batch": size,
            "engine": "pipetune",
            "static_tokens_per_s": static.tokens_per_s,
            "continuous_tokens_per_s": cont.tokens_per_s,
            "static_p99_ms": static.latency_ms["p99"],
            "continuous_p99_ms": cont.latency_ms["p99"],
            "mean_batch": cont.mean_batch,
            "fidelity": fidelity.value,
        }
        points.append(point)
        if best is None or cont.tokens_per_s > best[0]:
            best = (cont.tokens_per_s, point)
    assert best is not None
    return points, best


def _with_transformers(
    t: GenerateTuning,
    reference: list[Any],
    points: list[dict[str, Any]],
    best: tuple[float, dict[str, Any]],
) -> dict[str, Any]:
    """The chosen point: the scheduler's best, or transformers' own continuous batching at
    its batch size when that is faster (measured on CUDA only, when the installed version
    has it); its point, or why it was not measured, is added to ``points``."""
    from pipetune.plugins.llm.scheduler import serve_stream

    chosen = dict(best[1])
    try:  # transformers' own continuous batching, when the installed version has it
        if t.base.device.type != "cuda":
            raise RuntimeError(
                "measured only on CUDA: on CPU its manager's warm-up and paged-cache set-up "
                "dominate (77 s for 8 requests of a tiny model in our benchmark)"
            )
        tf_engine = t.engine(
            t.config.evolve(
                batching="continuous", max_batch=chosen["max_batch"], engine="transformers"
            )
        )
        records, tf = serve_stream(tf_engine, t.requests)
        fidelity = check_same(
            "transformers continuous batching", reference, [r.generation for r in records], t.floor
        )
        points.append(
            {
                "max_batch": chosen["max_batch"],
                "engine": "transformers",
                "continuous_tokens_per_s": tf.tokens_per_s,
                "continuous_p99_ms": tf.latency_ms["p99"],
                "fidelity": fidelity.value,
            }
        )
        if tf.tokens_per_s > best[0]:
            chosen = dict(points[-1])
    except Exception as exc:  # unavailable or unsuitable here: the plugin's own scheduler
        points.append({"engine": "transformers", "unavailable": f"{type(exc).__name__}: {exc}"})
    return chosen


CHANGE = ChangeType(ID, ContinuousBatchingParams, materialize, tune)
