"""How long ``pipetune demo`` takes on this machine, run as ``make demo`` runs it (less the
set-up of the virtual environment).

    python -m benchmarks.nlp.demo_time     # the demo itself: one run
    python -m benchmarks.nlp.demo_time --quick --out /tmp/nlp-demo-time.json  # `demo --quick`

One run of the CLI in a subprocess, from this interpreter's environment (``<venv>/bin/pipetune
demo``; ``python -m pipetune demo`` where that script is missing), in a fresh temporary
folder (its run store and HTML report land there), with ``COLUMNS=1000`` so that no printed
line wraps. Recorded: the wall time, the exit status (3: the demo ran to the end and some
requirement is unmet or unproven), whether the demo's one-off set-up ran (the classifier
head and the baseline's outputs, cached after a first run), and the headline it printed:
the throughput row of its "original → optimized" table, the coverage and host-load lines
under it, and its requirements verdict.

The host's load: :class:`~pipetune.core.measure.load.HostLoadMeter` reads this process's
own threads, which only wait here, so for the subprocess this records

* the 1-minute load average before and after;
* other processes' CPU: the host's busy CPU time (``/proc/stat``) less the demo's (its
  rusage, children included) and this process's, over the wall time;
* the demo's run-queue wait: its threads' ``/proc/PID/task/*/schedstat``, sampled every
  0.5 s (a thread that ends between two samples loses at most its last 0.5 s).

Target: under 5 minutes. Results: key ``demo_time`` of ``benchmarks/results/nlp.json``
(``demo_time_quick`` for ``--quick``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import write_key

RESULTS = Path(__file__).resolve().parents[1] / "results" / "nlp.json"
KEY = "demo_time"
TARGET_S = 300.0
SAMPLE_S = 0.5
_THROUGHPUT = re.compile(r"^\s*throughput\s.*?([\d,.]+)x\s*\[([\d,.]+),\s*([\d,.]+)\]")


def command(quick: bool) -> list[str]:
    """``pipetune demo`` from this interpreter's environment."""
    script = Path(sys.executable).parent / "pipetune"
    base = [str(script)] if script.is_file() else [sys.executable, "-m", "pipetune"]
    return [*base, "demo", *(["--quick"] if quick else [])]


def run_demo(argv: list[str], folder: Path) -> dict[str, Any]:
    """Run ``argv`` in ``folder``; its wall time, exit status, output and host load."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="1000")
    out, err = folder / "stdout.txt", folder / "stderr.txt"
    load_before = os.getloadavg()[0]
    host0, own0 = _host_busy_s(), _cpu_s(resource.RUSAGE_SELF)
    child0 = _cpu_s(resource.RUSAGE_CHILDREN)
    threads: dict[int, tuple[float, float]] = {}
    started = time.perf_counter()
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(argv, cwd=folder, env=env, stdout=stdout, stderr=stderr)
        while process.poll() is None:
            threads.update(_schedstat(process.pid))
            time.sleep(SAMPLE_S)
    wall = time.perf_counter() - started
    demo_cpu = _cpu_s(resource.RUSAGE_CHILDREN) - child0
    own = _cpu_s(resource.RUSAGE_SELF) - own0
    host = _host_busy_s()
    other = None if host is None or host0 is None else max(0.0, host - host0 - demo_cpu - own)
    on_cpu = sum(cpu for cpu, _ in threads.values())
    waiting = sum(wait for _, wait in threads.values())
    cores = os.cpu_count() or 1
    return {
        "wall_s": wall,
        "exit_code": process.returncode,
        "stdout": out.read_text(errors="replace"),
        "stderr": err.read_text(errors="replace"),
        "host_load": {
            "load_average_before": load_before,
            "load_average_after": os.getloadavg()[0],
            "other_cpu": None if other is None else other / wall,
            "cores": cores,
            "demo_cpu_s": demo_cpu,
            "demo_run_queue_wait": waiting / (on_cpu + waiting) if on_cpu + waiting else None,
            "demo_threads_sampled": len(threads),
            "priority": _priority(),
            "how": "load averages; other processes = /proc/stat busy time less the demo's "
            "and this process's CPU; the demo's run-queue wait from its threads' "
            f"schedstat sampled every {SAMPLE_S} s",
        },
    }


def headline(stdout: str) -> dict[str, Any]:
    """What the demo printed as its headline (``None`` for what it did not print)."""
    lines = [line.strip() for line in stdout.splitlines()]
    found: dict[str, Any] = {"line": None, "speedup": None, "ci": None}
    for line in lines:
        match = _THROUGHPUT.match(line)
        if match:
            value, low, high = (float(g.replace(",", "")) for g in match.groups())
            found.update(line=" ".join(line.split()), speedup=value, ci=[low, high])
            break
    found["coverage"] = next((x for x in lines if x.startswith("timed on ")), None)
    found["host_load"] = next((x for x in lines if x.startswith("host load while")), None)
    found["requirements"] = next((x for x in lines if x.startswith("requirements ")), None)
    return found


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="`pipetune demo --quick`: a smoke run")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from pipetune.core.runtime.machine import detect_machine

    argv_demo = command(args.quick)
    print(f"running {' '.join(argv_demo)}", flush=True)
    with tempfile.TemporaryDirectory(prefix="pipetune-demo-time-") as folder:
        ran = run_demo(argv_demo, Path(folder))
    stdout, stderr = ran.pop("stdout"), ran.pop("stderr")
    result = {
        "command": " ".join(["python -m benchmarks.nlp.demo_time", *(argv or sys.argv[1:])]),
        "quick": args.quick,
        "ran": " ".join(["pipetune", *argv_demo[argv_demo.index("demo") :]]),
        "machine": detect_machine().to_dict(),
        "target_s": TARGET_S,
        **ran,
        "setup_ran": "(once, cached)" in stderr,
        "headline": headline(stdout),
        "stderr_tail": stderr.splitlines()[-5:],
    }
    write_key(args.out, KEY + ("_quick" if args.quick else ""), result)
    print(
        f"{result['ran']}: {result['wall_s']:.0f} s, exit {result['exit_code']}; "
        f"{result['headline']['line']}; {result['headline']['requirements']}"
    )
    print(f"written to {args.out}")
    return result


def _schedstat(pid: int) -> dict[int, tuple[float, float]]:
    """(on-CPU seconds, run-queue seconds) of each of ``pid``'s threads, now."""
    out: dict[int, tuple[float, float]] = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                on_cpu, waiting, _ = handle.read().split()
        except (OSError, ValueError):
            continue  # the thread ended in between
        out[int(task)] = (int(on_cpu) / 1e9, int(waiting) / 1e9)
    return out


def _host_busy_s() -> float | None:
    """Busy CPU seconds of the whole host since boot (``/proc/stat``), or ``None``."""
    try:
        with open("/proc/stat") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    ticks = [int(v) for v in fields[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _priority() -> str:
    """This process's scheduling (the demo inherits it): ``normal``, or how it differs."""
    policy = os.sched_getscheduler(0)
    names = {os.SCHED_OTHER: "normal", os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle"}
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    name = names.get(policy, str(policy))
    return name if name == "normal" and nice == 0 else f"{name}, nice {nice}"


def _cpu_s(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
