"""Frame-skipping benchmark on the static security-camera clips, in the two forms video
takes in a pipeline, side by side through ``pipetune.core.measure.comparison.compare``:

    python -m benchmarks.vision.frame_skip [--quick] [--threads N] [--rounds N] [--only clips|items]

* **clips** (section ``frame_skip``): each input is a clip, read frame by frame with
  ``cv2.VideoCapture`` and classified frame by frame (the demo's capture loop);
* **frames as items** (section ``frame_items``): each input is one extracted frame file
  (``frame_00000.jpg``...) of a clip, in order, classified by plain code; pipetune detects
  from the workload that the items are consecutive frames (the profile's evidence and the
  proposal's estimate are recorded).

The clips are split: the first half tunes (motion threshold / stride, through the
plugin's own tune step: 98 % per-frame agreement and every event within 3 frames), the
second half measures. Rows: the pipeline as written (the teaching baseline), every frame
with model calls batched by 16 (the library-defaults baseline), the motion gate and the
fixed stride. Each row gives the throughput against both baselines (ratio and interval),
the P99 ratio where at least 100 latency samples per side stand behind it, the worst case
— a stream whose every frame is a scene change (the clips' frames interleaved, timing
only), where a gate can only cost — per-frame agreement with the pipeline as written, the share
of frames the model ran on, events caught in time, and how many inputs and samples each
figure rests on. The host's load is recorded.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.vision.common import (
    host_load,
    machine,
    pin_threads,
    side_by_side,
    table,
    write_section,
)


def _tune(pm: Any, proposals: dict[str, Any], pipeline: Any, workload: Any, setup: Any) -> dict:
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext

    context = TuneContext(
        pm, pipeline, workload, setup.requirements, ArtifactStore(tempfile.mkdtemp()), log=print
    )
    tuned: dict[str, Any] = {}
    for pid, proposal in proposals.items():
        try:
            tuned[pid] = pm.tune(proposal, pipeline, context)
            print(f"{pid}: tuned {dict(tuned[pid].params)}")
        except Exception as exc:  # a rejection is a result, reported as such
            tuned[pid] = exc
            print(f"{pid}: rejected: {exc}")
    return tuned


def _gated(pm: Any, proposals: dict[str, Any], tuned: dict, pipeline: Any) -> list:
    from pipetune.core.kernel.results import Change

    out = []
    for pid, result in tuned.items():
        if not isinstance(result, Exception):
            change = Change.from_proposal(proposals[pid], result)
            out.append((f"{pid} {_describe(result.params)}", pm.materialize(change, pipeline, ".")))
    return out


def _describe(params: Any) -> str:
    if params.get("mode") == "stride":
        return f"(stride {params['stride']})"
    return f"(threshold {params['threshold']:.4f})"


def _row(
    name: str,
    role: str,
    pipeline: Any,
    baselines: tuple[Any, Any],
    items: tuple[list[Any], list[Any]],
    compare_args: dict[str, Any],
    judge: Any,
) -> dict[str, Any]:
    """One variant: its fidelity from an ordered pass, then its speed against both
    baselines and on the worst case."""
    teaching, library = baselines
    held, worst = items
    row: dict[str, Any] = {"variant": name, "role": role, **judge(pipeline)}
    if role != "teaching":
        print(f"timing {name} ...", flush=True)
        row["vs_teaching"] = side_by_side(teaching, pipeline, held, **compare_args["held"])
        row["worst_case"] = side_by_side(teaching, pipeline, worst, **compare_args["worst"])
    if role not in ("teaching", "library"):
        row["vs_library"] = side_by_side(library, pipeline, held, **compare_args["held"])
    return row


def _compare_args(
    args: Any, held: int, worst: int, default_rounds: int, in_flight: Any = None
) -> dict[str, Any]:
    """Rounds covering every input; ``in_flight`` for frames as items: contiguous runs
    in order for every row (a gate needs its frames in order; the baselines get the same
    inputs)."""
    rounds = args.rounds or default_rounds
    common = {"rounds": rounds, "threads": args.threads, "in_flight": in_flight}
    return {
        "held": {**common, "per_round": math.ceil(held / rounds)},
        "worst": {**common, "per_round": math.ceil(worst / rounds)},
    }


# -- clips ---------------------------------------------------------------------------------


def _interleaved_clip(paths: list[str], frames: int) -> str:
    """A clip whose consecutive frames come from different clips in turn: every frame a
    scene change (the gate's worst case)."""
    import cv2

    captures = [cv2.VideoCapture(p) for p in paths]
    fps = captures[0].get(cv2.CAP_PROP_FPS) or 15.0
    out = str(Path(tempfile.mkdtemp()) / "interleaved.mp4")
    writer = None
    try:
        for i in range(frames):
            ok, frame = captures[i % len(captures)].read()
            if not ok:
                break
            if writer is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
            writer.write(frame)
    finally:
        for capture in captures:
            capture.release()
        if writer is not None:
            writer.release()
    return out


def _clips(setup: Any, pm: Any, args: Any) -> dict[str, Any]:
    from benchmarks.vision import plain_stages
    from pipetune.core.kernel.model import Pipeline, Stage, Workload
    from pipetune.core.kernel.results import Proposal
    from pipetune.core.measure.fidelity import compare as judge_outputs
    from pipetune.plugins.vision import frame_skip
    from pipetune.plugins.vision.proposals import MOTION, STRIDE

    pipeline, workload = setup.pipeline, setup.workload
    half = max(1, len(workload.items) // 2)
    tune_wl = Workload(items=workload.items[:half], labels=workload.labels[:half], name="tune")
    held, held_labels = list(workload.items[half:]), list(workload.labels[half:])
    proposals = {
        pid: Proposal(
            id=pid,
            plugin="vision",
            stage="classify",
            title=pid,
            params=params,
            fidelity_kind="frame_labels",
        )
        for pid, params in (
            (MOTION, {"mode": "motion", "width": 64, "delta": 8.0, "max_interval": 150}),
            (STRIDE, {"mode": "stride", "stride": 3}),
        )
    }
    tuned = _tune(pm, proposals, pipeline, tune_wl, setup)
    source, classify = pipeline.stages
    batched = Pipeline(
        "every-frame-batched",
        (source, Stage("classify", plain_stages.classify_clip_batched, slots=dict(classify.slots))),
        output_kind="frame_labels",
    )
    frames_per_clip = len(held_labels[0]) if held_labels else 0
    worst = [_interleaved_clip(list(workload.items), frames_per_clip)]
    reference = [pipeline.run(p) for p in held]

    def judge(candidate: Any) -> dict[str, Any]:
        outputs = [candidate.run(p) for p in held]
        fid = judge_outputs(pm, "frame_labels", reference, outputs, held_labels)
        gate = candidate.stage("classify").slots.get("gate")
        run_fraction = 1.0
        if gate is not None:
            smalls = [frame_skip.clip_smalls(source(p), 64) for p in held]
            _, run_fraction = frame_skip.simulate(gate, smalls, reference)
        return _fidelity_cells(fid, run_fraction)

    compare_args = _compare_args(args, len(held), 1, 3 if args.quick else 6)
    variants = [
        ("every frame (pipeline as written)", "teaching", pipeline),
        ("every frame, model batched by 16 (library defaults)", "library", batched),
        *[(name, "pipetune", gated) for name, gated in _gated(pm, proposals, tuned, pipeline)],
    ]
    rows = [
        _row(name, role, p, (pipeline, batched), (held, worst), compare_args, judge)
        for name, role, p in variants
    ]
    return {
        "clips_tune": half,
        "clips_measured": len(held),
        "frames_measured": sum(len(labels) for labels in held_labels),
        "worst_case": {"clips": 1, "frames": frames_per_clip, "what": "all clips interleaved"},
        "tuning": _tuning_record(tuned),
        "rows": rows,
    }


def _fidelity_cells(fid: Any, run_fraction: float | None) -> dict[str, Any]:
    d = fid.details
    return {
        "frame_agreement": d.get("frame_agreement"),
        "model_run_fraction": run_fraction,
        "events": d.get("events"),
        "events_in_time": d.get("detected_in_time"),
        "max_latency": d.get("max_latency_frames"),
        "accuracy": d.get("candidate_accuracy"),
    }


def _tuning_record(tuned: dict[str, Any]) -> dict[str, Any]:
    return {
        pid: (
            str(r)
            if isinstance(r, Exception)
            else {"params": dict(r.params), "run_fraction": r.notes.get("run_fraction")}
        )
        for pid, r in tuned.items()
    }


# -- frames as items -----------------------------------------------------------------------


def _frame_pipelines(classify_slots: dict[str, Any]) -> tuple[Any, Any]:
    from benchmarks.vision import plain_stages
    from pipetune.core.kernel.model import Pipeline, Stage
    from pipetune.core.runtime.serving import with_serving

    slots = {k: classify_slots[k] for k in ("model", "classes", "size")}
    plain = Pipeline(
        "frames-as-items",
        (Stage("classify", plain_stages.classify_frame_file, kind="inference", slots=slots),),
        output_kind="labels",
    )
    batched_stage = Stage(
        "classify",
        plain_stages.classify_frame_file,
        kind="inference",
        slots=slots,
        batch_fn=plain_stages.classify_frame_files,
    )
    library = with_serving(
        Pipeline("frames-batched", (batched_stage,), output_kind="labels"), batch_size=16
    )
    return plain, library


def _propose_for_frames(pm: Any, pipeline: Any, items: list[str]) -> dict[str, Any]:
    from pipetune.core.kernel.model import Requirements, Workload
    from pipetune.core.measure.profiler import profile

    prof = profile(
        pipeline,
        Workload(items=tuple(items[:240]), repeats=1),
        pm=pm,
        sweep=False,
        gil_check=False,
        hot_functions=False,
        layers=False,
        memory=False,
    )
    found = {
        p.id: p
        for _, ps in pm.call_each(
            "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
        )
        for p in ps
        if p.plugin == "vision"
    }
    return {"facts": prof.facts.get("vision", {}).get("frame_items"), "proposals": found}


def _items(setup: Any, pm: Any, args: Any) -> dict[str, Any]:
    from pipetune.core.kernel.model import Workload
    from pipetune.core.kernel.state import reset_state
    from pipetune.core.measure.fidelity import compare as judge_outputs
    from pipetune.demos.vision import data
    from pipetune.plugins.vision.changes.motion_gate import FRAMES_IN_ORDER
    from pipetune.plugins.vision.frame_items import GatedFrames
    from pipetune.plugins.vision.proposals import MOTION, STRIDE

    workload = setup.workload
    files, labels = data.frame_files([Path(p) for p in workload.items], list(workload.labels))
    half = max(1, len(files) // 2)
    tune_items = [str(p) for clip in files[:half] for p in clip]
    tune_labels = [y for clip in labels[:half] for y in clip]
    held = [str(p) for clip in files[half:] for p in clip]
    held_labels = [y for clip in labels[half:] for y in clip]
    every = [[str(p) for p in clip] for clip in files]  # timing only: every clip, interleaved
    worst = [clip[i] for i in range(min(map(len, every))) for clip in every][: len(held)]
    plain, library = _frame_pipelines(dict(setup.pipeline.stage("classify").slots))
    found = _propose_for_frames(pm, plain, tune_items)
    proposals = {
        pid: found["proposals"][pid] for pid in (MOTION, STRIDE) if pid in found["proposals"]
    }
    tune_wl = Workload(items=tuple(tune_items), labels=tuple(tune_labels), name="tune-frames")
    tuned = _tune(pm, proposals, plain, tune_wl, setup)
    reset_state(plain)
    reference = [plain.run(p) for p in held]

    def judge(candidate: Any) -> dict[str, Any]:
        reset_state(candidate)
        outputs = [candidate.run(p) for p in held]
        fid = judge_outputs(pm, "frame_labels", reference, outputs, held_labels)
        fn = candidate.stage("classify").fn
        stats = fn.pipetune_stats() if isinstance(fn, GatedFrames) else None
        return _fidelity_cells(fid, stats["runs"] / max(stats["frames"], 1) if stats else 1.0)

    compare_args = _compare_args(
        args, len(held), len(worst), 3 if args.quick else 9, in_flight=FRAMES_IN_ORDER
    )
    variants = [
        ("every frame (pipeline as written)", "teaching", plain),
        ("every frame, model batched by 16 (library defaults)", "library", library),
        *[(name, "pipetune", gated) for name, gated in _gated(pm, proposals, tuned, plain)],
    ]
    rows = [
        _row(name, role, p, (plain, library), (held, worst), compare_args, judge)
        for name, role, p in variants
    ]
    return {
        "frames_tune": len(tune_items),
        "frames_measured": len(held),
        "worst_case": {"frames": len(worst), "what": "every clip's frames interleaved"},
        "detected": found["facts"],
        "proposed": {
            pid: {"est_stage_speedup": p.est_stage_speedup, "params": dict(p.params)}
            for pid, p in proposals.items()
        },
        "tuning": _tuning_record(tuned),
        "rows": rows,
    }


# -- the run -------------------------------------------------------------------------------

_COLUMNS = [
    ("variant", "variant"),
    ("x_teaching", "x as written"),
    ("x_library", "x batched"),
    ("p99", "P99 x"),
    ("worst", "worst case x"),
    ("frame_agreement", "agree"),
    ("model_run_fraction", "model runs"),
    ("events_ok", "events ok"),
]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    vs = row.get("vs_teaching") or {}
    return {
        **row,
        "x_teaching": vs.get("speedup"),
        "x_library": (row.get("vs_library") or {}).get("speedup"),
        "p99": vs.get("p99_speedup") if vs.get("p99_speedup") else vs.get("p99_note"),
        "worst": (row.get("worst_case") or {}).get("speedup"),
        "events_ok": f"{row.get('events_in_time')}/{row.get('events')}",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small clips and model (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="compare rounds per figure")
    parser.add_argument("--only", choices=("clips", "items"), default=None)
    args = parser.parse_args(argv)
    threads = pin_threads(args.threads)

    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.demos.vision.demo import build_video

    setup = build_video(args.quick, log=print)
    pm = get_plugin_manager(entry_points=False)
    suffix = "_quick" if args.quick else ""
    common = {
        "command": "python -m benchmarks.vision.frame_skip"
        + (" --quick" if args.quick else "")
        + (f" --rounds {args.rounds}" if args.rounds else ""),
        "machine": machine(),
        "threads": threads,
        "harness": "pipetune.core.measure.comparison.compare",
        "classifier": {"validation_accuracy": setup.notes["classifier"].get("validation_accuracy")},
    }
    results: dict[str, Any] = {}
    for key, run in (("clips", _clips), ("items", _items)):
        if args.only not in (None, key):
            continue
        with host_load() as load:
            section = run(setup, pm, args)
        results[key] = {**common, "host_load": load, **section}
        print(f"\n{key}:")
        print(table([_flat(r) for r in section["rows"]], _COLUMNS))
        name = ("frame_skip" if key == "clips" else "frame_items") + suffix
        print(f"results: {write_section(name, results[key])}")
    return results


if __name__ == "__main__":
    main()
