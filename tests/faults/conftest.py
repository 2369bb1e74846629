"""The fault-injection suite: hostile pipelines, configs, plugins and stores, each run as a
real ``pipetune`` process (``python -m pipetune``) and judged on its exit code, its
message and what the run store holds afterwards.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


@dataclass
class Finished:
    """A finished ``pipetune`` process."""

    code: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err

    def assert_clean(self, code: int, *fragments: str) -> None:
        """Exit ``code``, every fragment in the output, no traceback, no internal error."""
        assert self.code == code, f"exit {self.code}, not {code}:\n{self.text}"
        assert "Traceback" not in self.text, self.text
        assert "internal error" not in self.text, self.text
        for fragment in fragments:
            assert fragment in self.text, f"{fragment!r} not in:\n{self.text}"


class Project:
    """A temporary project folder with its own run store, and ways to run pipetune in it."""

    def __init__(self, root: Path):
        self.root = root
        self.home = root / ".pipetune"
        self.env = dict(os.environ)
        self.env.update(
            PYTHONPATH=os.pathsep.join([str(SRC), str(root), self.env.get("PYTHONPATH", "")]),
            PIPETUNE_HOME=str(self.home),
            PYTHONUNBUFFERED="1",
            HF_HUB_OFFLINE="1",
            TRANSFORMERS_OFFLINE="1",
        )
        for name in ("PIPETUNE_STRICT_PLUGINS", "PIPETUNE_DISABLE_PLUGINS", "PIPETUNE_ISOLATE"):
            self.env.pop(name, None)

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pipetune", *args]

    def run(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Finished:
        started = time.monotonic()
        proc = subprocess.run(
            self.command(*args),
            cwd=self.root,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Finished(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args),
            cwd=self.root,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def signal_when(
        self,
        proc: subprocess.Popen[str],
        marker: Path,
        signals: Sequence[int] = (signal.SIGINT,),
        gap_s: float = 0.0,
        timeout: float = 120,
    ) -> tuple[Finished, float]:
        """Send ``signals`` once ``marker`` exists; returns the result and the seconds from
        the last signal to the exit."""
        end = time.monotonic() + timeout
        while not marker.exists() and proc.poll() is None and time.monotonic() < end:
            time.sleep(0.02)
        assert proc.poll() is None, "the process ended before the marker appeared"
        for number in signals:
            proc.send_signal(number)
            time.sleep(gap_s)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=60)
        return Finished(proc.returncode, out, err, 0.0), time.monotonic() - sent

    def runs(self) -> list[tuple[str, str]]:
        """(id, status) of every stored run, newest first (read-only)."""
        path = self.home / "runs.db"
        if not path.exists():
            return []
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT id, status FROM runs ORDER BY created DESC").fetchall()


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def strict_env() -> dict[str, str]:
    """Strict mode, with the third-party plugins installed around the tests left out: a
    broken one there must not decide a test about the plugin under test."""
    from importlib.metadata import entry_points

    installed = sorted({ep.name for ep in entry_points(group="pipetune")})
    return {"PIPETUNE_STRICT_PLUGINS": "1", "PIPETUNE_DISABLE_PLUGINS": ",".join(installed)}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: A pipeline whose stage touches ``marker`` once it has run ``after`` inputs, then goes on
#: slowly: a signal sent when the marker appears lands mid-run.
MARKED = """
import pathlib, time
from pipetune import Pipeline, Requirements, Stage, Workload

seen = [0]

def lookup(x, *, delay):
    seen[0] += 1
    if seen[0] == {after}:
        pathlib.Path({marker!r}).touch()
    time.sleep(delay)
    return x % 5

pipeline = Pipeline(
    "lookups",
    (Stage("lookup", lookup, kind="features", slots={{"delay": {delay}}}),),
    output_kind="labels",
)
workload = Workload(items=tuple([1, 2, 3, 1, 1, 2, 1, 4, 1, 1] * 6), warmup=0, repeats=1)
requirements = Requirements(optimize_for="p50")
"""


def marked_target(project: Project, *, after: int, delay: float = 0.01) -> tuple[Path, Path]:
    marker = project.root / "marker"
    path = project.write("lookups.py", MARKED.format(after=after, marker=str(marker), delay=delay))
    return path, marker


HANGS = """
import threading, time
from pipetune import Pipeline, Requirements, Stage, Workload

def work(x):
    if x == {bad}:
        threading.Event().wait()  # hangs for ever
    time.sleep(0.001)
    return x % 3

pipeline = Pipeline("hangs", (Stage("hang", work, kind="features"),), output_kind="labels")
workload = Workload(items=tuple(range(30)), warmup=0, repeats=1)
requirements = Requirements(optimize_for="p50")
"""

Write = Callable[[str, str], Path]
