"""Prometheus exposition: a real scrape over HTTP on localhost, parsed and checked."""

from __future__ import annotations

import sys
import urllib.request

import pytest

from pipetune.core.kernel.errors import ConfigError, MissingDependency
from pipetune.monitor import Monitor
from pipetune.monitor.histogram import upper_edge_ns
from pipetune.monitor.prometheus import edge_indexes

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="the monitor extra: pip install 'pipetune[monitor]'"
)


def scrape(port: int) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


@pytest.mark.slow
def test_a_real_scrape_shows_the_histograms_and_counters(toy) -> None:
    monitored = Monitor(toy)
    for x in range(40):
        monitored(float(x))
    for bad in (-1.0, -2.0):
        with pytest.raises(ValueError):
            monitored(bad)
    server, port = monitored.serve_prometheus(port=0)
    try:
        families = scrape(port)
        request = families["pipetune_request_latency_seconds"]
        assert request.type == "histogram"
        buckets = [s for s in request.samples if s.name.endswith("_bucket")]
        assert all(s.labels["pipeline"] == "toy" for s in buckets)
        counts = [s.value for s in buckets]
        assert counts == sorted(counts)  # cumulative
        assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == 40
        count = next(s for s in request.samples if s.name.endswith("_count"))
        assert count.value == 40
        total = next(s for s in request.samples if s.name.endswith("_sum"))
        snap = monitored.snapshot()
        assert total.value == pytest.approx(snap.latency.sum_ns / 1e9, rel=1e-6, abs=1e-9)
        # each finite bucket equals the monitor's own cumulative count at that edge
        finite = [s for s in buckets if s.labels["le"] != "+Inf"]
        expected = snap.latency.cumulative(edge_indexes())
        assert [s.value for s in finite] == expected
        assert float(finite[0].labels["le"]) == pytest.approx(1e-5)

        stage = families["pipetune_stage_latency_seconds"]
        stages = {s.labels["stage"]: s.value for s in stage.samples if s.name.endswith("_count")}
        assert stages == {"scale": 42.0, "check": 40.0}  # 'check' raised twice

        requests = families["pipetune_requests"]
        outcomes = {
            s.labels["outcome"]: s.value for s in requests.samples if s.name.endswith("_total")
        }
        assert outcomes == {"ok": 40.0, "error": 2.0}
        errors = families["pipetune_stage_errors"]
        (sample,) = [s for s in errors.samples if s.name.endswith("_total")]
        assert sample.labels == {"pipeline": "toy", "stage": "check", "exception": "ValueError"}
        assert sample.value == 2.0

        # the collector reads at scrape time: new requests show on the next scrape
        monitored(100.0)
        again = scrape(port)["pipetune_request_latency_seconds"]
        assert next(s for s in again.samples if s.name.endswith("_count")).value == 41
    finally:
        server.shutdown()
        server.server_close()


def test_registering_with_a_registry_and_unregistering_on_close(toy) -> None:
    registry = prometheus_client.CollectorRegistry()
    monitored = Monitor(toy)
    monitored.register_prometheus(registry, namespace="svc")
    monitored(1.0)
    text = prometheus_client.generate_latest(registry).decode()
    assert 'svc_request_latency_seconds_count{pipeline="toy"} 1.0' in text
    monitored.close()
    assert "svc_request" not in prometheus_client.generate_latest(registry).decode()


def test_bucket_choices() -> None:
    coarse = edge_indexes(per_decade=1, min_s=1e-3, max_s=1.0)
    assert [upper_edge_ns(i) / 1e9 for i in coarse] == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    with pytest.raises(ConfigError, match="divide"):
        edge_indexes(per_decade=5)


def test_missing_prometheus_client_is_a_clear_error(toy, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(MissingDependency, match=r"pipetune\[monitor\]"):
        Monitor(toy).serve_prometheus()
