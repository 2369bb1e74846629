"""``vision.reduced_decode``: decode JPEGs at 1/2, 1/4 or 1/8 size with libjpeg's DCT
scaling (never below the model input) instead of decoding full size and resizing. Lossy:
the reduced decode and the resize round differently; the largest factor that keeps
fidelity is chosen on the tuning split.

The decoder is swapped where it is reachable: a ``decoder=`` slot (or the plugin's
block), or, for plain decode code, the module-level names the stage's function calls it
through (``rebind``: ``["Image.open"]``), rebound for that function only
(:class:`~pipetune.plugins.vision.rebind.Rebound`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import PipelineError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.registry import ChangeType
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.vision.changes.common import build_candidate, replace_stage, stage_time
from pipetune.plugins.vision.rebind import Rebound, reachable, resolve
from pipetune.plugins.vision.recognize import wrapped_chain
from pipetune.plugins.vision.reduced_decode import (
    FACTORS,
    as_size,
    drop_in,
    library_decoder,
    replacement_for,
)

ID = "vision.reduced_decode"


@dataclass(frozen=True)
class ReducedDecodeParams(ChangeParams):
    target: tuple[int, ...]
    max_factor: int = 8
    rebind: tuple[str, ...] = ()  # plain code: the decoder names the stage's code calls


def materialize(change: Change, pipeline: Pipeline, artifacts_dir: Path | None = None) -> Pipeline:
    return replace_stage(change, pipeline, _reduced_stage)


def _reduced_stage(stage: Stage, params: dict[str, Any]) -> Stage:
    target = as_size(params["target"])
    if params.get("rebind"):
        return rebound_stage(
            stage, tuple(params["rebind"]), target, int(params.get("max_factor", 8))
        )
    replacement = replacement_for(
        stage.slots.get("decoder"), target, int(params.get("max_factor", 8))
    )
    if replacement is None:
        raise PipelineError(
            f"stage {stage.name!r}: its decoder {stage.slots.get('decoder')!r} has no reduced-"
            "resolution replacement"
        )
    return stage.with_slots(decoder=replacement)


def rebound_stage(
    stage: Stage, names: tuple[str, ...], target: tuple[int, int], max_factor: int
) -> Stage:
    """``stage`` with its function (and ``batch_fn``) run with each of ``names`` rebound
    to the reduced-decode drop-in of the library decoder it names. Raises
    :class:`PipelineError` when a name no longer names a library decoder (a recipe
    applied to changed code)."""
    chain = wrapped_chain(stage.fn)
    fn = _rebind(stage, chain[-1], names, target, max_factor)
    for wrapper in reversed(chain[:-1]):  # our own wrappers (a frame gate) around it
        fn = wrapper.with_inner(fn)
    batch_fn = stage.batch_fn
    if batch_fn is not None:
        batch_fn = _rebind(stage, batch_fn, names, target, max_factor)
    return stage.evolve(fn=fn, batch_fn=batch_fn)


def _rebind(
    stage: Stage, fn: Any, names: tuple[str, ...], target: tuple[int, int], max_factor: int
) -> Rebound:
    problem = reachable(fn, names)
    if problem is not None:
        raise PipelineError(f"stage {stage.name!r}: cannot apply reduced decode: {problem}")
    replacements = {}
    for name in names:
        original = resolve(fn, name)
        canonical = library_decoder(original)
        if canonical is None:
            raise PipelineError(
                f"stage {stage.name!r}: {name} is {original!r}, not a library image decoder: "
                "the code changed since the recipe was made"
            )
        replacements[name] = drop_in(canonical, original, target, max_factor)
    return Rebound(fn, replacements)


def tune(proposal: Proposal, pipeline: Pipeline, context: TuneContext) -> Tuned:
    """Largest DCT factor first (it already never goes below the model input); smaller
    factors only if the largest loses fidelity."""
    tried: list[dict[str, Any]] = []
    start = int(proposal.params.get("max_factor", 8))
    sample = context.stage_inputs(pipeline, proposal.stage)[:4]
    for factor in [f for f in FACTORS if f <= start]:
        candidate = build_candidate(proposal, pipeline, {"max_factor": factor}, materialize)
        fidelity = context.fidelity(context.outputs(candidate), proposal.fidelity_kind)
        tried.append({"max_factor": factor, "fidelity": fidelity.value, "metric": fidelity.metric})
        context.log(f"reduced decode 1/{factor}: {fidelity.metric} {fidelity.value:.4f}")
        if fidelity.passed:
            base = stage_time(pipeline, proposal.stage, sample)
            fast = stage_time(candidate, proposal.stage, sample)
            return Tuned(
                params={"max_factor": factor},
                notes={
                    "tried": tried,
                    "stage_ms_full": base * 1000 / max(len(sample), 1),
                    "stage_ms_reduced": fast * 1000 / max(len(sample), 1),
                },
                est_stage_speedup=base / fast if fast > 0 else None,
            )
    raise Rejected(
        "reduced-resolution decode lost fidelity at every factor: "
        + ", ".join(f"1/{t['max_factor']}: {t['fidelity']:.4f}" for t in tried)
    )


CHANGE = ChangeType(ID, ReducedDecodeParams, materialize, tune, lossy=True)
