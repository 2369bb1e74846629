"""Before/after in production: compare latency distributions from monitor exports and bench
runs (``pipetune compare A B`` when A or B is a monitor export file).

Each side becomes a histogram on the shared buckets of :mod:`pipetune.monitor.histogram`:

* a **monitor export**: end-to-end latency of the successful requests it recorded;
* a **bench run** (a run-store id, ``latest``, optionally ``ID@label`` to pick a stored
  profile — default ``final``, else ``baseline``): the per-input service time of that
  profile's timing pass (each row of ``Profile.stage_ms`` summed), binned on the same
  buckets. That is the time spent inside the pipeline, the quantity the monitor measures
  (queueing in front of the service is outside both).

The statistics, per quantile (P50, P95, P99) and side B against side A:

* **Quantiles from binned data** are interpolated geometrically inside the bucket where the
  cumulative count reaches ``q * n`` (values assumed log-uniform inside a bucket; buckets
  are 10 % wide, so the binning error is at most one bucket and the same for both sides).
* **Confidence interval of the ratio B/A**: a bootstrap over the histogram counts. Each
  resample draws ``n`` observations from each side's bucket distribution (a multinomial on
  the bucket shares, i.e. resampling the requests), recomputes both quantiles and their
  ratio; the interval is the central ``confidence`` share of ``resamples`` ratios.
* **Beyond noise** when that interval excludes 1 *and* the change is at least
  ``min_change`` (default 5 %: about half a bucket; smaller differences between binned
  quantiles are within the histogram's resolution).
* **The whole distribution**: a Mann-Whitney U test from the bucket counts (observations in
  the same bucket count as ties, with the tie-corrected variance), reported as the
  probability that a request from B is slower than one from A (0.5: no shift) and a
  two-sided p-value.

Caveat, stated in every comparison: the bootstrap and the U test treat requests as
independent. Production latencies are correlated in time (bursts, a slow hour, a noisy
neighbour), so on millions of requests an interval can be narrower than the run-to-run
variation of the service; ``min_change`` is the guard against calling such a difference
real. Compare windows of the same traffic shape (the same hours, the same weekday).

Exit codes (``pipetune compare``): 0 — compared, no regression beyond noise; 1 — B is
slower than A beyond noise at P50, P95 or P99; 2 — bad input (a file that is not an
export, an export with no samples, an unknown run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipetune.core.kernel.errors import ConfigError, StoreError
from pipetune.core.measure.stats import min_samples_for_percentile
from pipetune.monitor.export import load_export
from pipetune.monitor.histogram import Histogram, quantiles_ns

#: The quantiles compared.
QUANTILES: tuple[tuple[str, float], ...] = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))
#: Changes smaller than this are within the histograms' resolution (half a 10 % bucket).
DEFAULT_MIN_CHANGE = 0.05


@dataclass(frozen=True)
class Distribution:
    """One side of a comparison: a latency histogram and where it came from."""

    label: str
    kind: str  # "monitor export" or "bench run"
    pipeline: str
    histogram: Histogram
    what: str
    machine: str = ""
    throughput_rps: float | None = None
    stages: Mapping[str, Histogram] = field(default_factory=dict)
    errors: int = 0
    window: str = ""

    @property
    def n(self) -> int:
        return self.histogram.count


@dataclass(frozen=True)
class QuantileDiff:
    """B against A at one quantile. ``ratio`` = B / A (above 1: B is slower)."""

    name: str
    a_ms: float
    b_ms: float
    ratio: float
    ci: tuple[float, float]
    significant: bool
    beyond_noise: bool

    @property
    def diff_ms(self) -> float:
        return self.b_ms - self.a_ms

    @property
    def verdict(self) -> str:
        if not self.beyond_noise:
            if self.significant:
                return "within resolution"
            return "no change beyond noise"
        return "slower" if self.ratio > 1 else "faster"

    def to_dict(self) -> dict[str, Any]:
        return {
            "a_ms": self.a_ms,
            "b_ms": self.b_ms,
            "diff_ms": self.diff_ms,
            "ratio_b_over_a": self.ratio,
            "ci": list(self.ci),
            "significant": self.significant,
            "beyond_noise": self.beyond_noise,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class ProductionComparison:
    a: Distribution
    b: Distribution
    quantiles: tuple[QuantileDiff, ...]
    mann_whitney: Mapping[str, float]
    stages: Mapping[str, tuple[QuantileDiff, ...]]
    confidence: float
    min_change: float
    resamples: int
    notes: tuple[str, ...] = ()

    @property
    def regressions(self) -> list[str]:
        return [
            f"{d.name.upper()} {d.a_ms:.2f} -> {d.b_ms:.2f} ms ({d.ratio:.2f}x, "
            f"{self.confidence:.0%} CI [{d.ci[0]:.2f}, {d.ci[1]:.2f}])"
            for d in self.quantiles
            if d.beyond_noise and d.ratio > 1
        ]

    def to_dict(self) -> dict[str, Any]:
        def side(d: Distribution) -> dict[str, Any]:
            return {
                "label": d.label,
                "kind": d.kind,
                "pipeline": d.pipeline,
                "what": d.what,
                "samples": d.n,
                "errors": d.errors,
                "machine": d.machine,
                "throughput_rps": d.throughput_rps,
                "window": d.window,
                "latency_ms": d.histogram.percentiles_ms(),
            }

        return {
            "a": side(self.a),
            "b": side(self.b),
            "quantiles": {d.name: d.to_dict() for d in self.quantiles},
            "mann_whitney": dict(self.mann_whitney),
            "stages": {
                name: {d.name: d.to_dict() for d in diffs} for name, diffs in self.stages.items()
            },
            "method": {
                "quantiles": "geometric interpolation inside 10 %-wide log buckets",
                "ci": f"bootstrap over histogram counts ({self.resamples} multinomial "
                f"resamples per side), {self.confidence:.0%} percentile interval of B/A",
                "beyond_noise": f"interval excludes 1 and |B/A - 1| >= {self.min_change:.0%}",
                "distribution": "Mann-Whitney U from bucket counts (same bucket = tie)",
            },
            "regressions": self.regressions,
            "notes": list(self.notes),
        }


# -- loading the sides ------------------------------------------------------------------------


def looks_like_export(ref: str) -> bool:
    """True when ``ref`` names an existing file (run ids never do)."""
    try:
        return Path(ref).is_file()
    except OSError:
        return False


def from_export(path: str | Path) -> Distribution:
    export = load_export(path, require_samples=True)
    return Distribution(
        label=str(path),
        kind="monitor export",
        pipeline=export.pipeline,
        histogram=export.latency,
        what="end-to-end latency of successful requests through the monitor",
        machine=str(export.machine.get("fingerprint", "")),
        throughput_rps=export.throughput_rps,
        stages={k: v for k, v in export.stage_latency.items() if v.count},
        errors=export.failed,
        window=f"{export.started} .. {export.exported}",
    )


def from_run(ref: str, store_folder: str | Path | None = None) -> Distribution:
    """A bench run from the run store: ``ID``, ``latest`` or ``ID@label``."""
    from pipetune.core.loop.store import RunStore

    run_ref, _, label = ref.partition("@")
    with RunStore(store_folder) as store:
        run = store.run(run_ref)
        profiles = store.profiles(run.id)
    if not profiles:
        raise StoreError(f"run {run.id} has no stored profile to compare (it may have failed)")
    by_label = dict(profiles)
    if label:
        if label not in by_label:
            raise ConfigError(
                f"run {run.id} has no profile {label!r} (stored: {', '.join(by_label)})"
            )
        chosen = label
    else:
        chosen = "final" if "final" in by_label else "baseline"
        chosen = chosen if chosen in by_label else profiles[-1][0]
    profile = by_label[chosen]
    rows = np.asarray(profile.stage_ms, dtype=float)
    if rows.size == 0:
        raise ConfigError(
            f"run {run.id}, profile {chosen!r}: no per-input timings stored (stage_ms is "
            "empty); nothing to compare"
        )
    names = [s.name for s in profile.stages]
    stages = {
        name: Histogram.from_ms(rows[:, column])
        for column, name in enumerate(names)
        if name != "other" and column < rows.shape[1]
    }
    return Distribution(
        label=f"{run.id}@{chosen}",
        kind="bench run",
        pipeline=run.pipeline,
        histogram=Histogram.from_ms(rows.sum(axis=1)),
        what=f"service time per input, {profile.mode} profile {chosen!r} of an optimize run",
        machine=run.machine_fingerprint,
        throughput_rps=profile.throughput_rps,
        stages=stages,
        errors=profile.errors.count,
        window=profile.created,
    )


def load_side(ref: str, store_folder: str | Path | None = None) -> Distribution:
    return from_export(ref) if looks_like_export(ref) else from_run(ref, store_folder)


# -- the statistics -------------------------------------------------------------------------


def compare_distributions(
    a: Distribution,
    b: Distribution,
    *,
    confidence: float = 0.95,
    min_change: float = DEFAULT_MIN_CHANGE,
    resamples: int = 2000,
    stage_resamples: int = 500,
    seed: int = 0,
) -> ProductionComparison:
    """Compare B against A (see the module docstring for the tests)."""
    if not 0.5 < confidence < 1:
        raise ConfigError("confidence must be between 0.5 and 1")
    if min_change < 0:
        raise ConfigError("min_change must be >= 0")
    for side in (a, b):
        if side.n == 0:
            raise ConfigError(f"{side.label} has no samples to compare")
    rng = np.random.default_rng(seed)
    quantiles = quantile_diffs(
        a.histogram,
        b.histogram,
        confidence=confidence,
        min_change=min_change,
        resamples=resamples,
        rng=rng,
    )
    stages = {
        name: quantile_diffs(
            a.stages[name],
            b.stages[name],
            confidence=confidence,
            min_change=min_change,
            resamples=stage_resamples,
            rng=rng,
        )
        for name in a.stages
        if name in b.stages and a.stages[name].count and b.stages[name].count
    }
    return ProductionComparison(
        a=a,
        b=b,
        quantiles=quantiles,
        mann_whitney=mann_whitney(a.histogram.array(), b.histogram.array()),
        stages=stages,
        confidence=confidence,
        min_change=min_change,
        resamples=resamples,
        notes=tuple(_notes(a, b)),
    )


def quantile_diffs(
    a: Histogram,
    b: Histogram,
    *,
    confidence: float,
    min_change: float,
    resamples: int,
    rng: np.random.Generator,
    qs: Sequence[tuple[str, float]] = QUANTILES,
) -> tuple[QuantileDiff, ...]:
    levels = [q for _, q in qs]
    point_a = quantiles_ns(a.array()[None, :], levels)[0]
    point_b = quantiles_ns(b.array()[None, :], levels)[0]
    boot_a = quantiles_ns(_resample(a, resamples, rng), levels)
    boot_b = quantiles_ns(_resample(b, resamples, rng), levels)
    ratios = boot_b / np.maximum(boot_a, 1e-9)
    tail = (1 - confidence) / 2
    out = []
    for column, (name, _) in enumerate(qs):
        low, high = np.quantile(ratios[:, column], [tail, 1 - tail])
        ratio = float(point_b[column] / point_a[column]) if point_a[column] > 0 else math.inf
        significant = bool(low > 1.0 or high < 1.0)
        out.append(
            QuantileDiff(
                name=name,
                a_ms=float(point_a[column] / 1e6),
                b_ms=float(point_b[column] / 1e6),
                ratio=ratio,
                ci=(float(low), float(high)),
                significant=significant,
                beyond_noise=significant and abs(ratio - 1.0) >= min_change,
            )
        )
    return tuple(out)


def _resample(histogram: Histogram, resamples: int, rng: np.random.Generator) -> np.ndarray:
    counts = histogram.array()
    n = int(counts.sum())
    return rng.multinomial(n, counts / n, size=resamples)


def mann_whitney(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """U test from bucket counts (same bucket = tie), normal approximation with the tie
    correction. ``p_b_slower``: P(a request of B is slower than one of A) + half the ties."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    n_a, n_b = float(a.sum()), float(b.sum())
    below_a = np.cumsum(a) - a  # A observations in lower buckets
    u_b = float(np.sum(b * (below_a + a / 2.0)))
    mean = n_a * n_b / 2.0
    total = n_a + n_b
    ties = a + b
    tie_term = float(np.sum(ties**3 - ties)) / (total * (total - 1)) if total > 1 else 0.0
    variance = n_a * n_b / 12.0 * ((total + 1) - tie_term)
    z = (u_b - mean) / math.sqrt(variance) if variance > 0 else 0.0
    return {
        "u": u_b,
        "z": z,
        "p_value": math.erfc(abs(z) / math.sqrt(2.0)),
        "p_b_slower": u_b / (n_a * n_b) if n_a and n_b else 0.5,
    }


def _notes(a: Distribution, b: Distribution) -> list[str]:
    notes = []
    if a.pipeline != b.pipeline:
        notes.append(
            f"A is pipeline {a.pipeline!r} and B is {b.pipeline!r}: compare the same service "
            "before and after a change"
        )
    if a.kind != b.kind:
        notes.append(
            "a bench run and production traffic differ in more than the code: the machine, "
            "the inputs and the load; read the difference as 'does production match the "
            "bench', not as the effect of a change"
        )
    if a.machine and b.machine and a.machine != b.machine:
        notes.append(f"measured on different machines ({a.machine} vs {b.machine})")
    need = min_samples_for_percentile(99)
    small = [s.label for s in (a, b) if s.n < need]
    if small:
        notes.append(
            f"P99 rests on fewer than 10 tail samples in {', '.join(small)} ({need} requests "
            "needed): its interval is wide"
        )
    notes.append(
        "the intervals treat requests as independent; production latencies are correlated "
        "in time, so differences below the stated minimum change are not called real"
    )
    return notes
