"""Decode-stage benchmark: the teaching baseline, a library-defaults baseline, a plain
Pillow stage as written and as pipetune changes it, and pipetune's decode changes — side
by side in one run, each measured against the baselines through
``pipetune.core.measure.comparison.compare``.

    python -m benchmarks.vision.decode [--quick] [--threads N] [--rounds N] [--only WORDS]

Every variant decodes and resizes the same camera JPEGs to the classifier's input. The
rows:

* **teaching baseline** — the demo's "before": OpenCV full decode + resize, one image at a
  time (the scenario's seed story);
* **library defaults** — ``cv2.imread`` + ``cv2.resize`` in a thread pool of the best
  worker count, measured in this run (the sweep is recorded), batches of 16;
* **plain Pillow stage** — ``Image.open(path).convert("RGB").resize(size)`` as written;
  pipetune recognizes it from its source, measures the reduced-decode gain on the
  workload's own files (the proposal's figure is recorded) and applies it by rebinding
  ``Image.open`` for that function; the same code with the decoder out of reach gets the
  exact change instead, and that change made by hand is timed too;
* pipetune's changes to the demo's decode block: reduced decode, reduced decode with the
  thread pool, and the GPU decoders where a GPU is present.

Each row: throughput against the teaching baseline and against library defaults (ratio
and interval), the P99 ratio (shown with at least 100 latency samples per side), the
worst case — the same comparison on images too small for DCT scaling (a 416x312 set for a
224 input) — label agreement with the teaching baseline's classifier labels, PSNR of the
decoded images, and how many inputs and samples each figure rests on. The host's load
(load average, this process's run-queue wait) is recorded. Results merge into
benchmarks/results/vision.json (section ``decode``, ``decode_quick`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.vision.common import (
    host_load,
    machine,
    pin_threads,
    side_by_side,
    table,
    write_section,
)

__all__ = ["main"]

PLAIN = "plain Pillow stage"  # the rows of the stage a user writes (issue #20)


@dataclass
class Variant:
    name: str
    role: str  # teaching, library, plain, pipetune, hand
    pipeline: Any
    note: str = ""


def _settings(quick: bool, rounds: int | None, count: int) -> tuple[int, int]:
    """(rounds, inputs per round) covering every input at least once."""
    rounds = rounds or (3 if quick else 8)
    return rounds, max(1, math.ceil(count / rounds))


def _pipelines(target: tuple[int, int], workers: int) -> dict[str, Any]:
    from benchmarks.vision import plain_stages
    from pipetune.core.kernel.model import Pipeline, Stage
    from pipetune.core.runtime.serving import with_serving
    from pipetune.plugins.vision.blocks import decode_resize_stage
    from pipetune.plugins.vision.parallel import ParallelBatch
    from pipetune.plugins.vision.reduced_decode import OpenCVDecoder

    def single(name: str, stage: Any) -> Any:
        return Pipeline(name, (stage,), output_kind="image")

    def library(n: int) -> Any:
        stage = Stage(
            "decode",
            plain_stages.cv2_resize,
            kind="decode",
            slots={"size": target},
            batch_fn=ParallelBatch(plain_stages.cv2_resize, n),
        )
        return with_serving(single(f"library-{n}", stage), batch_size=16)

    def plain(fn: Any) -> Any:
        return single(fn.__name__, Stage("decode", fn, kind="decode", slots={"size": target}))

    return {
        "teaching": single("teaching", decode_resize_stage("decode", size=target)),
        "library": library,
        "pil": plain(plain_stages.pil_resize),
        "pil_closure": plain(plain_stages.pil_resize_closure),
        "pil_by_hand": plain(plain_stages.pil_resize_by_hand),
        "reduced": single(
            "reduced", decode_resize_stage("decode", size=target, decoder="opencv-reduced")
        ),
        "reduced_pool": with_serving(
            single(
                "reduced-pool",
                decode_resize_stage(
                    "decode", size=target, decoder=OpenCVDecoder(reduce=True), workers=workers
                ),
            ),
            batch_size=16,
        ),
    }


def _gpu_variants(target: tuple[int, int], workers: int) -> list[Variant]:
    from pipetune.core.kernel.model import Pipeline
    from pipetune.core.runtime.serving import with_serving
    from pipetune.plugins.vision.blocks import decode_resize_stage
    from pipetune.plugins.vision.dali import DALI, DaliDecoder, cuda_available
    from pipetune.plugins.vision.gpu_decode import NvJpegDecoder, nvjpeg_availability

    def batched(name: str, decoder: Any) -> Any:
        stage = decode_resize_stage("decode", size=target, decoder=decoder)
        return with_serving(Pipeline(name, (stage,), output_kind="image"), batch_size=16)

    out: list[Variant] = []
    if DALI.check():
        out.append(
            Variant(
                f"DALI CPU, batch 16, {workers} threads",
                "pipetune",
                batched("dali-cpu", DaliDecoder(threads=workers)),
            )
        )
        if cuda_available():
            out.append(
                Variant(
                    "DALI mixed (nvJPEG), batch 16",
                    "pipetune",
                    batched("dali-gpu", DaliDecoder(device="gpu", threads=workers)),
                )
            )
    else:
        out.append(Variant("DALI", "pipetune", None, f"skipped: {DALI.check().reason}"))
    nvjpeg = nvjpeg_availability()
    if nvjpeg:
        out.append(
            Variant("torchvision nvJPEG, batch 16", "pipetune", batched("nvjpeg", NvJpegDecoder()))
        )
    else:
        out.append(Variant("torchvision nvJPEG", "pipetune", None, f"skipped: {nvjpeg.reason}"))
    return out


def _plain_proposals(pm: Any, pipelines: dict[str, Any], items: list[str]) -> dict[str, Any]:
    """What pipetune proposes for the plain Pillow stage (its decoder reachable, and out
    of reach), from a profile of the first images: the measured gain it shows, and the
    change it applies or the edit it shows."""
    from pipetune.core.kernel.model import Requirements, Workload
    from pipetune.core.measure.profiler import profile

    found: dict[str, Any] = {}
    for key in ("pil", "pil_closure"):
        pipeline = pipelines[key]
        prof = profile(
            pipeline,
            Workload(items=tuple(items[:16]), repeats=1),
            pm=pm,
            sweep=False,
            gil_check=False,
            hot_functions=False,
            layers=False,
            memory=False,
        )
        proposals = [
            p
            for _, ps in pm.call_each(
                "propose_changes", pipeline=pipeline, profile=prof, requirements=Requirements()
            )
            for p in ps
            if p.id == "vision.reduced_decode"
        ]
        found[key] = proposals[0] if proposals else None
    return found


def _apply(pm: Any, proposal: Any, pipeline: Any, items: list[str], fidelity_drop: float) -> Any:
    """Tune and build the proposal as the loop does (on a tuning split of the images)."""
    from pipetune.core.kernel.artifacts import ArtifactStore
    from pipetune.core.kernel.context import TuneContext
    from pipetune.core.kernel.model import Requirements, Workload
    from pipetune.core.kernel.results import Change

    tune_items = items[: max(4, len(items) * 2 // 5)]
    context = TuneContext(
        pm,
        pipeline,
        Workload(items=tuple(tune_items)),
        Requirements(max_accuracy_drop=fidelity_drop),
        ArtifactStore(tempfile.mkdtemp()),
        log=print,
    )
    tuned = pm.tune(proposal, pipeline, context)
    return pm.materialize(Change.from_proposal(proposal, tuned), pipeline, "."), dict(tuned.params)


def _proposal_record(proposal: Any) -> dict[str, Any] | None:
    if proposal is None:
        return None
    return {
        "applicable": proposal.applicable,
        "est_stage_speedup": proposal.est_stage_speedup,
        "params": dict(proposal.params),
        "measured": dict(proposal.evidence.get("sample_timing_ms", {})),
        "one_line_change": proposal.evidence.get("one_line_change"),
        "rationale": proposal.rationale,
    }


def _fidelity(
    outputs: list[Any], reference: list[Any], labels_of: Any, base_labels: list[str]
) -> dict[str, Any]:
    from pipetune.plugins.vision.fidelity import psnr

    predicted = labels_of(outputs)
    psnrs = [psnr(a, b) for a, b in zip(reference, outputs, strict=True)]
    finite = [p for p in psnrs if math.isfinite(p)]
    return {
        "label_agreement": sum(a == b for a, b in zip(predicted, base_labels, strict=True))
        / len(outputs),
        "mean_psnr_db": float(np.mean(finite)) if finite else math.inf,
    }


def _sweep_library(setup: Setup, pipelines: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """Library defaults at each worker count, against the teaching baseline: the best."""
    cores = os.cpu_count() or 1
    sweep = []
    for workers in sorted({1, 2, cores, 2 * cores}):
        print(f"library defaults with {workers} decode threads ...", flush=True)
        row = setup.compare(pipelines["teaching"], pipelines["library"](workers))
        sweep.append({"workers": workers, **row})
    best = max(sweep, key=lambda r: r["speedup"])
    return int(best["workers"]), sweep


@dataclass
class Setup:
    """The data, the classifier and the comparison settings of one run."""

    args: Any
    items: list[str]
    labels: list[str]
    worst: list[str]
    worst_size: tuple[int, int]
    target: tuple[int, int]
    model: Any
    report: dict[str, Any]
    cfg: dict[str, Any]
    rounds: int
    per_round: int

    def labels_of(self, images: list[Any]) -> list[str]:
        from pipetune.demos.vision import data
        from pipetune.plugins.vision.blocks import classify_batch

        out: list[str] = []
        for i in range(0, len(images), 32):
            out.extend(
                classify_batch(images[i : i + 32], model=self.model, classes=data.PHOTO_CLASSES)
            )
        return out

    def compare(self, reference: Any, candidate: Any, worst: bool = False) -> dict[str, Any]:
        items = self.worst if worst else self.items
        rounds, per_round = _settings(self.args.quick, self.args.rounds, len(items))
        return side_by_side(
            reference,
            candidate,
            items,
            rounds=rounds,
            per_round=per_round,
            threads=self.args.threads,
        )


def _setup(args: Any) -> Setup:
    from pipetune.demos.vision import data
    from pipetune.demos.vision.demo import photo_classifier, photo_demo_config

    cfg = photo_demo_config(args.quick)
    paths, labels = data.photo_set(cfg["count"], cfg["size"], seed=7)
    model, report, size = photo_classifier(args.quick, log=print)
    worst_size = (2 * size - 32, (2 * size - 32) * 3 // 4)  # DCT scaling cannot apply
    worst_paths, _ = data.photo_set(max(8, cfg["count"] // 2), worst_size, seed=8)
    rounds, per_round = _settings(args.quick, args.rounds, len(paths))
    return Setup(
        args=args,
        items=[str(p) for p in paths],
        labels=list(labels),
        worst=[str(p) for p in worst_paths],
        worst_size=worst_size,
        target=(size, size),
        model=model,
        report=report,
        cfg=cfg,
        rounds=rounds,
        per_round=per_round,
    )


def _variants(
    setup: Setup, pm: Any, pipelines: dict[str, Any], library: tuple[int, Any], workers: int
) -> tuple[list[Variant], dict[str, Any]]:
    best, library_pipeline = library
    proposals = _plain_proposals(pm, pipelines, setup.items)
    variants = [
        Variant("teaching baseline: OpenCV full decode + resize", "teaching", None),
        Variant(
            f"library defaults: cv2.imread + cv2.resize, {best} threads",
            "library",
            library_pipeline,
        ),
        Variant(f"{PLAIN} as written", "plain", pipelines["pil"]),
    ]
    if proposals["pil"] is not None and proposals["pil"].applicable:
        applied, params = _apply(pm, proposals["pil"], pipelines["pil"], setup.items, 0.01)
        variants.append(
            Variant(
                f"{PLAIN}, reduced decode applied by pipetune (Image.open rebound)",
                "pipetune",
                applied,
                f"max_factor {params.get('max_factor')}",
            )
        )
    variants += [
        Variant(f"{PLAIN}, the shown change made by hand", "hand", pipelines["pil_by_hand"]),
        Variant(
            "pipetune: OpenCV reduced decode (IMREAD_REDUCED_*)", "pipetune", pipelines["reduced"]
        ),
        Variant(
            f"pipetune: reduced decode, {workers}-thread pool, batch 16",
            "pipetune",
            pipelines["reduced_pool"],
        ),
        *_gpu_variants(setup.target, workers),
    ]
    if setup.args.only:
        words = [w.strip().lower() for w in setup.args.only.split(",") if w.strip()]
        variants = variants[:2] + [
            v for v in variants[2:] if any(w in v.name.lower() for w in words)
        ]
    return variants, proposals


def _measure(
    setup: Setup, variants: list[Variant], teaching: Any, library: Any, written: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    """Each variant against the teaching baseline (and its worst case), and pipetune's
    against library defaults too; the plain Pillow stage's changed forms against the
    stage as written (``written``); fidelity from one untimed pass over every image."""
    reference = teaching.run_batch(setup.items)
    base_labels = setup.labels_of(reference)
    rows: list[dict[str, Any]] = []
    for variant in variants:
        row: dict[str, Any] = {"variant": variant.name, "role": variant.role}
        if variant.note:
            row["note"] = variant.note
        if variant.role != "teaching" and variant.pipeline is None:
            rows.append(row)
            continue
        print(f"timing {variant.name} ...", flush=True)
        pipeline = variant.pipeline or teaching
        row.update(
            _fidelity(pipeline.run_batch(setup.items), reference, setup.labels_of, base_labels)
        )
        if variant.role != "teaching":
            row["vs_teaching"] = setup.compare(teaching, pipeline)
            row["worst_case"] = setup.compare(teaching, pipeline, worst=True)
        if variant.role not in ("teaching", "library"):
            row["vs_library"] = setup.compare(library, pipeline)
        if variant.role in ("pipetune", "hand") and variant.name.startswith(PLAIN):
            row["vs_written"] = setup.compare(written, pipeline)
        rows.append(row)
    timed = [r["vs_teaching"]["ms_per_item"]["a"] for r in rows if "vs_teaching" in r]
    if timed:
        rows[0]["ms_per_image"] = statistics.median(timed)
    return rows, base_labels


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images and model (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--rounds", type=int, default=None, help="compare rounds per figure")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated words: time only the variants whose name holds one "
        "(the baselines always run), e.g. 'nvJPEG,DALI' for a short GPU lease",
    )
    args = parser.parse_args(argv)
    threads = pin_threads(args.threads)

    from pipetune.core.kernel.manager import get_plugin_manager

    setup = _setup(args)
    pm = get_plugin_manager(entry_points=False)
    workers = max(1, os.cpu_count() or 1)
    with host_load() as load:
        pipelines = _pipelines(setup.target, workers)
        best, sweep = _sweep_library(setup, pipelines)
        library = pipelines["library"](best)
        variants, proposals = _variants(setup, pm, pipelines, (best, library), workers)
        rows, base_labels = _measure(
            setup, variants, pipelines["teaching"], library, pipelines["pil"]
        )
    result = _result(setup, load, threads, rows, base_labels, best, sweep, proposals)
    print()
    print(table([_flat(r) for r in rows], _COLUMNS))
    for key, record in result["plain_stage"].items():
        if record:
            measured = record["measured"]
            print(
                f"\n{key}: pipetune shows {measured.get('speedup', float('nan')):.2f}x measured "
                f"on {measured.get('images')} of the workload's JPEGs "
                f"({'applied' if record['applicable'] else 'shown as an edit'})"
            )
    section = "decode_quick" if args.quick else ("decode_subset" if args.only else "decode")
    path = write_section(section, result)
    print(f"results: {path}")
    return result


def _result(
    setup: Setup,
    load: dict[str, Any],
    threads: dict[str, Any],
    rows: list[dict[str, Any]],
    base_labels: list[str],
    best: int,
    sweep: list[dict[str, Any]],
    proposals: dict[str, Any],
) -> dict[str, Any]:
    from pipetune.plugins.vision.fidelity import prediction_entropy
    from pipetune.plugins.vision.inputs import image_size
    from pipetune.plugins.vision.reduced_decode import choose_factor

    args = setup.args
    factors: dict[int, int] = {}
    for path in setup.items:
        dims = image_size(open(path, "rb").read(65536))  # noqa: SIM115
        f = choose_factor(*dims, setup.target) if dims else 1
        factors[f] = factors.get(f, 0) + 1
    entropy = prediction_entropy(base_labels)
    return {
        "command": "python -m benchmarks.vision.decode"
        + (" --quick" if args.quick else "")
        + (f" --rounds {args.rounds}" if args.rounds else "")
        + (f" --only {args.only}" if args.only else ""),
        "machine": machine(),
        "host_load": load,
        "threads": threads,
        "settings": {
            "harness": "pipetune.core.measure.comparison.compare",
            "rounds": setup.rounds,
            "items_per_round": setup.per_round,
        },
        "images": len(setup.items),
        "image_size": list(setup.cfg["size"]),
        "model_input": list(setup.target),
        "dct_factors": factors,
        "worst_case": {"images": len(setup.worst), "image_size": list(setup.worst_size)},
        "library_defaults": {"workers": best, "sweep": sweep},
        "plain_stage": {k: _proposal_record(v) for k, v in proposals.items()},
        "classifier": {
            "validation_accuracy": setup.report.get("validation_accuracy"),
            "workload_accuracy": sum(a == b for a, b in zip(base_labels, setup.labels, strict=True))
            / len(setup.items),
            "workload_entropy_bits": entropy["entropy_bits"],
            "classes_predicted": entropy["classes_predicted"],
        },
        "rows": rows,
    }


_COLUMNS = [
    ("variant", "variant"),
    ("ms", "ms/img"),
    ("x_teaching", "x teaching"),
    ("x_library", "x library"),
    ("p99", "P99 x teaching"),
    ("worst", "worst case x"),
    ("label_agreement", "agree"),
    ("mean_psnr_db", "PSNR dB"),
    ("note", "note"),
]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    vs = row.get("vs_teaching") or {}
    lib = row.get("vs_library") or {}
    worst = row.get("worst_case") or {}
    return {
        **row,
        "ms": row.get("ms_per_image") or (vs.get("ms_per_item") or {}).get("b"),
        "x_teaching": vs.get("speedup"),
        "x_library": lib.get("speedup"),
        "p99": vs.get("p99_speedup") if vs.get("p99_speedup") else vs.get("p99_note"),
        "worst": worst.get("speedup"),
    }


if __name__ == "__main__":
    main()
