"""What the recsys change types share: index artifacts, quality targets, timing and the
end-to-end confirmation.

Each change is split in two: *tune* searches the operating point on the tuning
split and builds the index as an artifact; *materialize* rebuilds the transformed pipeline
from the parameters and the saved index file (``faiss.read_index``), with no search and no
build, and never touches the user's matrix, ranker or model. The change types themselves live
in :mod:`.ann_exact` (ANN + exact re-rank for exact retrieval), :mod:`.ann_two_stage` (ANN
candidates in front of a full-catalog ranker), :mod:`.user_embedding_cache` and
:mod:`.batched_feature_reads`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.context import TuneContext
from pipetune.core.kernel.errors import ConfigError, Rejected
from pipetune.core.kernel.model import Pipeline, Stage
from pipetune.core.kernel.params import ChangeParams
from pipetune.core.kernel.results import Change, Proposal, Tuned
from pipetune.plugins.recsys import ann, ann_build, ann_search, exact_search
from pipetune.plugins.recsys.recognize import Recognized, catalog_of, recognize
from pipetune.plugins.recsys.threads import build_threads

#: Default quality target: the two-stage top-k keeps this share of the full ranking's
#: top-k; ANN retrieval keeps this recall@k against exact retrieval.
DEFAULT_TARGET = 0.95
#: At most this many tuning requests are used (the search cost grows with them).
MAX_TUNE_REQUESTS = 200
#: At most this many tuning queries for ANN in place of exact retrieval, where a query
#: costs one exact search: per-query recall@k spreads widely (a standard deviation of
#: 0.05-0.08 near recall 0.95 is common), and the safety margin shrinks with the square
#: root of the count, so 200 queries would leave a margin as large as the shortfall it
#: guards against.
MAX_EXACT_TUNE_QUERIES = 1_000
#: Requests timed one at a time per operating point.
TIMING_REQUESTS = 60
#: Default user-embedding cache settings.
DEFAULT_TTL_S = 300.0
MAX_CACHE_ENTRIES = 1_000_000


# -- shared helpers -----------------------------------------------------------------------


@dataclass(frozen=True)
class AnnIndexParams(ChangeParams):
    """The parameters both ANN change types store: the saved index, the quality target, the
    tuned search point and the faiss threads (each change type adds its own)."""

    index: dict[str, Any] | None = None
    index_kind: str | None = None
    space: str | None = None
    target: float = DEFAULT_TARGET
    runtime: Any = None
    runtime_param: str | None = None
    k: int | None = None
    metric: str | None = None
    faiss_threads: int = 1
    faiss_batch_threads: int | None = None
    items_digest: str | None = None


def matrix_digest(matrix: np.ndarray) -> str:
    """A content hash of the item matrix (guards a saved index against a changed catalog)."""
    array = np.ascontiguousarray(matrix)
    digest = hashlib.sha256(f"{array.dtype}{array.shape}".encode())
    digest.update(array.data.cast("B"))
    return digest.hexdigest()[:24]


def quality_target(proposal: Proposal, context: TuneContext) -> float:
    """The proposal's target, raised to the fidelity floor when the user asked for more
    (a 1 % accuracy budget means 0.99, not 0.95)."""
    target = float(proposal.params.get("target", DEFAULT_TARGET))
    return max(target, float(context.fidelity_floor))


def safety_margin(per_request: np.ndarray) -> float:
    """How far above the target the tuning split must land so that a held-out split of
    the same size lands above it too: the two means differ by the difference of two
    independent sample means, so two standard errors of that difference, 2·sqrt(2)·SE of
    the per-request mean (a ~2 % chance of falling short), kept between 0.003 and 0.04.
    Requests differ a lot (a user whose ranker favourites sit outside their retrieval
    neighbourhood keeps half of them), so the margin is measured, not fixed."""
    if len(per_request) < 2:
        return 0.04
    stderr = float(np.std(per_request, ddof=1) / math.sqrt(len(per_request)))
    return float(min(0.04, max(0.003, 2.0 * math.sqrt(2.0) * stderr)))


def sample(values: Sequence[Any], limit: int) -> list[Any]:
    values = list(values)
    if len(values) <= limit:
        return values
    picks = np.linspace(0, len(values) - 1, limit).round().astype(int)
    return [values[i] for i in picks]


def index_artifact(
    store: ArtifactStore, matrix: np.ndarray, spec: ann.IndexSpec, log: Callable[[str], None]
) -> tuple[Any, dict[str, Any], str, bool]:
    """Load the index for (matrix, spec, faiss version) from the artifact store, or build and
    save it. Returns (index, build info, relative path, reused)."""
    key = store.key(
        "recsys.ann_index",
        matrix,
        json.dumps(spec.to_dict(), sort_keys=True),
        f"faiss={ann.faiss_version()}",
    )
    path = store.path(key, "index.faiss")
    if path.is_file():
        log(f"recsys: reusing the saved {spec.describe()} index {store.relative(path)}")
        return (
            ann_build.load_index(path),
            ann_build.load_build_info(path),
            store.relative(path),
            True,
        )
    log(f"recsys: building {spec.describe()} over {matrix.shape[0]:,} x {matrix.shape[1]}")
    index, info = ann_build.build_index(matrix, spec, threads=build_threads())
    ann_build.save_index(index, info, path)
    log(f"recsys: built in {info.seconds:.1f} s, {info.index_bytes / 2**20:.1f} MiB")
    return index, info.to_dict(), store.relative(path), False


def load_for_change(
    change: Change, artifacts_dir: Path, matrix: np.ndarray
) -> tuple[Any, ann.IndexSpec]:
    if "index" not in change.artifacts:
        raise ConfigError(f"change {change.proposal} on stage {change.stage!r} has no saved index")
    spec = ann.IndexSpec.from_dict(change.params["index"])
    index = ann_build.load_index(Path(artifacts_dir) / change.artifacts["index"])
    if int(index.ntotal) != matrix.shape[0] or int(index.d) != spec.index_dim:
        raise ConfigError(
            f"stage {change.stage!r}: the saved index holds {index.ntotal:,} x {index.d} vectors "
            f"but the catalog is {matrix.shape[0]:,} x {matrix.shape[1]}"
            + (f" ({spec.index_dim}-d in the index's space)" if spec.space != "native" else "")
            + ": re-run the tune step"
        )
    expected = change.params.get("items_digest")
    if expected and matrix_digest(matrix) != expected:
        raise ConfigError(
            f"stage {change.stage!r}: the item matrix changed since the index was built "
            "(content hash differs): re-run the tune step to rebuild it"
        )
    return index, spec


def searcher_for(
    index: Any, matrix: np.ndarray, spec: ann.IndexSpec, params: dict[str, Any]
) -> ann_search.AnnSearcher:
    return ann_search.AnnSearcher(
        index,
        matrix,
        spec,
        params["runtime"],
        k_prime=params.get("k_prime"),
        threads=params.get("faiss_threads", 1),
        batch_threads=params.get("faiss_batch_threads"),
    )


def saved_searcher(
    change: Change, pipeline: Pipeline, artifacts_dir: Path, role: str, what: str
) -> tuple[Stage, ann_search.AnnSearcher, ann.IndexSpec]:
    """The stage a recipe's change applies to, still recognized as ``role`` (``what`` names
    it in the error when it is not), and a searcher over the change's saved index."""
    stage = pipeline.stage(change.stage)
    rec = recognize(stage)
    if rec is None or rec.role != role or rec.slot is None:
        raise ConfigError(
            f"stage {change.stage!r} is no longer {what}; the recipe does not fit this pipeline"
        )
    matrix = catalog_of(stage, rec.slot)
    index, spec = load_for_change(change, artifacts_dir, matrix)
    return stage, searcher_for(index, matrix, spec, dict(change.params)), spec


def checked_catalog(stage: Stage, rec: Recognized) -> np.ndarray:
    if rec.slot is None:
        raise Rejected(f"stage {stage.name!r}: no item matrix found in its slots")
    matrix = catalog_of(stage, rec.slot)
    exact_search.check_finite(matrix, f"stage {stage.name!r}, slot {rec.slot!r}")
    return matrix


def spec_for(proposal: Proposal, rec: Recognized, matrix: np.ndarray) -> ann.IndexSpec:
    """The index to build: ``index_kind`` in the proposal's params forces a kind; else the
    spec the profile's rule chose (``index``); else the rule, applied now."""
    kind = proposal.params.get("index_kind")
    chosen = proposal.params.get("index")
    if chosen and (kind is None or chosen.get("kind") == kind):
        return ann.IndexSpec.from_dict(chosen)
    choice = ann.choose_index(
        matrix.shape[0], matrix.shape[1], rec.metric or "ip", kind=proposal.params.get("index_kind")
    )
    if choice.spec is None:
        raise Rejected(choice.reason)
    return choice.spec


def time_points(
    points: list[dict[str, Any]],
    make: Callable[[dict[str, Any]], Callable[[Any], Any]],
    inputs: Sequence[Any],
    rounds: int = 3,
) -> None:
    """Time each operating point one input at a time, interleaving the points round by
    round so that a burst of load on a shared machine hits them alike; sets ``point["ms"]``
    to the best round."""
    best = [math.inf] * len(points)
    for _ in range(rounds):
        for position, point in enumerate(points):
            seconds = ann_search.time_one_at_a_time(make(point), inputs, repeats=1)
            best[position] = min(best[position], seconds)
    for point, seconds in zip(points, best, strict=True):
        point["ms"] = 1000 * seconds


def stage_slots(stage: Stage) -> dict[str, Any]:
    return {name: stage.slots[name] for name in stage._fn_slots}  # type: ignore[attr-defined]


# -- shared confirmation --------------------------------------------------------------------------


def confirm(
    proposal: Proposal,
    pipeline: Pipeline,
    tuned: Tuned,
    context: TuneContext,
    target: float,
    materialize: Callable[[Change, Pipeline, Path], Pipeline],
) -> None:
    """Check the tuned change end to end on the tuning split against the original pipeline,
    built by the change type's ``materialize``, through the host's fidelity (the validator
    confirms on the held-out split)."""
    change = Change.from_proposal(proposal, tuned)
    candidate = materialize(change, pipeline, context.artifacts.root)
    fidelity = context.fidelity(context.outputs(candidate))
    if fidelity.value < target:
        raise Rejected(
            f"the tuned change keeps {fidelity.metric} {fidelity.value:.3f} on the "
            f"tuning split, under the target {target:.3f}"
        )
