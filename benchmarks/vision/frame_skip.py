"""Frame-skipping benchmark on the static security-camera clips: every frame classified
against a motion gate and a fixed stride (both tuned on held-apart clips by the plugin's own
tune step), side by side in one run.

    python -m benchmarks.vision.frame_skip [--quick] [--threads N] [--repeats N]

The clips are split: the first half tunes (threshold / stride search through the plugin's
TuneContext path, 98 % per-frame agreement and every event within 3 frames), the second
half measures. Reported per variant: frames per second, speedup over classifying every
frame one by one (the pipeline as written) and over a competent batched baseline (every
frame, model calls batched by 16), per-frame agreement with the full pipeline, the share of
frames the model ran on, and event detection (events from the ground truth). Results merge
into benchmarks/results/vision.json (section "frame_skip").
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from benchmarks.vision.common import machine, pin_threads, table, timed_passes, write_section


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small clips and model (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    threads = pin_threads(args.threads)

    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.manager import get_plugin_manager
    from pipetune.core.kernel.model import Workload
    from pipetune.core.kernel.results import Change, Proposal
    from pipetune.core.measure.fidelity import compare
    from pipetune.demos.vision.demo import build_video
    from pipetune.plugins.vision import frame_skip
    from pipetune.plugins.vision.blocks import classify_batch, preprocess_frame
    from pipetune.plugins.vision.fidelity import prediction_entropy
    from pipetune.plugins.vision.proposals import MOTION, STRIDE

    setup = build_video(args.quick, log=print)
    pipeline, workload = setup.pipeline, setup.workload
    half = max(1, len(workload.items) // 2)
    tune_wl = Workload(items=workload.items[:half], labels=workload.labels[:half], name="tune")
    hold_items = list(workload.items[half:])
    hold_labels = list(workload.labels[half:])
    pm = get_plugin_manager(entry_points=False)
    context = TuneContext(
        pm, pipeline, tune_wl, setup.requirements, ArtifactStore(tempfile.mkdtemp()), log=print
    )
    stage = "classify"
    proposals = {
        MOTION: Proposal(
            id=MOTION,
            plugin="vision",
            stage=stage,
            title="motion gate",
            params={"mode": "motion", "width": 64, "delta": 8.0, "max_interval": 150},
            fidelity_kind="frame_labels",
        ),
        STRIDE: Proposal(
            id=STRIDE,
            plugin="vision",
            stage=stage,
            title="stride",
            params={"mode": "stride", "stride": 3},
            fidelity_kind="frame_labels",
        ),
    }
    print("computing the full pipeline's labels on the tuning clips ...", flush=True)
    tuned: dict[str, Any] = {}
    for pid, proposal in proposals.items():
        try:
            tuned[pid] = pm.tune(proposal, pipeline, context)
            print(f"{pid}: tuned {dict(tuned[pid].params)}")
        except Exception as exc:  # a rejection is a result, reported as such
            tuned[pid] = exc
            print(f"{pid}: rejected: {exc}")

    frames_total = sum(len(labels) for labels in hold_labels)
    source, classify = pipeline.stages
    slots = classify.slots

    def batched_every_frame() -> list[list[str]]:
        out = []
        for path in hold_items:
            clip = source(path)
            labels: list[str] = []
            batch: list[Any] = []
            for frame in clip:
                batch.append(preprocess_frame(frame, slots["size"]))
                if len(batch) == 16:
                    labels += classify_batch(batch, model=slots["model"], classes=slots["classes"])
                    batch = []
            if batch:
                labels += classify_batch(batch, model=slots["model"], classes=slots["classes"])
            out.append(labels)
        return out

    variants: list[tuple[str, Any]] = [("every frame (pipeline as written)", pipeline)]
    for pid, result in tuned.items():
        if not isinstance(result, Exception):
            change = Change.from_proposal(proposals[pid], result)
            variants.append(
                (f"{pid} {_describe(result.params)}", pm.materialize(change, pipeline, "."))
            )
    rows: list[dict[str, Any]] = []
    baseline_out = None
    base_fps = None
    print("timing on the held-out clips ...", flush=True)
    median_s, _, batched_out = timed_passes(batched_every_frame, max(1, args.repeats - 1))
    batched_fps = frames_total / median_s
    for name, candidate in variants:
        median_s, passes, outputs = timed_passes(
            lambda c=candidate: [c.run(p) for p in hold_items], args.repeats
        )
        fps = frames_total / median_s
        if baseline_out is None:
            baseline_out, base_fps = outputs, fps
        fid = compare(pm, "frame_labels", baseline_out, outputs, hold_labels)
        gate = candidate.stage(stage).slots.get("gate")
        run_fraction = 1.0
        if gate is not None:
            smalls = [frame_skip.clip_smalls(source(p), 64) for p in hold_items]
            _, run_fraction = frame_skip.simulate(gate, smalls, baseline_out)
        d = fid.details
        rows.append(
            {
                "variant": name,
                "frames_per_s": fps,
                "speedup": fps / base_fps,
                "speedup_vs_batched": fps / batched_fps,
                "frame_agreement": d["frame_agreement"],
                "model_run_fraction": run_fraction,
                "events": d["events"],
                "events_in_time": d["detected_in_time"],
                "max_latency": d["max_latency_frames"],
                "accuracy": d.get("candidate_accuracy"),
                "pass_s": passes,
            }
        )
    rows.insert(
        1,
        {
            "variant": "every frame, model batched by 16 (competent baseline)",
            "frames_per_s": batched_fps,
            "speedup": batched_fps / base_fps,
            "speedup_vs_batched": 1.0,
            "frame_agreement": compare(
                pm, "frame_labels", baseline_out, batched_out, hold_labels
            ).details["frame_agreement"],
        },
    )
    entropy = prediction_entropy([x for clip in baseline_out for x in clip])
    event_frames = sum(x != "empty" for clip in hold_labels for x in clip)
    result = {
        "command": "python -m benchmarks.vision.frame_skip" + (" --quick" if args.quick else ""),
        "machine": machine(),
        "threads": threads,
        "repeats": args.repeats,
        "clips_tune": half,
        "clips_measured": len(hold_items),
        "frames_measured": frames_total,
        "event_frame_fraction": event_frames / frames_total,
        "classifier": {
            "validation_accuracy": setup.notes["classifier"].get("validation_accuracy"),
            "workload_accuracy": rows[0].get("accuracy"),
            "entropy_bits": entropy["entropy_bits"],
            "distribution": entropy.get("distribution"),
        },
        "tuning": {
            pid: (
                str(r)
                if isinstance(r, Exception)
                else {"params": dict(r.params), "curve": r.notes.get("curve")}
            )
            for pid, r in tuned.items()
        },
        "rows": rows,
    }
    print()
    print(
        table(
            rows,
            [
                ("variant", "variant"),
                ("frames_per_s", "frames/s"),
                ("speedup", "x base"),
                ("speedup_vs_batched", "x batched"),
                ("frame_agreement", "agree"),
                ("model_run_fraction", "model runs"),
                ("events_in_time", "events ok"),
                ("events", "events"),
                ("max_latency", "max lat"),
            ],
        )
    )
    print(
        f"\nclassifier: accuracy {rows[0].get('accuracy')}, entropy {entropy['entropy_bits']:.2f} "
        f"bits; event frames {event_frames / frames_total:.1%} of {frames_total}"
    )
    path = write_section("frame_skip_quick" if args.quick else "frame_skip", result)
    print(f"results: {path}")
    return result


def _describe(params: Any) -> str:
    if params.get("mode") == "stride":
        return f"(stride {params['stride']})"
    return f"(threshold {params['threshold']:.4f})"


if __name__ == "__main__":
    main()
