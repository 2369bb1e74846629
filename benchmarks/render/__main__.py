"""``python -m benchmarks.render [--check] [--list]``: see :mod:`benchmarks.render`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.render import blocks
from benchmarks.render.documents import ROOT, update, where_used
from benchmarks.render.registry import BLOCKS, RESULTS, Results, ResultsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.render",
        description="Generate every measured figure in README.md and docs/ from "
        "benchmarks/results/*.json.",
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 naming each stale block"
    )
    parser.add_argument(
        "--list", action="store_true", help="every block, its results and where it is used"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (README.md, docs/)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the results folder")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for name, used in sorted(where_used(args.root).items()):
                sources = BLOCKS[name].source_text if name in BLOCKS else "(no renderer)"
                print(f"{name}: {sources}; in {', '.join(used) or 'no document'}")
            return 0
        stale = update(args.root, Results(args.results), check=args.check)
    except (blocks.BlockError, ResultsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for disagreement in stale:
            print(disagreement, file=sys.stderr)
        return 1 if stale else 0
    for disagreement in stale:
        print(f"updated {disagreement.path}: {disagreement.block}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
