"""Decode-stage benchmark: full decode + resize against reduced-resolution (DCT-scaled)
decode, Pillow draft, DALI's CPU pipeline, a thread pool — and, on a GPU machine, DALI's
nvJPEG (mixed) decoder and torchvision's batched nvJPEG — side by side in one run.

    python -m benchmarks.vision.decode [--quick] [--threads N] [--repeats N]

Each variant decodes and resizes the same images to the classifier's input; the table
gives the decode stage's time per image, its speedup over the baseline (OpenCV full decode
+ INTER_AREA resize: libjpeg-turbo with SIMD, the competent baseline), the PSNR of its
images against the baseline's, and the classifier's label agreement with the baseline
pipeline. Results merge into benchmarks/results/vision.json (section "decode").
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np

from benchmarks.vision.common import machine, pin_threads, table, timed_passes, write_section


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small images and model (smoke run)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated words: time only the variants whose name holds one "
        "(the baseline always runs), e.g. 'reduced,nvJPEG' for a short GPU lease",
    )
    args = parser.parse_args(argv)
    threads = pin_threads(args.threads)

    from pipetune.demos.vision import data
    from pipetune.demos.vision.demo import photo_classifier, photo_demo_config
    from pipetune.plugins.vision.blocks import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        classify_batch,
        decode_resize_batch,
    )
    from pipetune.plugins.vision.dali import DALI, DaliDecoder, cuda_available
    from pipetune.plugins.vision.fidelity import prediction_entropy, psnr
    from pipetune.plugins.vision.gpu_decode import NvJpegDecoder, nvjpeg_availability
    from pipetune.plugins.vision.inputs import image_size
    from pipetune.plugins.vision.parallel import default_workers
    from pipetune.plugins.vision.reduced_decode import OpenCVDecoder, PillowDecoder, choose_factor

    cfg = photo_demo_config(args.quick)
    paths, labels = data.photo_set(cfg["count"], cfg["size"], seed=7)
    items = [str(p) for p in paths]
    model, report, size = photo_classifier(args.quick, log=print)
    target = (size, size)
    workers = default_workers()

    variants: list[tuple[str, Any, int, str]] = [
        ("opencv full + resize (baseline)", OpenCVDecoder(), 1, ""),
        ("opencv reduced (IMREAD_REDUCED_*)", OpenCVDecoder(reduce=True), 1, ""),
        ("pillow full + resize", PillowDecoder(), 1, ""),
        ("pillow draft + resize", PillowDecoder(reduce=True), 1, ""),
        (f"opencv full, {workers} threads", OpenCVDecoder(), workers, ""),
        (f"opencv reduced, {workers} threads", OpenCVDecoder(reduce=True), workers, ""),
    ]
    if DALI.check():
        variants.append(
            (f"DALI CPU, batch 16, {workers} threads", DaliDecoder(threads=workers), 1, "")
        )
        variants.append(("DALI CPU, batch 1, 1 thread", DaliDecoder(threads=1, max_batch=1), 1, ""))
    else:
        variants.append(("DALI CPU", None, 1, f"skipped: {DALI.check().reason}"))
    gpu = cuda_available()
    if gpu and DALI.check():
        variants.append(
            ("DALI mixed (nvJPEG), batch 16", DaliDecoder(device="gpu", threads=workers), 1, "")
        )
    else:
        reason = DALI.check().reason if gpu else "no CUDA device on this machine"
        variants.append(("DALI mixed (nvJPEG)", None, 1, f"skipped: {reason}"))
    nvjpeg = nvjpeg_availability()
    if nvjpeg:
        variants.append(("torchvision nvJPEG, batch 16", NvJpegDecoder(), 1, ""))
    else:
        variants.append(("torchvision nvJPEG", None, 1, f"skipped: {nvjpeg.reason}"))

    if args.only:
        words = [w.strip().lower() for w in args.only.split(",") if w.strip()]
        variants = [variants[0]] + [
            v for v in variants[1:] if any(w in v[0].lower() for w in words)
        ]

    def run(decoder: Any, n_workers: int) -> list[Any]:
        out: list[Any] = []
        batch = 16
        for i in range(0, len(items), batch):
            out.extend(
                decode_resize_batch(
                    items[i : i + batch],
                    decoder=decoder,
                    size=target,
                    on_error="raise",
                    workers=n_workers,
                )
            )
        return out

    def labels_of(images: list[Any]) -> list[str]:
        result: list[str] = []
        for i in range(0, len(images), 32):
            result.extend(
                classify_batch(
                    images[i : i + 32],
                    model=model,
                    classes=data.PHOTO_CLASSES,
                    mean=IMAGENET_MEAN,
                    std=IMAGENET_STD,
                )
            )
        return result

    rows: list[dict[str, Any]] = []
    baseline_images: list[Any] = []
    baseline_labels: list[str] = []
    base_ms = None
    for name, decoder, n_workers, skip in variants:
        if decoder is None:
            rows.append({"variant": name, "note": skip})
            print(f"{name}: {skip}")
            continue
        print(f"timing {name} ...", flush=True)
        median_s, passes, images = timed_passes(
            lambda d=decoder, w=n_workers: run(d, w), args.repeats
        )
        ms = median_s * 1000 / len(items)
        predicted = labels_of(images)
        if base_ms is None:
            base_ms, baseline_images, baseline_labels = ms, images, predicted
        agree = sum(a == b for a, b in zip(predicted, baseline_labels, strict=True)) / len(items)
        to_compare = [
            np.asarray(img).transpose(1, 2, 0) if np.asarray(img).dtype == np.float32 else img
            for img in images
        ]
        psnrs = [psnr(a, b) for a, b in zip(baseline_images, to_compare, strict=True)]
        finite = [p for p in psnrs if math.isfinite(p)]
        print(f"  {ms:.2f} ms/image, {base_ms / ms:.2f}x the baseline, agreement {agree:.3f}")
        rows.append(
            {
                "variant": name,
                "ms_per_image": ms,
                "speedup": base_ms / ms,
                "label_agreement": agree,
                "accuracy": sum(a == b for a, b in zip(predicted, labels, strict=True))
                / len(items),
                "mean_psnr_db": float(np.mean(finite)) if finite else math.inf,
                "pass_s": passes,
            }
        )
    factors = {}
    for path in paths:
        dims = image_size(path.read_bytes())
        f = choose_factor(*dims, target) if dims else 1
        factors[f] = factors.get(f, 0) + 1
    entropy = prediction_entropy(baseline_labels)
    result = {
        "command": "python -m benchmarks.vision.decode"
        + (" --quick" if args.quick else "")
        + (f" --repeats {args.repeats}" if args.repeats != 3 else "")
        + (f" --only {args.only}" if args.only else ""),
        "machine": machine(),
        "threads": threads,
        "repeats": args.repeats,
        "images": len(items),
        "image_size": list(cfg["size"]),
        "model_input": list(target),
        "dct_factors": factors,
        "classifier": {
            "validation_accuracy": report.get("validation_accuracy"),
            "workload_accuracy": rows[0].get("accuracy"),
            "workload_entropy_bits": entropy["entropy_bits"],
            "classes_predicted": entropy["classes_predicted"],
        },
        "rows": rows,
    }
    print()
    print(
        table(
            rows,
            [
                ("variant", "variant"),
                ("ms_per_image", "ms/img"),
                ("speedup", "x base"),
                ("label_agreement", "agree"),
                ("mean_psnr_db", "PSNR dB"),
                ("note", "note"),
            ],
        )
    )
    print(
        f"\nclassifier on this workload: accuracy {rows[0].get('accuracy'):.3f}, prediction "
        f"entropy {entropy['entropy_bits']:.2f} bits over {entropy['classes_predicted']} classes"
    )
    section = "decode_quick" if args.quick else ("decode_subset" if args.only else "decode")
    path = write_section(section, result)
    print(f"results: {path}")
    return result


if __name__ == "__main__":
    main()
