"""The Ray engines on a real local Ray: one cluster of three 1-CPU nodes, shared by every
test here (starting one costs seconds), built with ``ray.cluster_utils.Cluster``.

* parity: ``--engine ray`` writes exactly what ``--engine local`` writes (outputs, errors);
* faults: a worker actor killed, and a node removed, half-way through a job: every input
  is in the output exactly once;
* Serve: a deployment answers HTTP on localhost with ``pipeline.run``'s outputs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'pipetune[ray]'")
pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'pipetune[ray]'")

from pipetune.scale.job import JobSpec, load_pipeline  # noqa: E402
from pipetune.scale.plan import StageCost, derive_plan  # noqa: E402
from pipetune.scale.runner import RunRequest, run_job  # noqa: E402

pytestmark = pytest.mark.slow

TARGET = Path(__file__).with_name("ray_target.py")
STAGES = ("fetch", "embed")


@dataclass
class LocalCluster:
    cluster: Any
    pid_dir: Path


@pytest.fixture(scope="module")
def cluster() -> Any:
    """Three 1-CPU nodes (the head and two workers); torn down with its temp folder."""
    from ray.cluster_utils import Cluster

    temp = Path(tempfile.mkdtemp(prefix="ptray-", dir="/tmp"))
    pid_dir = temp / "pids"
    pid_dir.mkdir()
    previous = os.environ.get("PIPETUNE_TEST_PID_DIR")
    os.environ["PIPETUNE_TEST_PID_DIR"] = str(pid_dir)  # inherited by every Ray process
    created = None
    try:
        # Cluster writes its address under Ray's default temp folder whatever temp_dir
        # says, and fails where that folder does not exist yet (a fresh machine)
        default = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        Path(default, "ray").mkdir(parents=True, exist_ok=True)
        created = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "temp_dir": str(temp), "include_dashboard": False},
        )
        for _ in range(2):
            created.add_node(num_cpus=1)
        created.wait_for_nodes()
        ray.init(address=created.address, log_to_driver=False)
        yield LocalCluster(created, pid_dir)
    finally:
        with contextlib.suppress(Exception):
            from ray import serve

            serve.shutdown()
        ray.shutdown()
        if created is not None:
            created.shutdown()
        if previous is None:
            os.environ.pop("PIPETUNE_TEST_PID_DIR", None)
        else:
            os.environ["PIPETUNE_TEST_PID_DIR"] = previous
        shutil.rmtree(temp, ignore_errors=True)


def _job(attribute: str = "pipeline") -> JobSpec:
    return JobSpec(
        factory=f"{TARGET}:{attribute}",
        pipeline="scale-toy",
        stages=STAGES,
        sys_path=(str(TARGET.parent),),
    )


def _inputs(path: Path, count: int, *, explode: int | None = None) -> Path:
    lines = [
        json.dumps({"id": i, "text": "explode" if i == explode else f"document {i} " * (i % 7)})
        for i in range(count)
    ]
    lines.insert(count // 2, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def _plan(cpus: float, rows: int, batch: int = 1) -> Any:
    """A plan with the model stage on an actor pool of three and fetch as I/O tasks."""
    costs = [
        StageCost("fetch", 1.0, 0.05, ships=True),
        StageCost("embed", 10.0, 1.0, ships=False),
    ]
    return derive_plan(costs, pipeline="scale-toy", cpus=cpus, recipe_batch=batch, rows=rows)


def _outputs(path: Path) -> dict[Any, Any]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    ids = Counter(row["id"] for row in rows)
    assert max(ids.values()) == 1, f"ids written more than once: {ids.most_common(3)}"
    return {row["id"]: row["output"] for row in rows}


def _errors(path: Path) -> dict[Any, str]:
    return {e["id"]: e["stage"] for e in map(json.loads, path.read_text().splitlines())}


@pytest.mark.parametrize("attribute", ["pipeline", "batched"])
def test_ray_engine_writes_what_the_local_engine_writes(cluster, tmp_path, attribute):
    source = _inputs(tmp_path / "in.jsonl", 60, explode=5)
    pipeline = load_pipeline(_job(attribute))
    results = {}
    for engine in ("local", "ray"):
        request = RunRequest(
            _job(attribute),
            (str(source),),
            tmp_path / f"{engine}.jsonl",
            engine=engine,
            local_files=(str(TARGET),),
        )
        plan = _plan(3, 61, pipeline.meta.get("serving", {}).get("batch_size", 1))
        summary = run_job(request, pipeline, plan=plan if engine == "ray" else None)
        assert summary.rows == 61 and summary.redelivered == 0
        results[engine] = (_outputs(request.output), _errors(request.errors_path))
    assert results["ray"] == results["local"]
    outputs, errors = results["ray"]
    assert len(outputs) == 59 and errors[5] == "fetch"
    assert [stage for stage in errors.values()].count("input") == 1
    assert outputs[3] == pipeline.run({"id": 3, "text": "document 3 " * 3})


def test_a_job_is_spread_over_the_actor_pool_and_its_rows_stream(cluster, tmp_path):
    """More rows than one call of the first group: several blocks, so more than one actor
    of the model stage serves and rows reach the driver in more than one batch (fused with
    the readers, the first group once bundled a whole job into one block)."""
    for stale in cluster.pid_dir.iterdir():
        stale.unlink()
    source = _inputs(tmp_path / "in.jsonl", 150)
    batches: list[int] = []
    request = RunRequest(
        _job(), (str(source),), tmp_path / "out.jsonl", engine="ray", local_files=(str(TARGET),)
    )
    summary = run_job(request, load_pipeline(_job()), plan=_plan(3, 151), progress=batches.append)
    assert summary.rows == 151 and sum(batches) == 151
    assert len(batches) > 1
    served = {p.name for p in cluster.pid_dir.iterdir()} - {str(os.getpid())}
    assert len(served) > 1, f"one process served every row: {served}"
    assert summary.first_row_s is not None and summary.first_row_s < summary.wall_s


def _kill_one_actor(pid_dir: Path) -> int:
    pids = sorted(int(p.name) for p in pid_dir.iterdir() if int(p.name) != os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            return pid
    raise AssertionError("no worker process served the model stage")


def _half_way(total: int, action: Any) -> Any:
    """A progress callback that runs ``action`` once, when half the rows are written."""
    state = {"done": 0, "fired": False}

    def progress(count: int) -> None:
        state["done"] += count
        if not state["fired"] and state["done"] >= total // 2:
            state["fired"] = True
            action()

    return progress, state


def test_an_actor_killed_mid_job_loses_and_repeats_nothing(cluster, tmp_path):
    for stale in cluster.pid_dir.iterdir():
        stale.unlink()
    source = _inputs(tmp_path / "in.jsonl", 150)
    killed: list[int] = []
    progress, state = _half_way(151, lambda: killed.append(_kill_one_actor(cluster.pid_dir)))
    request = RunRequest(
        _job(), (str(source),), tmp_path / "out.jsonl", engine="ray", local_files=(str(TARGET),)
    )
    summary = run_job(request, load_pipeline(_job()), plan=_plan(3, 151), progress=progress)
    assert state["fired"] and killed
    assert summary.rows == 151 and summary.redelivered == 0
    assert sorted(_outputs(request.output)) == list(range(150))


def test_a_node_removed_mid_job_loses_and_repeats_nothing(cluster, tmp_path):
    source = _inputs(tmp_path / "in.jsonl", 150)
    victim = next(iter(cluster.cluster.worker_nodes))
    progress, state = _half_way(151, lambda: cluster.cluster.remove_node(victim))
    request = RunRequest(
        _job(), (str(source),), tmp_path / "out.jsonl", engine="ray", local_files=(str(TARGET),)
    )
    try:
        summary = run_job(request, load_pipeline(_job()), plan=_plan(3, 151), progress=progress)
    finally:
        if victim not in cluster.cluster.worker_nodes:
            cluster.cluster.add_node(num_cpus=1)
            cluster.cluster.wait_for_nodes()
    assert state["fired"]
    assert summary.rows == 151 and summary.redelivered == 0
    assert sorted(_outputs(request.output)) == list(range(150))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _post(url: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_answers_http_with_the_pipeline_outputs(cluster):
    from ray import serve

    from pipetune.scale.serve_app import deploy
    from pipetune.scale.serve_sizing import ServeSizing

    job = _job("batched")
    pipeline = load_pipeline(job)
    sizing = ServeSizing(
        replica_rps=10.0, max_ongoing_requests=8, num_replicas=2, batch_size=4, batch_wait_s=0.005
    )
    metrics = _free_port()
    url = deploy(job, sizing, port=_free_port(), metrics_port=metrics, route_prefix="/toy")
    try:
        inputs = [{"id": i, "text": f"request {i}"} for i in range(6)]
        for item in inputs:
            assert _post(url, item) == (200, pipeline.run(item))
        status, body = _post(url, {"id": 9, "text": "explode"})
        assert status == 500 and body["stage"] == "fetch" and body["exception"] == "ValueError"
        with urllib.request.urlopen(url, timeout=30) as response:
            info = json.loads(response.read())
        assert info["stages"] == list(STAGES) and info["metrics_port"]
    finally:
        serve.shutdown()
