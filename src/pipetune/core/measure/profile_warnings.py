"""Why a profile may not describe production, in sentences: inputs all of one size, one
concurrency level, percentiles on too few samples, a tiny workload, a timing pass too
short to trust, failed inputs, an overloaded online run or a load generator that fell
behind. The profiler attaches them to every profile it returns."""

from __future__ import annotations

from typing import Any

from pipetune.core.kernel.results import Profile
from pipetune.core.measure.stats import min_samples_for_percentile

#: Fewer inputs than this is a tiny workload.
TINY_WORKLOAD = 30
#: A timing pass shorter than this is dominated by timer noise, caches and GC.
SHORT_TIMING_S = 1.0


def workload_warnings(
    prof: Profile,
    *,
    n_items: int,
    sizes: dict[str, Any] | None,
    levels: int,
    timing_s: float,
) -> list[str]:
    """Why the profile may not describe production, in sentences."""
    found: list[str] = _size_warnings(sizes)
    if levels < 2 and prof.mode != "stream":
        found.append(
            f"only one concurrency level measured: set workload.concurrency (e.g. (1, 2, 4, "
            f"{max(8, 2 * (prof.machine.cores or 1))})) to see where throughput stops scaling"
        )
    for label, q in (("P99", 99), ("P95", 95)):
        need = min_samples_for_percentile(q)
        if prof.samples < need:
            found.append(
                f"{label} rests on {prof.samples} samples; {need} are needed for 10 samples "
                f"beyond it: treat it as indicative (more inputs or repeats)"
            )
            break
    if n_items < TINY_WORKLOAD:
        found.append(
            f"tiny workload: {n_items} distinct inputs (at least {TINY_WORKLOAD} recommended); "
            "caches look better and variance worse than in production"
        )
    if 0 < timing_s < SHORT_TIMING_S:
        found.append(
            f"the timing pass took {timing_s * 1000:.0f} ms: timer noise, caches and garbage "
            "collection weigh heavily; use more inputs or repeats"
        )
    if prof.errors.count:
        found.append(
            f"{prof.errors.count} input(s) failed and were skipped; the figures exclude them "
            f"({', '.join(f'{k}: {v}' for k, v in prof.errors.by_stage.items())})"
        )
    return found + _online_warnings(prof)


def _size_warnings(sizes: dict[str, Any] | None) -> list[str]:
    """Every input of one size: the spread that padding, batching and caching gains depend
    on is missing."""
    if sizes is None or sizes["inputs"] < 2 or sizes["distinct"] != 1:
        return []
    if sizes["measure"] == "elements":  # arrays: fixed-size features are often real
        return [
            f"every input has the same size ({sizes['min']:g} elements): right for "
            "fixed-size features (embeddings), but if real inputs vary (texts, images, "
            "audio), profile with a sample of them: padding, truncation and batching "
            "gains depend on the spread"
        ]
    return [
        f"every input has the same size ({sizes['measure']} {sizes['min']:g}): real "
        "traffic varies, and padding, truncation, batching and caching gains depend on "
        "the spread; profile with a sample of real inputs"
    ]


def _online_warnings(prof: Profile) -> list[str]:
    """An overloaded online run, or a load generator that fell behind its schedule."""
    online = prof.runtime.get("online") if prof.runtime else None
    if not online:
        return []
    found: list[str] = []
    if online.get("overloaded"):
        found.append(online.get("verdict", "overloaded"))
    scheduled = online.get("scheduled_rps") or 0
    submitted = online.get("submitted_rps") or 0
    if scheduled and submitted < 0.9 * scheduled:
        found.append(
            f"the load generator fell behind: {submitted:.1f} req/s submitted vs "
            f"{scheduled:.1f} scheduled (a stage holding the GIL starves it); latencies "
            "count from the scheduled arrival, so they include that lag"
        )
    return found
