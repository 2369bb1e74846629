"""SIGINT at random points of a `pipetune optimize` run: exit 130 within 2 s, the run
recorded as interrupted, every time.

Run from the repository root::

    python -m benchmarks.control.sigint_optimize            # 10 random points
    python -m benchmarks.control.sigint_optimize --quick    # 3 points, a smoke run

A real loop on a small pipeline (a remote lookup that a result cache speeds up, so a
trial is accepted and the run goes through every phase: baseline profile, original
outputs, tuning, the fidelity pass, the speed comparison, the re-profile, the final
profile and the final side-by-side comparison). One uninterrupted run first measures the
timeline; then each of N runs (same command, a fresh run store) gets SIGINT at a time
drawn uniformly between its own first log line (the loop has started and recorded the
run) and the reference run's end. For
each: the phase it was in (the last log line), the exit status, the seconds from the
signal to the exit, and the status the run store recorded. Target: N of N exit 130 within
2 s, recorded ``interrupted``. A run that had already finished when its signal came (the
runs vary in length) is not a point: it is counted apart and another time is drawn.
Results: ``benchmarks/results/control.json`` (key ``sigint_optimize``), with the host load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results" / "control.json"
ROOT = Path(__file__).resolve().parents[2]
#: The target: exit within this many seconds of the signal.
EXIT_WITHIN_S = 2.0

TARGET = textwrap.dedent(
    """
    import time

    from pipetune import Pipeline, Requirements, Stage, Workload


    def lookup(x, *, delay):
        time.sleep(delay)  # a remote lookup: the same keys come back often
        return x % 5


    pipeline = Pipeline(
        "lookups",
        (Stage("lookup", lookup, kind="features", slots={"delay": 0.01}),),
        output_kind="labels",
    )
    workload = Workload(items=tuple([1, 2, 3, 1, 1, 2, 1, 4, 1, 1] * 8), warmup=0, repeats=1)
    requirements = Requirements(optimize_for="p50")
    """
)


def _command(folder: Path) -> list[str]:
    return [sys.executable, "-m", "pipetune", "optimize", str(folder / "lookups.py"), "--quick"]


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ, PIPETUNE_HOME=str(home), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


class _Run:
    """One `pipetune optimize` process, its stderr lines timestamped as they arrive."""

    def __init__(self, folder: Path, home: Path):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            _command(folder),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(home),
            cwd=folder,
        )
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append((time.monotonic() - self.started, line.rstrip()))

    def first_log(self, timeout: float = 120.0) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for at, line in list(self.lines):
                if line.startswith("·"):
                    return at
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        seen = "\n".join(line for _, line in self.lines)
        raise RuntimeError(f"the loop never logged a line:\n{seen}")

    def phase(self, before: float) -> str:
        seen = [line for at, line in list(self.lines) if at <= before and line.startswith("·")]
        return seen[-1].lstrip("· ") if seen else "(start-up)"


def _stored_status(home: Path) -> str | None:
    path = home / "runs.db"
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT status FROM runs ORDER BY created DESC, rowid DESC").fetchone()
    return row[0] if row else None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 points instead of 10")
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args(argv)
    points = args.points or (3 if args.quick else 10)
    rng = random.Random(args.seed)
    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="pipetune-sigint-") as tmp:
        folder = Path(tmp)
        (folder / "lookups.py").write_text(TARGET)
        reference = _Run(folder, folder / "reference-home")
        first = reference.first_log()
        reference.proc.wait()
        reference.reader.join(5)
        total = time.monotonic() - reference.started
        if reference.proc.returncode != 0:
            raise SystemExit(f"the reference run failed ({reference.proc.returncode})")
        print(f"reference run: {total:.1f} s, first log line at {first:.1f} s", flush=True)
        late = 0
        number = 0
        while number < points:
            after_start = rng.uniform(0.0, 0.95 * total - first)
            home = folder / f"home-{number}-{late}"
            run = _Run(folder, home)
            offset = run.first_log() + after_start
            time.sleep(max(0.0, offset - (time.monotonic() - run.started)))
            sent = time.monotonic()
            run.proc.send_signal(signal.SIGINT)
            try:
                code = run.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                code = run.proc.wait()
            exited = time.monotonic() - sent
            run.reader.join(5)
            status = _stored_status(home)
            if code in (0, 3) and status == "finished":  # it had finished: draw again
                late += 1
                print(f"    at {offset:5.2f} s the run had already finished; drawing again")
                continue
            number += 1
            ok = code == 130 and exited <= EXIT_WITHIN_S and status == "interrupted"
            row = {
                "offset_s": round(offset, 3),
                "phase": run.phase(sent - run.started),
                "exit": code,
                "exit_after_s": round(exited, 3),
                "stored_status": status,
                "ok": ok,
            }
            if not ok:
                row["stderr_tail"] = [line for _, line in run.lines[-8:]]
            results.append(row)
            print(
                f"{number:2d}. at {offset:5.2f} s ({row['phase'][:48]}): exit {code} after "
                f"{exited:.2f} s, stored {status}: {'ok' if ok else 'FAILED'}",
                flush=True,
            )
    passed = sum(r["ok"] for r in results)
    result = {
        "benchmark": "control.sigint_optimize",
        "command": " ".join(
            ["python -m benchmarks.control.sigint_optimize", *(argv or sys.argv[1:])]
        ),
        "target": f"exit 130 within {EXIT_WITHIN_S:g} s, run recorded as interrupted",
        "reference_run_s": round(total, 2),
        "points": results,
        "late_draws": late,
        "passed": passed,
        "of": len(results),
        "max_exit_after_s": max((r["exit_after_s"] for r in results), default=None),
        "host_load_1_5_15": {"before": load_before, "after": os.getloadavg()},
    }
    print(f"\n{passed} of {len(results)} met the target")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    existing["sigint_optimize"] = result
    RESULTS.write_text(json.dumps(existing, indent=2) + "\n")
    return result


if __name__ == "__main__":
    outcome = main()
    sys.exit(0 if outcome["passed"] == outcome["of"] else 1)
