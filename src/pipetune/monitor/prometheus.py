"""Prometheus exposition of a :class:`~pipetune.monitor.wrapper.Monitor` (optional extra
``monitor``: ``pip install "pipetune[monitor]"``).

A custom collector reads the monitor's histograms when Prometheus scrapes; serving a
request never calls into ``prometheus_client``. Metrics (``pipetune`` is the default
namespace):

=====================================  =========  ==========================================
metric                                 type       labels
=====================================  =========  ==========================================
``pipetune_request_latency_seconds``   histogram  ``pipeline``
``pipetune_stage_latency_seconds``     histogram  ``pipeline``, ``stage``
``pipetune_requests_total``            counter    ``pipeline``, ``outcome`` (ok / error)
``pipetune_stage_errors_total``        counter    ``pipeline``, ``stage``, ``exception``
=====================================  =========  ==========================================

Histogram ``le`` buckets are a subset of the monitor's own edges: by default 3 per decade
(1, 2.15, 4.64 x 10^k) from 10 us to 100 s, so ``histogram_quantile()`` in PromQL works
as usual while the export file keeps the fine buckets (24 per decade) for comparisons.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pipetune.core.kernel.errors import ConfigError, MissingDependency
from pipetune.monitor.histogram import OVERFLOW, PER_DECADE, upper_edge_ns

if TYPE_CHECKING:
    from collections.abc import Iterator

    from pipetune.monitor.wrapper import Monitor


def client() -> Any:
    """``prometheus_client``, or :class:`MissingDependency` with the install command."""
    try:
        import prometheus_client
    except ImportError:
        raise MissingDependency(
            "prometheus_client", "monitor", "Prometheus metrics from the monitor"
        ) from None
    return prometheus_client


def default_registry() -> Any:
    return client().REGISTRY


def edge_indexes(per_decade: int = 3, min_s: float = 1e-5, max_s: float = 100.0) -> list[int]:
    """Bucket indexes whose upper edges become the ``le`` buckets."""
    if per_decade < 1 or PER_DECADE % per_decade:
        raise ConfigError(
            f"buckets_per_decade must divide {PER_DECADE} (1, 2, 3, 4, 6, 8, 12, 24), "
            f"not {per_decade}"
        )
    if not 0 < min_s < max_s:
        raise ConfigError("the Prometheus bucket range needs 0 < min_s < max_s")
    step = PER_DECADE // per_decade
    return [
        i
        for i in range(step, OVERFLOW, step)
        if min_s * (1 - 1e-9) <= upper_edge_ns(i) / 1e9 <= max_s * (1 + 1e-9)
    ]


class MonitorCollector:
    """A ``prometheus_client`` collector over one monitor (register it with a registry).

    Args:
        namespace: metric name prefix.
        buckets_per_decade, min_s, max_s: the ``le`` buckets (see the module docstring).
    """

    def __init__(
        self,
        monitor: Monitor,
        *,
        namespace: str = "pipetune",
        buckets_per_decade: int = 3,
        min_s: float = 1e-5,
        max_s: float = 100.0,
    ):
        client()  # fail at set-up, not at the first scrape
        self.monitor = monitor
        self.namespace = namespace
        self.edges = edge_indexes(buckets_per_decade, min_s, max_s)

    def describe(self) -> list[Any]:
        # Describing without reading the histograms lets register() check names cheaply.
        return list(self._families())

    def collect(self) -> Iterator[Any]:
        return iter(self._families(self.monitor.snapshot(with_trace=False)))

    def _families(self, snapshot: Any = None) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        ns = self.namespace
        pipeline = self.monitor.pipeline.name
        request = HistogramMetricFamily(
            f"{ns}_request_latency_seconds",
            "End-to-end latency of successful requests through the monitored pipeline.",
            labels=["pipeline"],
        )
        stage = HistogramMetricFamily(
            f"{ns}_stage_latency_seconds",
            "Latency of each pipeline stage on successful calls.",
            labels=["pipeline", "stage"],
        )
        requests = CounterMetricFamily(
            f"{ns}_requests",
            "Requests served by the monitored pipeline, by outcome.",
            labels=["pipeline", "outcome"],
        )
        errors = CounterMetricFamily(
            f"{ns}_stage_errors",
            "Exceptions raised by pipeline stages, by stage and exception type.",
            labels=["pipeline", "stage", "exception"],
        )
        if snapshot is None:
            return [request, stage, requests, errors]
        # The edges are irrational (10^(k/24)): six significant digits keep labels readable.
        les = [floatToGoString(float(f"{upper_edge_ns(i) / 1e9:.6g}")) for i in self.edges]

        def buckets(histogram: Any) -> list[tuple[str, float]]:
            cumulative = histogram.cumulative(self.edges)
            return [*zip(les, cumulative, strict=True), ("+Inf", histogram.count)]

        request.add_metric([pipeline], buckets(snapshot.latency), snapshot.latency.sum_ns / 1e9)
        for name, histogram in snapshot.stage_latency.items():
            stage.add_metric([pipeline, name], buckets(histogram), histogram.sum_ns / 1e9)
        requests.add_metric([pipeline, "ok"], snapshot.ok)
        requests.add_metric([pipeline, "error"], snapshot.failed)
        for stage_name, kinds in snapshot.errors.items():
            for kind, count in kinds.items():
                errors.add_metric([pipeline, stage_name, kind], count)
        return [request, stage, requests, errors]


def serve(monitor: Monitor, *, port: int = 0, addr: str = "127.0.0.1", **options: Any) -> Any:
    """Serve ``/metrics`` for ``monitor`` (a registry of its own) from a daemon thread.
    Returns ``(server, port)``."""
    prometheus_client = client()
    registry = prometheus_client.CollectorRegistry(auto_describe=True)
    registry.register(MonitorCollector(monitor, **options))
    try:
        started = prometheus_client.start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:
        raise ConfigError(f"cannot serve Prometheus metrics on {addr}:{port}: {exc}") from None
    server = started[0] if isinstance(started, tuple) else started
    return server, int(server.server_port)
