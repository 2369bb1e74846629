"""A per-stage thread plan, put in force on a copy of a pipeline.

A plan gives each stage it names its own settings: ``{"classify": {"threads": 1,
"spinning": False}}``. How each library takes them:

* **around each call** — torch's intra-op pool, the native BLAS/OpenMP pools threadpoolctl
  sees, and plugin pools that allow it (faiss): the stage is wrapped by
  :func:`pipetune.core.runtime.threads.with_stage_threads`, which sets them when the stage
  is called and restores them after;
* **per session** — the sessions in the stage's slots are rebuilt with the count: an ONNX
  Runtime session (``intra_op_num_threads``; with ``spinning=False`` its idle pool threads
  sleep instead of spinning, ``session.intra_op.allow_spinning=0``), this plugin's
  OpenVINO stand-ins (``INFERENCE_NUM_THREADS``; ``spinning=False`` turns CPU pinning off),
  and the compiled stand-ins of a torch module backed by either.

A session held in a slot the stage function does not take (captured in a closure) cannot
be rebuilt: its stage still gets the per-call settings. The user's objects are never
changed: rebuilt sessions are new objects in a copy of the stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipetune.core.kernel.errors import PipelineError
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.runtime.threads import with_stage_threads

#: ``(id of the original session, threads, spinning)`` -> rebuilt session, within one tune.
SessionCache = dict[tuple[int, int, Any], Any]


def ladder(cores: int) -> list[int]:
    """The counts a plan tries: every count from 1 to ``cores`` up to 8 cores, then a
    ladder (1, 2, 3, 4, 6, 8, 12, 16...) ending at ``cores``."""
    cores = max(1, int(cores))
    if cores <= 8:
        return list(range(1, cores + 1))
    counts, step = {1, 2, 3, 4, 6, 8}, 8
    while step < cores:
        counts |= {step + step // 2, step * 2}
        step *= 2
    return sorted({n for n in counts if n < cores} | {cores})


def settings_for(threads: int, spinning: bool | None) -> dict[str, Any]:
    """One stage's plan entry."""
    entry: dict[str, Any] = {"threads": int(threads)}
    if spinning is not None:
        entry["spinning"] = bool(spinning)
    return entry


def apply_plan(
    pipeline: Pipeline,
    plan: Mapping[str, Mapping[str, Any]],
    *,
    cache: SessionCache | None = None,
) -> Pipeline:
    """A copy of ``pipeline`` with every stage ``plan`` names running under its entry."""
    cache = {} if cache is None else cache
    for name, entry in plan.items():
        if name not in pipeline.stage_names:
            raise PipelineError(
                f"the thread plan names stage {name!r}, which pipeline {pipeline.name!r} "
                f"does not have (stages: {', '.join(pipeline.stage_names)})"
            )
        stage = pipeline.stage(name)
        threads, spinning = int(entry["threads"]), entry.get("spinning")
        stage = with_sessions(stage, threads, spinning, cache)
        pipeline = pipeline.replace(
            name, with_stage_threads(stage, settings_for(threads, spinning))
        )
    return pipeline


def with_sessions(stage: Stage, threads: int, spinning: bool | None, cache: SessionCache) -> Stage:
    """``stage`` with the sessions in its injected slots rebuilt for ``threads``."""
    rebuilt = {}
    for slot, value in stage.slots.items():
        if not stage.injects(slot):
            continue
        key = (id(value), threads, spinning)
        if key not in cache:
            cache[key] = session_with_threads(value, threads, spinning)
        if cache[key] is not value:
            rebuilt[slot] = cache[key]
    return stage.with_slots(**rebuilt) if rebuilt else stage


def session_with_threads(value: Any, threads: int, spinning: bool | None) -> Any:
    """``value`` rebuilt to run on ``threads`` threads when it is a session this plugin
    can rebuild; ``value`` itself otherwise."""
    import sys

    from pipetune.plugins.hardware.onnx_models import OpenVINOSession
    from pipetune.plugins.hardware.threads import ThreadPinned
    from pipetune.plugins.hardware.wrappers import CompiledModel

    ort = sys.modules.get("onnxruntime")
    if ort is not None and isinstance(value, ort.InferenceSession):
        return _onnxruntime_session(value, threads, spinning)
    if isinstance(value, OpenVINOSession):
        return OpenVINOSession(value.path, threads=threads, hint=value.hint, pinning=spinning)
    if isinstance(value, CompiledModel) and value.backend == "onnxruntime":
        return _compiled_onnxruntime(value, threads, spinning)
    if isinstance(value, CompiledModel) and value.backend == "openvino":
        return _compiled_openvino(value, threads, spinning)
    if isinstance(value, ThreadPinned):  # a module pinned by an older hardware.threads
        return ThreadPinned(value.source, threads)
    return value


def session_threads(value: Any) -> dict[str, Any] | None:
    """The thread settings of a session this plugin can rebuild (``None`` for anything
    else): ``{"backend": "onnxruntime", "threads": 2, "spinning": True}``."""
    import sys

    from pipetune.plugins.hardware.onnx_models import OpenVINOSession
    from pipetune.plugins.hardware.wrappers import CompiledModel

    ort = sys.modules.get("onnxruntime")
    handle = value.handle if isinstance(value, CompiledModel) else value
    if ort is not None and isinstance(handle, ort.InferenceSession):
        from pipetune.plugins.hardware.backends.onnxruntime import spinning_of

        options = handle.get_session_options()
        return {
            "backend": "onnxruntime",
            "threads": int(options.intra_op_num_threads),
            "spinning": spinning_of(options),
        }
    if isinstance(value, OpenVINOSession) or (
        isinstance(value, CompiledModel) and value.backend == "openvino"
    ):
        return {"backend": "openvino", "threads": value.details.get("threads")}
    return None


# -- rebuilding ---------------------------------------------------------------------------


def _model_source(session: Any) -> Any:
    source = getattr(session, "_model_path", None) or getattr(session, "_model_bytes", None)
    if not source:
        raise PipelineError(
            "the thread plan cannot rebuild an ONNX Runtime session whose model it cannot "
            "read (neither a path nor bytes)"
        )
    return source


def _onnxruntime_session(session: Any, threads: int, spinning: bool | None) -> Any:
    from pipetune.plugins.hardware.backends.onnxruntime import make_session

    options = session.get_session_options()
    providers = session.get_providers()
    return make_session(
        _model_source(session),
        threads,
        max(1, int(options.inter_op_num_threads or 1)),
        providers[0] if providers else "CPUExecutionProvider",
        spinning=spinning,
        base=options,
    )


def _compiled_onnxruntime(value: Any, threads: int, spinning: bool | None) -> Any:
    session = _onnxruntime_session(value.handle, threads, spinning)
    names = [i.name for i in session.get_inputs()]

    def run(feeds: list[Any]) -> list[Any]:
        return session.run(None, dict(zip(names, feeds, strict=True)))

    details = {**value.details, "intra_op_threads": threads}
    if spinning is not None:
        details["spinning"] = bool(spinning)
    return value.with_runtime(run, session, details)


def _compiled_openvino(value: Any, threads: int, spinning: bool | None) -> Any:
    from pipetune.plugins.hardware.backends.openvino import compile_model, request_per_thread

    path = value.details.get("model_path")
    if not path:
        raise PipelineError("the thread plan cannot recompile an OpenVINO model without its path")
    compiled, details = compile_model(
        path,
        value.precision,
        value.details.get("device", "CPU"),
        str(value.details.get("performance_hint") or "LATENCY"),
        threads,
        pinning=spinning,
    )
    run = request_per_thread(compiled, list(value.signature.input_names))
    return value.with_runtime(run, compiled, {**value.details, **details})
