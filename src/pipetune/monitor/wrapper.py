"""The production monitor: a pipeline wrapper that records latency histograms per stage and
end to end, throughput, errors by stage and exception type, and a sampled arrival trace.

::

    from pipetune.monitor import Monitor

    monitored = Monitor(pipeline, trace_sample=0.05)     # or Monitor.from_recipe(...)
    label = monitored(document)                          # same result as pipeline.run
    monitored.serve_prometheus(port=9464)                # optional: /metrics
    monitored.start_export("monitor.json", every_s=60)   # optional: a file the CLI reads

Why it is cheap: recording is two ``perf_counter_ns`` calls per stage, one ``log10`` and a
list increment; there is no lock. Each thread records into its own counts (a
``threading.local`` shard, registered once per thread), and readers (an export, a
Prometheus scrape) add the shards up. Python ints under the GIL: a reader may see a count
one request stale, never a torn one, and no increment is lost because no two threads ever
write the same counter. The Prometheus collector reads the histograms at scrape time, so
serving requests never touches ``prometheus_client`` (measured against per-request
``Histogram.observe()`` in ``benchmarks/production/monitor_overhead.py``).

The wrapped pipeline is not modified; the monitor calls its stages itself, in order, on the
caller's thread, exactly as :meth:`Pipeline.run` does.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from math import log10 as _log10
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import ConfigError
from pipetune.core.kernel.model import Pipeline, Trace
from pipetune.monitor.export import MonitorExport, write_json_atomic
from pipetune.monitor.histogram import OVERFLOW, PER_DECADE, Histogram, empty_counts

if TYPE_CHECKING:
    from pipetune.core.kernel.results import Recipe

_perf_ns = time.perf_counter_ns

#: Multiplier of the block hash (Knuth's multiplicative hashing): spreads kept blocks
#: evenly without a random generator's state shared between threads.
_HASH = 2654435761


class _Shard:
    """One thread's counts. Only its own thread writes them."""

    __slots__ = ("e2e", "e2e_sum", "failed", "first_ns", "last_ns", "ok", "stage", "stage_sum")

    def __init__(self, stages: int):
        self.e2e = empty_counts()
        self.e2e_sum = 0
        self.stage = [empty_counts() for _ in range(stages)]
        self.stage_sum = [0] * stages
        self.ok = 0
        self.failed = 0
        self.first_ns = 0
        self.last_ns = 0


class Monitor:
    """Wrap ``pipeline`` for production and record what it does.

    Args:
        pipeline: the pipeline to serve (the original, or one returned by
            :func:`pipetune.load_recipe`; see :meth:`from_recipe`).
        trace_sample: the share of requests whose arrival time and input size are recorded
            as a replayable :class:`~pipetune.core.kernel.model.Trace` (0: none). Requests are
            sampled in blocks of ``trace_block`` consecutive requests (each block kept with
            probability ``trace_sample``), so the trace keeps production's real gaps and
            bursts inside each block; between two kept blocks that were not adjacent the
            gap is closed to the median gap inside blocks, so the replay runs at the
            production rate instead of a thinned one.
        trace_block: requests per sampled block (>= 2).
        trace_limit: stop sampling after this many requests (bounded memory).
        seed: chooses which blocks are kept.
        recipe: what the pipeline was built from (recorded in exports).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        trace_sample: float = 0.0,
        trace_block: int = 100,
        trace_limit: int = 100_000,
        seed: int = 0,
        recipe: Mapping[str, Any] | None = None,
    ):
        if not isinstance(pipeline, Pipeline):
            raise ConfigError(
                f"Monitor wraps a pipetune Pipeline, not {type(pipeline).__name__} "
                "(build one with pipetune.Pipeline, or load a recipe with pipetune.load_recipe)"
            )
        if not 0.0 <= float(trace_sample) <= 1.0:
            raise ConfigError(f"trace_sample is a share between 0 and 1, not {trace_sample!r}")
        if int(trace_block) < 2:
            raise ConfigError("trace_block must be >= 2 (gaps are kept inside a block)")
        if int(trace_limit) < 1:
            raise ConfigError("trace_limit must be >= 1")
        self.pipeline = pipeline
        self.recipe = dict(recipe) if recipe is not None else None
        self._stages = tuple(pipeline.stages)
        self._names = pipeline.stage_names
        self._local = threading.local()
        self._shards: list[_Shard] = []
        self._lock = threading.Lock()  # shard registration and error counts only
        self._errors: dict[tuple[str, str], int] = {}
        self._started_wall = time.time()
        self._started_ns = _perf_ns()
        # sampling
        self.trace_sample = float(trace_sample)
        self.trace_block = int(trace_block)
        self.trace_limit = int(trace_limit)
        self._threshold = int(self.trace_sample * 2**32)
        self._seed = int(seed) & 0xFFFFFFFF
        self._sequence = itertools.count()  # next() is atomic in CPython
        self._records: list[tuple[int, int | None, int]] = []
        # periodic export
        self._exporter: threading.Thread | None = None
        self._stop_export = threading.Event()
        self.export_path: Path | None = None
        self.last_export_error: str | None = None
        self._collector_registry: Any = None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_recipe(
        cls,
        pipeline: Pipeline,
        recipe: Recipe | str | Path | Mapping[str, Any],
        *,
        pm: Any = None,
        artifacts_dir: str | Path | None = None,
        **options: Any,
    ) -> Monitor:
        """Apply a saved recipe (:func:`pipetune.load_recipe`) and monitor the result; the
        export records which changes were applied."""
        from pipetune.core.loop.recipes import as_recipe, load_recipe

        loaded = as_recipe(recipe)
        applied = load_recipe(pipeline, loaded, pm=pm, artifacts_dir=artifacts_dir)
        info = {
            "pipeline": loaded.pipeline,
            "changes": [f"{c.proposal}@{c.stage}" for c in loaded.changes],
            "created": loaded.created,
            "source": str(recipe) if isinstance(recipe, str | Path) else None,
        }
        return cls(applied, recipe=info, **options)

    # -- serving ---------------------------------------------------------------------------
    def _shard(self) -> _Shard:
        shard = _Shard(len(self._stages))
        with self._lock:
            self._shards.append(shard)
        self._local.shard = shard
        return shard

    def __call__(self, item: Any) -> Any:
        """Run one request through the pipeline (as ``pipeline.run``) and record it."""
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._shard()
        start = _perf_ns()
        if self._threshold:
            self._sample(start, item)
        value = item
        last = start
        log10 = _log10
        for position, stage in enumerate(self._stages):
            try:
                value = stage(value)
            except BaseException as exc:
                self._failed(shard, position, exc)
                raise
            now = _perf_ns()
            took = now - last
            # Inlined bucket_of(): this is the hot path (see histogram.bucket_of).
            index = int(log10(took) * PER_DECADE) + 1 if took >= 1 else 0
            shard.stage[position][index if index < OVERFLOW else OVERFLOW] += 1
            shard.stage_sum[position] += took
            last = now
        took = last - start
        index = int(log10(took) * PER_DECADE) + 1 if took >= 1 else 0
        shard.e2e[index if index < OVERFLOW else OVERFLOW] += 1
        shard.e2e_sum += took
        shard.ok += 1
        if not shard.first_ns:
            shard.first_ns = start
        shard.last_ns = last
        return value

    run = __call__

    def run_batch(self, items: Sequence[Any]) -> list[Any]:
        """Run a batch through each stage's ``call_batch`` (as ``pipeline.run_batch``).

        Every request in the batch is recorded with the batch's time: that is the latency
        each of them saw; stage histograms count requests too (one batch call of 8 adds 8
        observations of its duration).
        """
        try:
            shard = self._local.shard
        except AttributeError:
            shard = self._shard()
        values = list(items)
        n = len(values)
        if n == 0:
            return []
        start = _perf_ns()
        if self._threshold:
            for item in values:
                self._sample(start, item)
        last = start
        for position, stage in enumerate(self._stages):
            try:
                values = stage.call_batch(values)
            except BaseException as exc:
                self._failed(shard, position, exc, n)
                raise
            now = _perf_ns()
            took = now - last
            index = int(_log10(took) * PER_DECADE) + 1 if took >= 1 else 0
            shard.stage[position][min(index, OVERFLOW)] += n
            shard.stage_sum[position] += took * n
            last = now
        took = last - start
        index = int(_log10(took) * PER_DECADE) + 1 if took >= 1 else 0
        shard.e2e[min(index, OVERFLOW)] += n
        shard.e2e_sum += took * n
        shard.ok += n
        if not shard.first_ns:
            shard.first_ns = start
        shard.last_ns = last
        return values

    def _failed(self, shard: _Shard, position: int, exc: BaseException, n: int = 1) -> None:
        shard.failed += n
        key = (self._names[position], type(exc).__name__)
        with self._lock:  # errors are rare: a lock costs nothing here
            self._errors[key] = self._errors.get(key, 0) + n

    def _sample(self, start: int, item: Any) -> None:
        n = next(self._sequence)
        block = n // self.trace_block
        if ((block * _HASH) ^ self._seed) & 0xFFFFFFFF >= self._threshold:
            return
        if len(self._records) >= self.trace_limit:
            return
        self._records.append((start, _size(item), block))  # list.append is atomic

    # -- reading ---------------------------------------------------------------------------
    def snapshot(self, *, with_trace: bool = True) -> MonitorExport:
        """Everything recorded so far, as an export object (nothing is reset).
        ``with_trace=False`` skips building the trace (a Prometheus scrape)."""
        with self._lock:
            shards = list(self._shards)
            errors = dict(self._errors)
        now_wall = time.time()
        now_ns = _perf_ns()
        latency = Histogram.merged((s.e2e, s.e2e_sum) for s in shards)
        stage_latency = {
            name: Histogram.merged((s.stage[k], s.stage_sum[k]) for s in shards)
            for k, name in enumerate(self._names)
        }
        ok = sum(s.ok for s in shards)
        failed = sum(s.failed for s in shards)
        firsts = [s.first_ns for s in shards if s.first_ns]
        lasts = [s.last_ns for s in shards if s.last_ns]
        active = (max(lasts) - min(firsts)) / 1e9 if firsts and lasts else 0.0
        by_stage: dict[str, dict[str, int]] = {}
        for (stage, kind), count in sorted(errors.items()):
            by_stage.setdefault(stage, {})[kind] = count
        return MonitorExport(
            pipeline=self.pipeline.name,
            stages=self._names,
            latency=latency,
            stage_latency=stage_latency,
            ok=ok,
            failed=failed,
            errors=by_stage,
            started=_iso(self._started_wall),
            exported=_iso(now_wall),
            window_s=(now_ns - self._started_ns) / 1e9,
            active_s=max(active, 0.0),
            trace=self.trace() if with_trace else None,
            trace_sampling={
                "share": self.trace_sample,
                "block": self.trace_block,
                "sampled": len(self._records),
                "limit": self.trace_limit,
            },
            machine=_machine() if with_trace else {},
            recipe=self.recipe,
            pipetune_version=_version(),
        )

    def trace(self) -> Trace | None:
        """The sampled requests as a replayable trace (``None`` before any was sampled).

        Offsets inside a block are the real gaps between arrivals (arrival = when the
        request entered this monitor); consecutive kept blocks keep their real gap; a gap
        left by unsampled blocks is closed to the median gap inside blocks. Sizes are
        recorded when every sampled input has one (see
        :func:`pipetune.core.runtime.observe.input_size`).
        """
        records = sorted(self._records[: self.trace_limit])
        if not records:
            return None
        inside = [
            b[0] - a[0] for a, b in itertools.pairwise(records) if a[2] == b[2] and b[0] >= a[0]
        ]
        filler = sorted(inside)[len(inside) // 2] if inside else 0
        arrivals = [0.0]
        for previous, current in itertools.pairwise(records):
            adjacent = current[2] - previous[2] <= 1
            gap = current[0] - previous[0] if adjacent else filler
            arrivals.append(arrivals[-1] + max(gap, 0) / 1e9)
        sizes = [r[1] for r in records]
        known = all(s is not None for s in sizes)
        return Trace(
            arrivals_s=tuple(arrivals),
            sizes=tuple(int(s) for s in sizes if s is not None) if known else None,
            pipeline=self.pipeline.name,
        )

    def percentiles_ms(self) -> dict[str, float]:
        """End-to-end P50/P95/P99/max/mean so far, in milliseconds."""
        return self.snapshot().latency.percentiles_ms()

    # -- exporting -------------------------------------------------------------------------
    def export(self, path: str | Path | None = None) -> Path:
        """Write the export file (JSON, written atomically) and return its path."""
        target = Path(path) if path is not None else self.export_path
        if target is None:
            raise ConfigError("export(path): give a path (or start_export(path, ...) first)")
        try:
            return write_json_atomic(target, self.snapshot().to_dict())
        except OSError as exc:
            raise ConfigError(f"cannot write the monitor export {target}: {exc}") from None

    def start_export(self, path: str | Path, every_s: float = 60.0) -> None:
        """Export to ``path`` every ``every_s`` seconds from a daemon thread, and once more
        at :meth:`close`. A failed write is kept in ``last_export_error`` (serving goes on)."""
        if every_s <= 0:
            raise ConfigError("every_s must be positive")
        if self._exporter is not None:
            raise ConfigError("periodic export is already running; close() it first")
        self.export_path = Path(path)
        self._stop_export.clear()

        def loop() -> None:
            while not self._stop_export.wait(every_s):
                self._export_quietly()

        self._exporter = threading.Thread(target=loop, name="pipetune-monitor-export", daemon=True)
        self._exporter.start()

    def _export_quietly(self) -> None:
        try:
            self.export()
            self.last_export_error = None
        except Exception as exc:  # never take the service down for a metrics file
            self.last_export_error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Stop the periodic export (writing a last one) and unregister the Prometheus
        collector if :meth:`register_prometheus` added one."""
        if self._exporter is not None:
            self._stop_export.set()
            self._exporter.join(timeout=10)
            self._exporter = None
            self._export_quietly()
        if self._collector_registry is not None:
            registry, collector = self._collector_registry
            registry.unregister(collector)
            self._collector_registry = None

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- Prometheus ------------------------------------------------------------------------
    def prometheus_collector(self, **options: Any) -> Any:
        """A ``prometheus_client`` collector reading this monitor at scrape time (see
        :class:`pipetune.monitor.prometheus.MonitorCollector` for the options)."""
        from pipetune.monitor.prometheus import MonitorCollector

        return MonitorCollector(self, **options)

    def register_prometheus(self, registry: Any = None, **options: Any) -> Any:
        """Register the collector with ``registry`` (default: prometheus_client's global
        ``REGISTRY``); :meth:`close` unregisters it. Returns the collector."""
        from pipetune.monitor.prometheus import default_registry

        registry = registry if registry is not None else default_registry()
        collector = self.prometheus_collector(**options)
        registry.register(collector)
        self._collector_registry = (registry, collector)
        return collector

    def serve_prometheus(
        self, port: int = 0, addr: str = "127.0.0.1", **options: Any
    ) -> tuple[Any, int]:
        """Serve ``/metrics`` over HTTP from a daemon thread, with this monitor's metrics
        in a registry of their own. ``port=0`` picks a free port. Returns ``(server,
        port)``; ``server.shutdown()`` stops it."""
        from pipetune.monitor.prometheus import serve

        return serve(self, port=port, addr=addr, **options)


# -- helpers --------------------------------------------------------------------------------


def _size(item: Any) -> int | None:
    from pipetune.core.runtime.observe import input_size

    try:
        found = input_size(item)
    except Exception:
        return None
    return None if found is None else round(found[1])


def _iso(epoch: float) -> str:
    return _dt.datetime.fromtimestamp(epoch, _dt.UTC).isoformat(timespec="milliseconds")


def _machine() -> dict[str, Any]:
    from pipetune.core.runtime.machine import detect_machine

    try:
        machine = detect_machine()
    except Exception:  # a probe failing must never lose an export
        return {}
    return {"fingerprint": machine.fingerprint, "cpu": machine.cpu, "cores": machine.cores}


def _version() -> str:
    from pipetune import __version__

    return __version__


def monitor(pipeline: Pipeline, **options: Any) -> Monitor:
    """``Monitor(pipeline, **options)``."""
    return Monitor(pipeline, **options)
