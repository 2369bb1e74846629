"""Markdown tables from benchmarks/results/vision.json, for docs/benchmarks/vision.md.

    python -m benchmarks.vision.report                 # print the tables
    python -m benchmarks.vision.report --write docs/benchmarks/vision.md
    python -m benchmarks.vision.report --quick         # the smoke sections instead

``--write`` replaces the generated block of the page (between its BEGIN/END GENERATED
markers) with the tables; a section missing from the results, or written by an older
version of a benchmark, reads "to be regenerated" with the command that produces it.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from benchmarks.vision.common import RESULTS

BEGIN = (
    "<!-- BEGIN GENERATED: python -m benchmarks.vision.report --write docs/benchmarks/vision.md -->"
)
END = "<!-- END GENERATED -->"


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isinf(value):
            return "∞"
        return f"{value:.{digits}f}"
    return str(value)


def _ratio(row: dict[str, Any] | None) -> str:
    """``4.31x [4.10, 4.52]``: a ratio with its interval."""
    if not row:
        return "–"
    low, high = row["ci"]
    return f"{row['speedup']:.2f}x [{low:.2f}, {high:.2f}]"


def _p99(row: dict[str, Any] | None) -> str:
    if not row:
        return "–"
    if row.get("p99_speedup") is None:
        return row.get("p99_note") or "–"
    return f"{row['p99_speedup']:.2f}x"


def _coverage(row: dict[str, Any] | None) -> str:
    if not row:
        return "–"
    return f"{row['inputs_timed']} of {row['inputs_total']}, {row['samples_per_side']} samples"


def _load(section: dict[str, Any]) -> str:
    from pipetune.core.measure.load import describe, noisy_warning

    load = section.get("host_load") or {}
    if not load:
        return "host load not recorded"
    return noisy_warning(load) or f"host load: {describe(load)}"


def decode_table(section: dict[str, Any]) -> str:
    lines = [
        "| variant | ms / image | vs teaching | vs library defaults | P99 vs teaching | "
        "worst case (small images) | label agreement | PSNR (dB) | timed on (inputs, samples "
        "per side) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in section["rows"]:
        vs = row.get("vs_teaching")
        if vs is None and row.get("role") != "teaching":
            lines.append(f"| {row['variant']} | {row.get('note', '')} | | | | | | | |")
            continue
        ms = row.get("ms_per_image") or (vs or {}).get("ms_per_item", {}).get("b")
        lines.append(
            f"| {row['variant']} | {_cell(ms, 1)} | {_ratio(vs) if vs else '1.00x'} | "
            f"{_ratio(row.get('vs_library'))} | {_p99(vs)} | {_ratio(row.get('worst_case'))} | "
            f"{_cell(row.get('label_agreement'), 3)} | {_cell(row.get('mean_psnr_db'), 1)} | "
            f"{_coverage(vs)} |"
        )
    plain = section.get("plain_stage", {})
    notes = []
    for key, label in (("pil", "decoder reachable"), ("pil_closure", "decoder out of reach")):
        record = plain.get(key)
        if record:
            measured = record.get("measured", {})
            notes.append(
                f"* plain Pillow stage, {label}: the proposal shows "
                f"{_cell(measured.get('speedup'))}x measured on {measured.get('images')} of the "
                f"workload's JPEGs ({measured.get('how')}); "
                + ("applied by pipetune." if record["applicable"] else "shown as an edit.")
            )
    for row in section["rows"]:
        if row.get("vs_written"):
            notes.append(
                f"* {row['variant']}: {_ratio(row['vs_written'])} the stage as written, side "
                f"by side ({_coverage(row['vs_written'])})"
            )
    library = section.get("library_defaults", {})
    if library:
        sweep = ", ".join(f"{r['workers']}: {r['speedup']:.2f}x" for r in library.get("sweep", []))
        notes.append(
            f"* library defaults' decode threads, measured: {sweep} (best {library['workers']})"
        )
    return "\n".join([*lines, "", *notes])


def frame_table(section: dict[str, Any]) -> str:
    lines = [
        "| variant | vs as written | vs batched by 16 | P99 vs as written | worst case "
        "(a scene change every frame) | per-frame agreement | model runs on | events in time | "
        "timed on (inputs, samples per side) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in section["rows"]:
        vs = row.get("vs_teaching")
        events = (
            f"{row['events_in_time']}/{row['events']} (max {row['max_latency']} frames)"
            if row.get("events") is not None
            else "–"
        )
        lines.append(
            f"| {row['variant']} | {_ratio(vs) if vs else '1.00x'} | "
            f"{_ratio(row.get('vs_library'))} | {_p99(vs)} | {_ratio(row.get('worst_case'))} | "
            f"{_cell(row.get('frame_agreement'), 4)} | {_cell(row.get('model_run_fraction'), 3)} | "
            f"{events} | {_coverage(vs)} |"
        )
    return "\n".join(lines)


SECTIONS = (
    ("decode", "Decode", decode_table, "python -m benchmarks.vision.decode"),
    ("frame_skip", "Frame skipping: clips", frame_table, "python -m benchmarks.vision.frame_skip"),
    (
        "frame_items",
        "Frame skipping: frames as items",
        frame_table,
        "python -m benchmarks.vision.frame_skip",
    ),
)


def render(data: dict[str, Any], quick: bool = False) -> str:
    """Every section's table (or "to be regenerated" with its command)."""
    out = []
    for key, title, render_table, command in SECTIONS:
        section = data.get(f"{key}_quick" if quick else key)
        out.append(f"### {title}\n")
        rows = (section or {}).get("rows") or [{}]
        if section is None or not any("vs_teaching" in r for r in rows):
            out.append(f"To be regenerated: `{command}`.\n")
            continue
        out.append(f"`{section['command']}` — {_load(section)}; threads {section['threads']}\n")
        out.append(render_table(section) + "\n")
    return "\n".join(out)


def write(page: Path, text: str) -> None:
    content = page.read_text()
    if BEGIN not in content or END not in content:
        raise SystemExit(f"{page} has no generated block ({BEGIN} ... {END})")
    head, rest = content.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    page.write_text(f"{head}{BEGIN}\n\n{text}\n{END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, help="the page whose generated block to replace")
    parser.add_argument("--quick", action="store_true", help="render the smoke sections")
    args = parser.parse_args(argv)
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    text = render(data, args.quick)
    if args.write:
        write(args.write, text)
    else:
        print(text)


if __name__ == "__main__":
    main()
