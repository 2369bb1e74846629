"""Assertions about proposals, applying them, and not mutating the user's objects."""

from __future__ import annotations

import contextlib
import hashlib
import pickle
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import DuplicateError
from pipetune.core.kernel.model import Pipeline, Requirements, Stage, Workload
from pipetune.core.kernel.results import Change, Profile, Proposal

if TYPE_CHECKING:
    from pipetune.core.kernel.manager import PipetunePluginManager

_EFFORTS = ("minutes", "hours", "days", "weeks")
_RISKS = ("none", "low", "medium", "high")


def quick_profile(pm: PipetunePluginManager, pipeline: Pipeline, workload: Workload) -> Profile:
    """Profile ``pipeline`` with ``pm``'s plugins (their facts included), as the CLI does."""
    from pipetune.core.measure.profiler import profile

    return profile(pipeline, workload, pm=pm)


def collect_proposals(
    pm: PipetunePluginManager,
    pipeline: Pipeline,
    workload: Workload | None = None,
    *,
    profile: Profile | None = None,
    requirements: Requirements | None = None,
    validate: bool = True,
) -> list[Proposal]:
    """Every plugin's proposals for ``pipeline``, profiled on ``workload`` unless a
    ``profile`` (see :func:`~pipetune.testing.make_profile`) is given.

    With ``validate``, each proposal is checked against the contract
    (:func:`check_proposal`) and duplicate ids for one stage fail, naming both plugins.
    """
    if profile is None:
        if workload is None:
            raise ValueError("collect_proposals needs a workload or a profile")
        profile = quick_profile(pm, pipeline, workload)
    requirements = requirements or Requirements()
    proposals: list[Proposal] = []
    owners: dict[str, str] = {}
    for plugin, values in pm.call_each(
        "propose_changes", pipeline=pipeline, profile=profile, requirements=requirements
    ):
        for proposal in values:
            if validate:
                check_proposal(proposal, pipeline, plugin=plugin)
                key = proposal.key
                if key in owners:
                    raise DuplicateError(
                        f"proposal {key!r} is proposed by both {owners[key]!r} and {plugin!r}"
                    )
                owners[key] = plugin
            proposals.append(proposal)
    return proposals


def check_proposal(proposal: Any, pipeline: Pipeline, *, plugin: str | None = None) -> None:
    """Raise ``AssertionError`` listing every way ``proposal`` breaks the contract."""
    if not isinstance(proposal, Proposal):
        raise AssertionError(f"propose_changes returned {type(proposal).__name__}, not a Proposal")
    problems = [
        *_naming_problems(proposal, plugin),
        *_field_problems(proposal, pipeline),
        *_round_trip_problems(proposal),
    ]
    if problems:
        raise AssertionError(f"proposal {proposal.id!r}: " + "; ".join(problems))


def _naming_problems(proposal: Proposal, plugin: str | None) -> list[str]:
    """How the id and plugin name break '<plugin>.<change>' or disagree with the caller."""
    problems = []
    prefix, dot, change = proposal.id.partition(".")
    if not dot or not prefix or not change:
        problems.append(f"id {proposal.id!r} is not '<plugin>.<change>'")
    if plugin is not None and proposal.plugin != plugin:
        problems.append(f"plugin is {proposal.plugin!r} but it came from plugin {plugin!r}")
    if dot and prefix != proposal.plugin:
        problems.append(f"id {proposal.id!r} does not start with its plugin {proposal.plugin!r}")
    return problems


def _field_problems(proposal: Proposal, pipeline: Pipeline) -> list[str]:
    """Fields out of their allowed values: stage, title, speedup, effort, risk, status."""
    problems = []
    if proposal.stage not in pipeline.stage_names:
        problems.append(
            f"stage {proposal.stage!r} is not in the pipeline ({', '.join(pipeline.stage_names)})"
        )
    if not proposal.title:
        problems.append("no title")
    if not proposal.est_stage_speedup > 0:
        problems.append(f"est_stage_speedup must be > 0, got {proposal.est_stage_speedup!r}")
    if proposal.effort not in _EFFORTS:
        problems.append(f"effort {proposal.effort!r} is not one of {', '.join(_EFFORTS)}")
    if proposal.accuracy_risk not in _RISKS:
        problems.append(f"accuracy_risk {proposal.accuracy_risk!r} not in {', '.join(_RISKS)}")
    if proposal.status not in ("proposed", "unavailable"):
        problems.append(f"status {proposal.status!r} is not 'proposed' or 'unavailable'")
    if proposal.status == "unavailable" and not proposal.reason:
        problems.append("unavailable without a reason")
    return problems


def _round_trip_problems(proposal: Proposal) -> list[str]:
    """Whether the proposal survives to_dict/from_dict, as a stored report needs."""
    try:
        Proposal.from_dict(proposal.to_dict())
    except Exception as exc:
        return [f"does not round-trip through JSON: {exc}"]
    return []


def assert_proposes(
    pm: PipetunePluginManager,
    pipeline: Pipeline,
    workload: Workload | None = None,
    *,
    id: str,
    stage: str | None = None,
    status: str | None = None,
    profile: Profile | None = None,
    requirements: Requirements | None = None,
) -> Proposal:
    """Assert that some plugin proposes ``id`` (for ``stage``, with ``status``, when
    given); return the proposal for further checks. The failure message lists what was
    proposed instead and any plugin that raised."""
    proposals = collect_proposals(
        pm, pipeline, workload, profile=profile, requirements=requirements
    )
    matches = [
        p
        for p in proposals
        if p.id == id
        and (stage is None or p.stage == stage)
        and (status is None or p.status == status)
    ]
    if not matches:
        want = id + (f" for stage {stage!r}" if stage else "") + (f" ({status})" if status else "")
        raise AssertionError(f"no proposal {want}; {_what_was_proposed(pm, proposals)}")
    if len(matches) > 1:
        stages = ", ".join(p.stage for p in matches)
        raise AssertionError(f"{id} is proposed for several stages ({stages}): pass stage=")
    return matches[0]


def assert_no_proposal(
    pm: PipetunePluginManager,
    pipeline: Pipeline,
    workload: Workload | None = None,
    *,
    id: str | None = None,
    plugin: str | None = None,
    profile: Profile | None = None,
    requirements: Requirements | None = None,
) -> None:
    """Assert that ``id`` is not proposed (or nothing from ``plugin``; or nothing at all
    when neither is given): the near-miss that must not fire."""
    proposals = collect_proposals(
        pm, pipeline, workload, profile=profile, requirements=requirements
    )
    found = [
        p
        for p in proposals
        if (id is None or p.id == id) and (plugin is None or p.plugin == plugin)
    ]
    if found:
        listed = ", ".join(f"{p.id}@{p.stage}" for p in found)
        raise AssertionError(f"expected no proposal, got: {listed}")


def _what_was_proposed(pm: PipetunePluginManager, proposals: Sequence[Proposal]) -> str:
    listed = ", ".join(f"{p.id}@{p.stage} ({p.status})" for p in proposals) or "nothing"
    text = f"proposed: {listed}"
    if pm.hook_failures:
        text += "; plugin errors: " + "; ".join(
            f"{f.plugin}.{f.hook}: {f.error}" for f in pm.hook_failures
        )
    return text


def apply_proposal(
    pm: PipetunePluginManager,
    proposal: Proposal,
    pipeline: Pipeline,
    workload: Workload,
    artifacts_dir: str | Path,
    *,
    requirements: Requirements | None = None,
) -> tuple[Pipeline, Change]:
    """Tune and materialize ``proposal`` through the change type registered for its id
    (or the owner's ``tune_proposal``/``materialize_change``), as the loop does, without
    validating speed. Returns the new pipeline and the
    :class:`~pipetune.core.kernel.results.Change` a recipe would store.

    Checks that the owner returned a new pipeline and left ``pipeline``'s objects alone.
    """
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext

    requirements = requirements or Requirements()
    artifacts_dir = Path(artifacts_dir)
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    with assert_unchanged(pipeline):
        context = TuneContext(pm, pipeline, workload, requirements, ArtifactStore(artifacts_dir))
        tuned = pm.tune(proposal, pipeline, context)
        change = pm.make_change(proposal, tuned)
        new = pm.materialize(change, pipeline, artifacts_dir)
    if not isinstance(new, Pipeline):
        raise AssertionError(
            f"materializing {proposal.id} ({proposal.plugin!r}) returned {type(new).__name__}, "
            "not a Pipeline"
        )
    if new is pipeline:
        raise AssertionError(f"materializing {proposal.id} returned the original pipeline object")
    return new, change


# -- digests -------------------------------------------------------------------------------


def digest(value: Any) -> str:
    """A content hash of ``value``: pipelines and stages by their slots, numpy arrays and
    torch modules/tensors by their bytes, containers recursively. Equal digests before and
    after an operation mean it did not mutate the object."""
    hasher = hashlib.sha256()
    _feed(hasher, value, set())
    return hasher.hexdigest()


@contextlib.contextmanager
def assert_unchanged(*values: Any) -> Iterator[None]:
    """Fail if any of ``values`` changes inside the block (by :func:`digest`)."""
    before = [digest(value) for value in values]
    yield
    after = [digest(value) for value in values]
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    if changed:
        names = ", ".join(_label(values[i]) for i in changed)
        raise AssertionError(f"mutated: {names}")


def _label(value: Any) -> str:
    name = getattr(value, "name", None)
    return f"{type(value).__name__} {name!r}" if name else type(value).__name__


def _feed(hasher: Any, value: Any, seen: set[int]) -> None:
    """Feed ``value``'s type and content into ``hasher``, each object once (cycles marked)."""
    hasher.update(type(value).__qualname__.encode())
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        hasher.update(repr(value).encode())
        return
    if id(value) in seen:
        hasher.update(b"<cycle>")
        return
    seen.add(id(value))
    if not any(feed(hasher, value, seen) for feed in _FEEDS):
        _feed_pickled(hasher, value)


def _feed_pipeline(hasher: Any, value: Any, seen: set[int]) -> bool:
    """Feed a pipeline by its stages, a stage by name, function and slots; else False."""
    if isinstance(value, Pipeline):
        for stage in value.stages:
            _feed(hasher, stage, seen)
        return True
    if isinstance(value, Stage):
        hasher.update(value.name.encode())
        hasher.update(repr(value.fn).encode())
        _feed(hasher, dict(value.slots), seen)
        return True
    return False


def _feed_array(hasher: Any, value: Any, seen: set[int]) -> bool:
    """Feed a numpy array by shape, dtype and bytes, or a torch object; else False."""
    module = type(value).__module__.split(".")[0]
    if module == "numpy" and hasattr(value, "tobytes"):
        hasher.update(repr((value.shape, str(value.dtype))).encode())
        hasher.update(value.tobytes())
        return True
    return module == "torch" and _feed_torch(hasher, value, seen)


def _feed_torch(hasher: Any, value: Any, seen: set[int]) -> bool:
    """Feed a torch module by its state dict, a tensor by shape, dtype and bytes; else False."""
    if hasattr(value, "state_dict"):
        for key, tensor in value.state_dict().items():
            hasher.update(key.encode())
            _feed(hasher, tensor, seen)
        return True
    if hasattr(value, "detach"):
        array = value.detach().cpu()
        hasher.update(repr((tuple(array.shape), str(array.dtype))).encode())
        hasher.update(array.contiguous().view(-1).view(dtype=_byte_dtype()).numpy().tobytes())
        return True
    return False


def _feed_container(hasher: Any, value: Any, seen: set[int]) -> bool:
    """Feed a mapping or a sequence or set item by item (mappings and sets sorted); else False."""
    if isinstance(value, Mapping):
        for key in sorted(value, key=repr):
            _feed(hasher, key, seen)
            _feed(hasher, value[key], seen)
        return True
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=repr) if isinstance(value, set | frozenset) else value
        for item in items:
            _feed(hasher, item, seen)
        return True
    return False


def _feed_named(hasher: Any, value: Any, seen: set[int]) -> bool:
    """Feed a function, class or module by its name, not its code; else False."""
    if isinstance(value, types.FunctionType | types.BuiltinFunctionType | types.MethodType):
        hasher.update(f"{getattr(value, '__module__', '')}.{value.__qualname__}".encode())
        return True
    if isinstance(value, type | types.ModuleType):
        hasher.update(getattr(value, "__name__", "").encode())
        return True
    return False


def _feed_attributes(hasher: Any, value: Any, seen: set[int]) -> bool:
    """Feed any other object with a ``__dict__`` by its attributes; else False."""
    if hasattr(value, "__dict__"):
        _feed(hasher, vars(value), seen)
        return True
    return False


def _feed_pickled(hasher: Any, value: Any) -> None:
    """Feed what is left by its pickle, or its repr where it cannot be pickled."""
    try:
        hasher.update(pickle.dumps(value))
    except Exception:
        hasher.update(repr(value).encode())


# Tried in order by _feed: the first that recognizes a value feeds it.
_FEEDS = (_feed_pipeline, _feed_array, _feed_container, _feed_named, _feed_attributes)


def _byte_dtype() -> Any:
    import torch

    return torch.uint8
