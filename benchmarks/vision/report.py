"""Markdown tables from benchmarks/results/vision.json, for docs/benchmarks/vision.md.

python -m benchmarks.vision.report
"""

from __future__ import annotations

import json
import math
from typing import Any

from benchmarks.vision.common import RESULTS


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}f}"
    return str(value)


def decode_table(section: dict[str, Any]) -> str:
    lines = [
        "| variant | ms / image | speedup | label agreement | PSNR vs baseline (dB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in section["rows"]:
        if "ms_per_image" not in row:
            lines.append(f"| {row['variant']} | {row.get('note', '')} | | | |")
            continue
        lines.append(
            f"| {row['variant']} | {row['ms_per_image']:.1f} | {row['speedup']:.2f}x | "
            f"{row['label_agreement']:.3f} | {_cell(row['mean_psnr_db'], 1)} |"
        )
    return "\n".join(lines)


def frame_table(section: dict[str, Any]) -> str:
    lines = [
        "| variant | frames / s | vs as written | vs batched | per-frame agreement | "
        "model runs on | events in time |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in section["rows"]:
        events = (
            f"{row['events_in_time']}/{row['events']} (max {row['max_latency']} frames)"
            if "events" in row
            else "–"
        )
        lines.append(
            f"| {row['variant']} | {row['frames_per_s']:.1f} | {row['speedup']:.2f}x | "
            f"{row['speedup_vs_batched']:.2f}x | {_cell(row.get('frame_agreement'), 4)} | "
            f"{_cell(row.get('model_run_fraction'), 3)} | {events} |"
        )
    return "\n".join(lines)


def main() -> None:
    data = json.loads(RESULTS.read_text())
    for key, render in (("decode", decode_table), ("frame_skip", frame_table)):
        if key in data:
            section = data[key]
            print(f"## {key}: {section['command']}")
            print(f"machine: {section['machine']}, threads: {section['threads']}\n")
            print(render(section))
            print()


if __name__ == "__main__":
    main()
