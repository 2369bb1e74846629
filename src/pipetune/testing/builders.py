"""Small pipelines, workloads and profiles for tests.

The data is generated deterministically (seeded) and varied on purpose: texts of different
lengths, vectors with structure. A workload where every input is the same size hides the
effects plugins look for (padding waste, length-dependent cost).
"""

from __future__ import annotations

import functools
import inspect
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from pipetune.core.kernel.model import Pipeline, Stage, Workload, accepted_slots
from pipetune.core.kernel.results import Profile
from pipetune.core.measure.profile_summary import summarize
from pipetune.core.runtime.result import RunResult

_TEXT = (
    "the model returns a ranked list of items for each query while the tokenizer splits "
    "long documents into pieces that the encoder reads one batch at a time and latency "
    "grows with sequence length so padding every input to the longest wastes compute "
    "retrieval over a large catalog is exhaustive unless an index narrows the candidates "
    "images arrive as large jpeg files and are decoded at full resolution before resizing"
)
_WORDS = tuple(_TEXT.split())


def make_stage(
    name: str = "stage",
    fn: Callable[..., Any] | None = None,
    *,
    kind: str = "other",
    slots: Mapping[str, Any] | None = None,
    batch_fn: Callable[..., Sequence[Any]] | None = None,
    batchable: bool = False,
    cost_ms: float = 0.0,
    fail_on: Callable[[Any], bool] | None = None,
    output_kind: str | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Stage:
    """A stage for tests.

    Args:
        fn: the function (default: identity). It receives the slots it names.
        cost_ms: sleep this long per call (per input for ``batch_fn``), to give the stage a
            measurable share of time.
        fail_on: raise ``ValueError`` on inputs for which this returns True.
        batchable: give the stage a ``batch_fn`` mapping ``fn`` over the batch, with
            ``cost_ms`` paid once per batch (what real batching buys).
    """
    inner = fn or _identity
    slot_names = tuple(slots or {})
    takes = accepted_slots(inner, dict.fromkeys(slot_names))
    run, run_batch = _paced_calls(name, inner, cost_ms, fail_on)
    _present_as(inner, takes, run, run_batch)
    if cost_ms == 0 and fail_on is None and fn is not None:
        run = fn  # nothing to add: the stage runs the user's function itself

    if batch_fn is None and batchable:
        batch_fn = run_batch
    return Stage(
        name,
        run,
        kind=kind,
        slots=dict(slots or {}),
        batch_fn=batch_fn,
        output_kind=output_kind,
        meta=dict(meta or {}),
    )


def _paced_calls(
    name: str,
    inner: Callable[..., Any],
    cost_ms: float,
    fail_on: Callable[[Any], bool] | None,
) -> tuple[Callable[..., Any], Callable[..., list[Any]]]:
    """``inner`` per item and mapped over a batch, with the test's cost and failures added
    (the batch pays ``cost_ms`` once, what real batching buys)."""

    def run(item: Any, /, **given: Any) -> Any:
        if fail_on is not None and fail_on(item):
            raise ValueError(f"{name} cannot handle {item!r}")
        if cost_ms:
            time.sleep(cost_ms / 1000.0)
        return inner(item, **given)

    def run_batch(items: Sequence[Any], /, **given: Any) -> list[Any]:
        if cost_ms:
            time.sleep(cost_ms / 1000.0)
        outputs = []
        for item in items:
            if fail_on is not None and fail_on(item):
                raise ValueError(f"{name} cannot handle {item!r}")
            outputs.append(inner(item, **given))
        return outputs

    return run, run_batch


def _present_as(inner: Callable[..., Any], takes: Sequence[str], *wrappers: Any) -> None:
    """Make ``wrappers`` look like ``inner`` to the tools that inspect stages.

    The wrappers take exactly the slots ``fn`` takes, so ``Stage.injects`` answers for
    the user's function, and ``__wrapped__`` leads source analysis (inspect.getsource,
    inspect.unwrap) to it rather than to the wrapper.
    """
    for wrapper in wrappers:
        functools.update_wrapper(wrapper, inner)
        wrapper.__signature__ = _signature_with(takes)


def make_pipeline(
    *stages: Stage | Callable[..., Any] | str,
    name: str = "pipeline",
    output_kind: str = "any",
) -> Pipeline:
    """A pipeline from stages, plain functions (named after the function) or names
    (identity stages). With no stages: ``prepare`` -> ``model`` -> ``postprocess``."""
    if not stages:
        stages = (
            make_stage("prepare", kind="preprocess"),
            make_stage("model", kind="inference"),
            make_stage("postprocess", kind="postprocess"),
        )
    built = []
    for stage in stages:
        if isinstance(stage, Stage):
            built.append(stage)
        elif isinstance(stage, str):
            built.append(make_stage(stage))
        elif callable(stage):
            built.append(Stage(getattr(stage, "__name__", f"stage{len(built)}"), stage))
        else:
            raise TypeError(f"make_pipeline: {stage!r} is not a Stage, a function or a name")
    return Pipeline(name, tuple(built), output_kind=output_kind)


def make_workload(
    items: Sequence[Any] | None = None,
    *,
    n: int = 24,
    kind: str = "text",
    labels: Sequence[Any] | bool | None = None,
    seed: int = 0,
    warmup: int = 0,
    repeats: int = 1,
    **options: Any,
) -> Workload:
    """A small workload: ``items`` as given, or ``n`` generated inputs of ``kind``.

    Kinds: ``text`` (sentences of 3 to 60 words), ``int`` (0..n-1), ``vector`` (float32
    rows of length 32, clustered), ``image`` (uint8 arrays of varied sizes). ``labels=True``
    derives a deterministic label per input (text: long or short; int: parity; vector:
    cluster). Defaults favour fast tests: no warm-up, one measured pass.
    """
    rng = random.Random(seed)
    derived: list[Any] | None = None
    if items is None:
        if kind == "text":
            lengths = [rng.choice((3, 5, 8, 12, 20, 35, 60)) for _ in range(n)]
            items = [" ".join(rng.choice(_WORDS) for _ in range(k)) for k in lengths]
            derived = ["long" if k >= 12 else "short" for k in lengths]
        elif kind == "int":
            items = list(range(n))
            derived = [i % 2 for i in range(n)]
        elif kind == "vector":
            np_rng = np.random.default_rng(seed)
            centres = np_rng.normal(size=(4, 32)).astype(np.float32)
            clusters = np_rng.integers(0, 4, size=n)
            noise = 0.3 * np_rng.normal(size=(n, 32))
            items = list((centres[clusters] + noise).astype(np.float32))
            derived = [int(c) for c in clusters]
        elif kind == "image":
            np_rng = np.random.default_rng(seed)
            sizes = [(int(h), int(w)) for h, w in np_rng.integers(32, 129, size=(n, 2))]
            items = [np_rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes]
            derived = [int(h * w > 64 * 64) for h, w in sizes]
        else:
            raise ValueError(f"make_workload: unknown kind {kind!r} (text, int, vector, image)")
    if labels is True:
        if derived is None:
            raise ValueError("make_workload: labels=True needs generated items; pass labels")
        labels = derived
    elif labels is False:
        labels = None
    return Workload(
        items=tuple(items),
        labels=tuple(labels) if labels is not None else None,
        seed=seed,
        warmup=warmup,
        repeats=repeats,
        **options,
    )


def make_profile(
    pipeline: Pipeline,
    stage_ms: Mapping[str, float] | None = None,
    *,
    samples: int = 200,
    other_ms: float = 0.05,
    jitter: float = 0.1,
    facts: Mapping[str, Mapping[str, Any]] | None = None,
    workload: Workload | None = None,
    seed: int = 0,
) -> Profile:
    """A synthetic :class:`Profile` with chosen per-item stage times, built by the real
    profiler's summarizer: test ``propose_changes`` against "stage X takes 80 % of the
    time" without sleeping through a real run.

    ``stage_ms`` maps stage names to mean milliseconds per input (others get 0.1 ms);
    each sample varies by ``±jitter`` (relative), deterministically.
    """
    stage_ms = dict(stage_ms or {})
    unknown = sorted(set(stage_ms) - set(pipeline.stage_names))
    if unknown:
        raise ValueError(f"make_profile: no stage {', '.join(unknown)} in {pipeline.name!r}")
    rng = np.random.default_rng(seed)
    means = np.array([stage_ms.get(name, 0.1) for name in pipeline.stage_names] + [other_ms])
    factors = 1 + jitter * (2 * rng.random((samples, len(means))) - 1)
    stage_s = means[None, :] * factors / 1000.0
    latency_s = stage_s.sum(axis=1)
    run = RunResult(
        outputs=[None] * samples,
        ok=[True] * samples,
        latency_s=latency_s,
        stage_s=stage_s,
        wall_s=float(latency_s.sum()),
        stage_names=pipeline.stage_names,
        cpu_s=stage_s[:, :-1].sum(axis=0),
    )
    workload = workload or Workload(items=tuple(range(samples)), warmup=0, repeats=1)
    profile = summarize(pipeline, workload, [run])
    return profile.evolve(facts={k: dict(v) for k, v in (facts or {}).items()})


def _identity(item: Any) -> Any:
    return item


def _signature_with(slot_names: Sequence[str]) -> inspect.Signature:
    params = [inspect.Parameter("item", inspect.Parameter.POSITIONAL_ONLY)]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY) for n in slot_names]
    return inspect.Signature(params)
