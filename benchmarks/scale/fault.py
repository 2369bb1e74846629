"""A node removed half-way through a job, on a local three-node cluster (1 CPU each).

The fetch-then-model pipeline runs with pipetune's plan twice per round: once untouched,
once with a worker node removed half-way through: at half the median wall time of the
untouched passes so far (rows reach the output in blocks, so a row count would fire near
the end). Ray retries its tasks and restarts its actors elsewhere. Each pass checks every
input is in the output exactly once, and records the share of rows written at removal.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.scale import harness
from benchmarks.scale.jobs import (
    Clock,
    Log,
    driver_pipeline,
    exactly_once,
    job_for,
    read_outputs,
    write_inputs,
)
from pipetune.scale.rows import expand_inputs
from pipetune.scale.runner import RunRequest, run_job, sample_profile


def part_fault(rows: int, passes: int, log: Log, fetch_ms: float) -> dict[str, Any]:
    import ray
    from ray.cluster_utils import Cluster

    os.environ["PIPETUNE_BENCH_FETCH_MS"] = str(fetch_ms)
    temp = Path(tempfile.mkdtemp(prefix="ptbench-", dir="/tmp"))
    cluster = None
    try:
        # Cluster writes its address under Ray's default temp folder whatever temp_dir
        # says, and fails where that folder does not exist yet (a fresh machine)
        default = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        Path(default, "ray").mkdir(parents=True, exist_ok=True)
        cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "temp_dir": str(temp), "include_dashboard": False},
        )
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False)
        return _measure(cluster, rows, passes, log, fetch_ms, temp)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _measure(
    cluster: Any, rows: int, passes: int, log: Log, fetch_ms: float, temp: Path
) -> dict[str, Any]:
    inputs = write_inputs([{"id": i} for i in range(rows)], temp / "in", files=8)
    job = job_for("io_target.py", "pipeline", "fetch-then-model", ("fetch", "model"))
    pipeline = driver_pipeline(job)
    base = RunRequest(
        job,
        tuple(inputs),
        temp / "unused.jsonl",
        engine="ray",
        local_files=(job.factory_file or "",),
    )
    profile = sample_profile(pipeline, expand_inputs(inputs), base, 1, log=log)

    untouched_walls: list[float] = []

    def side(remove: bool) -> Any:
        def run(round_: int) -> dict[str, Any]:
            output = temp / f"{'fault' if remove else 'clean'}-{round_}.jsonl"
            request = RunRequest(**{**base.__dict__, "output": output, "overwrite": True})
            clock = Clock()
            removed: dict[str, float] = {}
            victim = next(iter(cluster.worker_nodes))

            def remove_victim() -> None:
                removed["at_s"] = time.perf_counter() - clock.started
                removed["rows_written_share"] = clock.done / rows
                cluster.remove_node(victim)

            timer = None
            if remove:
                # the first round runs the untouched side first, so a wall time exists
                half = statistics.median(untouched_walls) / 2 if untouched_walls else 5.0
                timer = threading.Timer(half, remove_victim)
                timer.start()
            try:
                summary = run_job(request, pipeline, profile=profile, progress=clock)
            finally:
                if timer is not None:
                    timer.cancel()
                    timer.join()
                if removed:
                    cluster.add_node(num_cpus=1)
                    cluster.wait_for_nodes()
            if not remove:
                untouched_walls.append(summary.wall_s)
            outputs, twice = read_outputs(output)
            check = exactly_once(outputs, twice, list(range(rows)))
            return {
                "wall_s": summary.wall_s,
                "rows_per_s": summary.rows_per_s,
                "removed_at_s": removed.get("at_s"),
                "removed_at_share_of_wall": (
                    removed["at_s"] / summary.wall_s if removed and summary.wall_s else None
                ),
                "rows_written_at_removal": removed.get("rows_written_share"),
                "redelivered": summary.redelivered,
                **check,
            }

        return run

    log(f"fault: {rows} rows on 3 nodes of 1 CPU, {passes} passes per side")
    results = harness.side_by_side(
        {"untouched": side(False), "node removed at 50 %": side(True)}, passes, log
    )
    faulty = results["node removed at 50 %"]
    return {
        "rows": rows,
        "cluster": "ray.cluster_utils.Cluster: 3 nodes of 1 CPU on this machine",
        "fetch": f"simulated latency: time.sleep({fetch_ms:g} ms) per row",
        "passes_per_side": passes,
        "untouched_wall_s": harness.spread([r["wall_s"] for r in results["untouched"]]),
        "fault_wall_s": harness.spread([r["wall_s"] for r in faulty]),
        "removed_at_s": harness.spread([r["removed_at_s"] or 0 for r in faulty]),
        "removed_at_share_of_wall": harness.spread(
            [r["removed_at_share_of_wall"] or 0 for r in faulty]
        ),
        "removal": "a worker node removed at half the untouched passes' median wall time",
        "every_input_exactly_once": all(
            r["every_input_exactly_once"] for rs in results.values() for r in rs
        ),
        "passes": results,
    }
