"""The pipeline as a Ray Serve application: ``pipetune serve TARGET --engine ray``.

Each replica builds the pipeline once from the job (TARGET + recipe, no re-tuning), wraps it
in pipetune's :class:`~pipetune.monitor.Monitor` and serves ``/metrics`` for Prometheus on
``metrics_port + its rank on the node`` (the Monitor's own endpoint). Requests are
``POST`` with a JSON body, the pipeline's input; the answer is the output as JSON (the same
as ``pipeline.run``), or ``{"error", "exception", "stage"}`` with status 500 when a stage
raises (400 for a body that is not JSON). ``GET`` answers what the replica serves.

The pipeline runs on a thread pool of the replica's size, never on Serve's event loop.
When the recipe batches, requests are gathered by Serve's own ``@serve.batch`` (batch size
and wait set from the recipe at start-up) and run through each stage's ``batch_fn``.

This module imports Ray Serve: import it only after :func:`pipetune.scale.ray_env.require_ray`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from pipetune.core.kernel.errors import ConfigError, MissingDependency
from pipetune.scale.execute import failing_stage
from pipetune.scale.job import JobSpec, build_pipeline
from pipetune.scale.serve_sizing import ServeSizing
from pipetune.scale.sinks import to_jsonable


@serve.deployment
class PipelineDeployment:
    """One replica: the pipeline built once, monitored, served over HTTP."""

    def __init__(
        self,
        job: JobSpec,
        batch_size: int = 1,
        batch_wait_s: float = 0.0,
        threads: int = 1,
        metrics_port: int | None = None,
        metrics_host: str = "127.0.0.1",
        recipe: dict[str, Any] | None = None,
    ):
        from pipetune.monitor import Monitor

        self.monitor = Monitor(build_pipeline(job), recipe=recipe)
        self.executor = ThreadPoolExecutor(max(1, threads), thread_name_prefix="pipetune-serve")
        self.batching = batch_size > 1
        if self.batching:
            self.run_batch.set_max_batch_size(batch_size)  # type: ignore[attr-defined]
            self.run_batch.set_batch_wait_timeout_s(batch_wait_s)  # type: ignore[attr-defined]
        self.metrics_port = _serve_metrics(self.monitor, metrics_port, metrics_host)

    async def __call__(self, request: Request) -> Any:
        if request.method == "GET":
            return {
                "pipeline": self.monitor.pipeline.name,
                "stages": list(self.monitor.pipeline.stage_names),
                "metrics_port": self.metrics_port,
                "pid": os.getpid(),
            }
        try:
            item = await request.json()
        except ValueError as exc:
            return JSONResponse({"error": f"the body is not JSON: {exc}"}, status_code=400)
        if self.batching:
            ok, value = await self.run_batch(item)
        else:
            loop = asyncio.get_running_loop()
            ok, value = await loop.run_in_executor(self.executor, self._one, item)
        if not ok:
            return JSONResponse(value, status_code=500)
        try:
            return JSONResponse(to_jsonable(value))
        except (TypeError, ValueError) as exc:
            body = {"error": f"the output is not JSON-serializable: {exc}", "stage": "output"}
            return JSONResponse(body, status_code=500)

    @serve.batch(max_batch_size=1, batch_wait_timeout_s=0.0)
    async def run_batch(self, items: list[Any]) -> list[tuple[bool, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self._many, items)

    def _one(self, item: Any) -> tuple[bool, Any]:
        try:
            return True, self.monitor(item)
        except Exception as exc:
            return False, _failure(exc)

    def _many(self, items: list[Any]) -> list[tuple[bool, Any]]:
        try:
            return [(True, value) for value in self.monitor.run_batch(items)]
        except Exception:  # one at a time: only the requests that fail get an error
            return [self._one(item) for item in items]


def _failure(exc: BaseException) -> dict[str, Any]:
    return {"error": str(exc), "exception": type(exc).__name__, "stage": failing_stage(exc)}


def _serve_metrics(monitor: Any, base: int | None, host: str) -> int | None:
    """Serve the Monitor's ``/metrics`` on ``base`` + this replica's rank on its node."""
    if base is None:
        return None
    rank = 0
    with contextlib.suppress(Exception):
        rank = int(serve.get_replica_context().rank.local_rank)
    for port in (base + rank if base else 0, 0):
        try:
            _, bound = monitor.serve_prometheus(port=port, addr=host)
            return int(bound)
        except MissingDependency:  # prometheus_client missing: serve without metrics
            return None
        except ConfigError:  # the port is taken: any free one
            continue
    return None


def deploy(
    job: JobSpec,
    sizing: ServeSizing,
    *,
    name: str = "pipetune",
    route_prefix: str = "/",
    host: str = "127.0.0.1",
    port: int = 8000,
    metrics_port: int | None = 9464,
    recipe: dict[str, Any] | None = None,
    request_timeout_s: float | None = None,
) -> str:
    """Start Serve's HTTP proxy on ``host:port`` and deploy the pipeline; returns its URL.
    ``request_timeout_s`` (``--timeout``) is Serve's end-to-end request timeout: a request
    not answered by then gets Serve's timeout response instead of waiting for ever."""
    http: dict[str, Any] = {"host": host, "port": port}
    if request_timeout_s is not None:
        http["request_timeout_s"] = request_timeout_s
    serve.start(http_options=http)
    options = sizing.deployment_options()
    app = PipelineDeployment.options(name=job.pipeline, **options).bind(  # type: ignore[attr-defined]
        job,
        sizing.batch_size,
        sizing.batch_wait_s,
        sizing.threads,
        metrics_port,
        host,
        recipe,
    )
    serve.run(app, name=name, route_prefix=route_prefix, blocking=False)
    return f"http://{host}:{port}{route_prefix}"
