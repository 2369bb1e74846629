"""Ray Serve against the local runtime's online mode: latency at a fixed request rate.

The optimized nlp pipeline (no batching: one document per request) is deployed on Ray
Serve with one replica of one CPU (the size ``pipetune serve`` plans for one CPU), and
offered open-loop Poisson traffic over HTTP at a fixed rate, half of what one worker
serves; the local runtime's online mode (``run_online``, one worker) gets the same rate.
Both sides compute on the replica's thread count (one): the service time that sets the
rate, and the local side, are measured under that pin, so the figure is Serve's own cost
(HTTP, proxy, routing) and not a second thread the local side would have had. Latency is
completion minus scheduled arrival on both sides.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.scale import harness, nlp_target
from benchmarks.scale.jobs import Log, driver_pipeline, job_for, scratch

_local = threading.local()
#: The replica's CPUs (``pipetune serve`` sized for one CPU) and both sides' thread count.
REPLICA_CPUS = 1


def _post(host: str, port: int, path: str, body: bytes) -> None:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = http.client.HTTPConnection(host, port, timeout=120)
    connection.request("POST", path, body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}")


def poisson_client(url: str, items: list[str], rate: float, count: int, seed: int) -> np.ndarray:
    """Latencies (ms) of ``count`` requests sent open-loop at ``rate`` per second."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    arrivals = np.cumsum(np.random.default_rng(seed).exponential(1.0 / rate, count))
    bodies = [json.dumps(items[i % len(items)]).encode() for i in range(count)]

    def send(i: int, due: float) -> float:
        _post(host, int(port), "/" + path, bodies[i])
        return (time.perf_counter() - due) * 1000.0

    with ThreadPoolExecutor(64) as pool:
        start = time.perf_counter() + 0.05
        futures = []
        for i, offset in enumerate(arrivals):
            due = start + float(offset)
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            futures.append(pool.submit(send, i, due))
        return np.array([f.result() for f in futures])


def _quantiles(latency_ms: np.ndarray) -> dict[str, float]:
    qs = np.quantile(latency_ms, [0.5, 0.95, 0.99])
    return {"p50_ms": float(qs[0]), "p95_ms": float(qs[1]), "p99_ms": float(qs[2])}


def part_serve(requests: int, passes: int, log: Log, cases: int) -> dict[str, Any]:
    nlp_target.prepare(log)
    with scratch("pipetune-scale-serve-") as folder:
        return _serve(folder, requests, passes, log, cases)


def _serve(folder: Path, requests: int, passes: int, log: Log, cases: int) -> dict[str, Any]:
    from pipetune.core.kernel.model import Requirements
    from pipetune.core.runtime.offline import run_offline
    from pipetune.core.runtime.online import run_online
    from pipetune.core.runtime.threads import pin_threads
    from pipetune.scale.serve_app import deploy
    from pipetune.scale.serve_sizing import size_serving

    recipe = nlp_target.write_recipe(folder / "recipe", batch=None)
    job = job_for(
        "nlp_target.py", "pipeline", "document-classifier", nlp_target.STAGES, recipe=recipe
    )
    pipeline = driver_pipeline(job)
    items = [row["text"] for row in nlp_target.documents(cases)]
    with pin_threads(REPLICA_CPUS):
        service = run_offline(pipeline, items[:20])
        profile = _profile(pipeline, items[:20])
    mean_s = float(np.mean(service.latency_s))
    rate = 0.5 / mean_s
    sizing = size_serving(profile, Requirements(), cpus=REPLICA_CPUS)
    url = deploy(job, sizing, port=8765, metrics_port=None, route_prefix="/classify")
    log(
        f"serve: {requests} requests at {rate:.1f}/s (half of one worker); "
        f"sizing {sizing.lines()[0]}"
    )
    poisson_client(url, items, rate, 5, seed=999)  # warm: the replica's first calls
    run_online(pipeline, items, rate=rate, workers=1, requests=5, seed=999)

    def serve_side(round_: int) -> dict[str, Any]:
        return _quantiles(poisson_client(url, items, rate, requests, seed=round_))

    def local_side(round_: int) -> dict[str, Any]:
        with pin_threads(sizing.threads):
            found = run_online(
                pipeline, items, rate=rate, workers=1, requests=requests, seed=round_
            )
        return _quantiles(np.asarray(found.latency_s)[found.ok_mask] * 1000.0)

    try:
        results = harness.side_by_side(
            {"ray serve (HTTP)": serve_side, "local online mode": local_side}, passes, log
        )
    finally:
        from ray import serve

        serve.shutdown()
    served, local = results["ray serve (HTTP)"], results["local online mode"]
    return {
        "requests_per_pass": requests,
        "rate_rps": rate,
        "service_mean_ms": mean_s * 1000.0,
        "sizing": sizing.to_dict(),
        "passes_per_side": passes,
        "serve": {
            k: harness.spread([r[k] for r in served]) for k in served[0] if k.endswith("_ms")
        },
        "local": {k: harness.spread([r[k] for r in local]) for k in local[0] if k.endswith("_ms")},
        "p99_serve_over_local": harness.paired_ratio(
            [r["p99_ms"] for r in served], [r["p99_ms"] for r in local]
        ),
        "client": "open-loop Poisson, 64 sender threads with keep-alive, on this machine",
        "threads": {"replica": sizing.threads, "local": sizing.threads},
    }


def _profile(pipeline: Any, items: list[str]) -> Any:
    from pipetune.core.kernel.model import Workload
    from pipetune.core.measure.profiler import profile

    return profile(
        pipeline,
        Workload(items=tuple(items), warmup=1, repeats=1),
        mode="offline",
        sweep=False,
        gil_check=False,
        hot_functions=False,
        layers=False,
        memory=False,
    )
