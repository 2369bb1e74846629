"""``pipetune scan`` speed on a large real codebase: the installed transformers source.

Run from the repository root::

    python -m benchmarks.scan.speed            # the whole package (~1.2 M lines), minutes
    python -m benchmarks.scan.speed --quick    # one sub-package, a few seconds

Side by side, in one run, over the same files (located with ``importlib.util.find_spec``:
transformers is never imported):

* ``parse only``: read + decode + ``ast.parse`` of every file, nothing else: the floor any
  ast-based scanner pays;
* ``scan, 1 process``: ``pipetune.scan.scan`` with every built-in rule (21 rules from six
  plugins), one process;
* ``scan, --jobs 2``: the same in two spawned worker processes.

A rate, not a comparison of two pipelines: each variant runs ``--repeats`` times,
interleaved (every repeat runs all three, the order rotating), and its best and median
are reported with the inputs they rest on (files and physical lines of the files that
parsed) and the number of samples (repeats). The target (issue 9) is >= 20,000 lines/s.
The machine and the host's load over the whole run (run-queue wait, other processes' CPU,
load average) are recorded: figures from a busy machine are lower bounds.

Results: a table on stdout and the ``speed`` section of ``benchmarks/results/scan.json``
(``speed_quick`` for a smoke run; nothing is written with ``--path``).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path
from typing import Any

from benchmarks import common
from pipetune.core.kernel.manager import get_plugin_manager
from pipetune.core.measure.load import describe
from pipetune.core.runtime.machine import detect_machine
from pipetune.scan.config import ScanOptions
from pipetune.scan.engine import scan
from pipetune.scan.files import Unreadable, discover, read_source
from pipetune.scan.ruleset import collect_rules

RESULTS = Path(__file__).resolve().parents[1] / "results" / "scan.json"
TARGET_LINES_PER_S = 20_000


def transformers_source(quick: bool) -> Path:
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("transformers is not installed: pip install 'pipetune[nlp]'")
    root = Path(spec.submodule_search_locations[0])
    return root / "models" / "bert" if quick else root


def parse_only(files: list[Path]) -> tuple[float, int]:
    import ast

    start = time.perf_counter()
    lines = 0
    for path in files:
        try:
            source = read_source(path)
            ast.parse(source)
        except (Unreadable, SyntaxError, ValueError):
            continue
        lines += source.count("\n")
    return time.perf_counter() - start, lines


def run_variants(variants: list[tuple[str, Any]], repeats: int) -> list[dict[str, Any]]:
    """Each variant ``repeats`` times, interleaved: every repeat runs all of them, the order
    rotating between repeats, so drift on the host falls on every variant alike."""
    times: dict[str, list[float]] = {name: [] for name, _ in variants}
    counts: dict[str, tuple[int, int]] = {}
    for repeat in range(repeats):
        shift = repeat % len(variants)
        for name, fn in variants[shift:] + variants[:shift]:
            seconds, lines, findings = fn()
            times[name].append(seconds)
            counts[name] = (lines, findings)
    rows = []
    for name, _ in variants:
        best, median = min(times[name]), statistics.median(times[name])
        lines, findings = counts[name]
        rows.append(
            {
                "variant": name,
                "seconds": times[name],
                "samples": len(times[name]),
                "best_s": best,
                "median_s": median,
                "lines": lines,
                "findings": findings,
                "lines_per_s_best": lines / best,
                "lines_per_s_median": lines / median,
            }
        )
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="scan one sub-package only")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--path", type=Path, help="scan this folder instead of transformers")
    args = parser.parse_args(argv)
    repeats = args.repeats or (1 if args.quick else 3)
    root = args.path or transformers_source(args.quick)
    files = list(discover([root]).files)
    pm = get_plugin_manager(entry_points=False)
    rules = collect_rules(pm)

    def parse() -> tuple[float, int, int]:
        seconds, lines = parse_only(files)
        return seconds, lines, 0

    def scanned(jobs: int) -> Any:
        def go() -> tuple[float, int, int]:
            result = scan([root], pm, ScanOptions(jobs=jobs), root=root, ruleset=rules)
            return result.seconds, result.lines, len(result.findings)

        return go

    variants = [
        ("parse only", parse),
        ("scan, 1 process", scanned(1)),
        ("scan, --jobs 2", scanned(2)),
    ]
    with common.host_load() as load:
        rows = run_variants(variants, repeats)
    single = rows[1]
    report = {
        "benchmark": "scan speed",
        "command": "python -m benchmarks.scan.speed" + (" --quick" if args.quick else ""),
        "codebase": str(root),
        "files": len(files),
        "rules": len(rules.rules),
        "repeats": repeats,
        "quick": args.quick,
        "inputs": {"files": len(files), "lines": rows[1]["lines"]},
        "samples_per_variant": repeats,
        "host_load": load,
        "machine": detect_machine().to_dict(),
        "variants": rows,
        "scan_vs_parse_only": single["best_s"] / rows[0]["best_s"],
        "jobs2_speedup": single["best_s"] / rows[2]["best_s"],
        "target_lines_per_s": TARGET_LINES_PER_S,
        "meets_target": single["lines_per_s_best"] >= TARGET_LINES_PER_S,
    }
    print(f"{root}: {len(files)} files, {len(rules.rules)} rules, {repeats} repeat(s)")
    print(f"host load: {describe(load)}")
    print(f"{'variant':<18} {'lines':>10} {'best s':>8} {'median s':>9} {'lines/s':>10} findings")
    for row in rows:
        print(
            f"{row['variant']:<18} {row['lines']:>10,} {row['best_s']:>8.2f} "
            f"{row['median_s']:>9.2f} {row['lines_per_s_best']:>10,.0f} {row['findings']}"
        )
    print(
        f"scan / parse-only time: {report['scan_vs_parse_only']:.2f}x; "
        f"--jobs 2 speedup: {report['jobs2_speedup']:.2f}x; "
        f"target {TARGET_LINES_PER_S:,} lines/s: {'met' if report['meets_target'] else 'NOT met'}"
    )
    if args.path is None:
        path = common.write_section(
            "scan", "speed" + ("_quick" if args.quick else ""), report, flat_section="speed"
        )
        print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
