"""Ray Data against the local engine (parity, overhead) and against the usual port.

* ``nlp``: the optimized nlp demo pipeline over the demo's documents, ``--engine local``
  (the offline runtime, its default threads) and ``--engine ray`` (a local Ray on this
  machine, pipetune's plan): outputs compared id by id, documents per second per pass.
* ``port``: a fetch stage with **simulated** latency then a torch model, pipetune's plan
  against the usual port — one ``map_batches`` over ``pipeline.run`` with Ray Data's
  defaults — on the same input files; rows per second per pass.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from benchmarks.scale import harness, nlp_target
from benchmarks.scale.jobs import (
    Clock,
    Log,
    driver_pipeline,
    job_for,
    read_outputs,
    scratch,
    write_inputs,
)
from pipetune.scale.rows import RowOptions, expand_inputs
from pipetune.scale.runner import RunRequest, run_job, sample_profile


def _engine_side(request: RunRequest, pipeline: Any, folder: Path, profile: Any) -> Any:
    def run(round_: int) -> dict[str, Any]:
        output = folder / f"{request.engine}-{round_}.jsonl"
        clock = Clock()
        done = RunRequest(**{**request.__dict__, "output": output, "overwrite": True})
        summary = run_job(done, pipeline, profile=profile, progress=clock)
        return {
            "rows_per_s": summary.rows_per_s,
            "steady_rows_per_s": clock.steady_rows_per_s(),
            "first_rows_s": clock.first_row_s(),
            "wall_s": summary.wall_s,
            "output": str(output),
            "plan": summary.plan,
        }

    return run


def part_nlp(cases: int, passes: int, log: Log) -> dict[str, Any]:
    nlp_target.prepare(log)
    with scratch("pipetune-scale-nlp-") as folder:
        return _nlp(folder, cases, passes, log)


def _nlp(folder: Path, cases: int, passes: int, log: Log) -> dict[str, Any]:
    rows = nlp_target.documents(cases)
    inputs = write_inputs(rows, folder / "in", files=1)
    recipe = nlp_target.write_recipe(folder / "recipe", batch=32)
    job = job_for(
        "nlp_target.py", "pipeline", "document-classifier", nlp_target.STAGES, recipe=recipe
    )
    pipeline = driver_pipeline(job)
    base = RunRequest(
        job,
        tuple(inputs),
        folder / "unused.jsonl",
        rows=RowOptions(field="text"),
        local_files=(job.factory_file or "",),
    )
    profile = sample_profile(pipeline, expand_inputs(inputs), base, 32, log=log)
    sides = {
        "local": _engine_side(base, pipeline, folder, None),
        "ray": _engine_side(
            RunRequest(**{**base.__dict__, "engine": "ray"}), pipeline, folder, profile
        ),
    }
    log(f"nlp: {len(rows)} documents, {passes} passes per engine")
    results = harness.side_by_side(sides, passes, log)
    reference, _ = read_outputs(Path(results["local"][0]["output"]))
    parity = []
    for found in results["local"][1:] + results["ray"]:
        outputs, twice = read_outputs(Path(found["output"]))
        differ = sum(1 for k, v in reference.items() if outputs.get(k) != v)
        parity.append(
            {
                "output": Path(found["output"]).name,
                "differ": differ,
                "twice": twice,
                "rows": len(outputs),
            }
        )
    local = [r["rows_per_s"] for r in results["local"]]
    ray = [r["rows_per_s"] for r in results["ray"]]
    return {
        "documents": len(rows),
        "passes_per_engine": passes,
        "recipe": [c["proposal"] for c in _recipe_changes(recipe)],
        "plan": results["ray"][0]["plan"],
        "local_docs_per_s": harness.spread(local),
        "ray_docs_per_s": harness.spread(ray),
        "ray_over_local": harness.paired_ratio(ray, local),
        "steady_ray_over_local": harness.paired_ratio(
            [r["steady_rows_per_s"] or 0 for r in results["ray"]],
            [r["steady_rows_per_s"] or 1 for r in results["local"]],
        ),
        "ray_first_rows_s": harness.spread([r["first_rows_s"] or 0 for r in results["ray"]]),
        "parity": {
            "against": Path(results["local"][0]["output"]).name,
            "passes": parity,
            "identical": all(p["differ"] == 0 and p["twice"] == 0 for p in parity),
        },
        "threads": {"local": "torch default in the driver", "ray": "1 per worker process"},
    }


def _recipe_changes(path: Path) -> list[dict[str, Any]]:
    import json

    return json.loads(path.read_text())["changes"]


# -- against the usual port ---------------------------------------------------------------------


def usual_port_udf(batch: dict[str, Any], *, job: Any) -> dict[str, Any]:
    """The usual port: the whole pipeline per row, in one map_batches (built per process)."""
    from pipetune.scale.job import build_pipeline

    pipeline = build_pipeline(job)
    ids = [int(i) for i in batch["id"]]
    return {"id": ids, "output": [pickle.dumps(pipeline.run({"id": i})) for i in ids]}


def _usual_side(job: Any, inputs: list[str], folder: Path) -> Any:
    def run(round_: int) -> dict[str, Any]:
        import time

        import ray

        from pipetune.scale.sinks import OutputSink

        output = folder / f"usual-{round_}.jsonl"
        sink = OutputSink(output)
        clock = Clock()
        started = time.perf_counter()
        dataset = ray.data.read_json(inputs).map_batches(usual_port_udf, fn_kwargs={"job": job})
        for batch in dataset.iter_batches(batch_size=None):
            rows = [
                (str(i), "", pickle.loads(o))
                for i, o in zip(batch["id"], batch["output"], strict=True)
            ]
            sink.write(rows)
            clock(len(rows))
        sink.close()
        wall = time.perf_counter() - started
        return {
            "rows_per_s": clock.done / wall,
            "steady_rows_per_s": clock.steady_rows_per_s(),
            "wall_s": wall,
            "output": str(output),
        }

    return run


def part_port(rows: int, passes: int, log: Log, fetch_ms: float) -> dict[str, Any]:
    os.environ["PIPETUNE_BENCH_FETCH_MS"] = str(fetch_ms)
    with scratch("pipetune-scale-port-") as folder:
        return _port(folder, rows, passes, log, fetch_ms)


def _port(folder: Path, rows: int, passes: int, log: Log, fetch_ms: float) -> dict[str, Any]:
    inputs = write_inputs([{"id": i} for i in range(rows)], folder / "in", files=8)
    job = job_for("io_target.py", "pipeline", "fetch-then-model", ("fetch", "model"))
    pipeline = driver_pipeline(job)
    base = RunRequest(
        job,
        tuple(inputs),
        folder / "unused.jsonl",
        engine="ray",
        local_files=(job.factory_file or "",),
    )
    profile = sample_profile(pipeline, expand_inputs(inputs), base, 1, log=log)
    sides = {
        "pipetune plan": _engine_side(base, pipeline, folder, profile),
        "usual port": _usual_side(job, inputs, folder),
    }
    log(f"port: {rows} rows in 8 files, {passes} passes per side")
    results = harness.side_by_side(sides, passes, log)
    ours = [r["rows_per_s"] for r in results["pipetune plan"]]
    usual = [r["rows_per_s"] for r in results["usual port"]]
    a, _ = read_outputs(Path(results["pipetune plan"][0]["output"]))
    b, _ = read_outputs(Path(results["usual port"][0]["output"]))
    return {
        "rows": rows,
        "files": 8,
        "fetch": f"simulated latency: time.sleep({fetch_ms:g} ms) per row",
        "model": "torch MLP 256-2048-2048-10 over 16 x 256 features per row",
        "passes_per_side": passes,
        "plan": results["pipetune plan"][0]["plan"],
        "usual_port": "ray.data.read_json(files).map_batches(pipeline.run per row), defaults",
        "pipetune_rows_per_s": harness.spread(ours),
        "usual_rows_per_s": harness.spread(usual),
        "pipetune_over_usual": harness.paired_ratio(ours, usual),
        "same_outputs": a == b,
    }
