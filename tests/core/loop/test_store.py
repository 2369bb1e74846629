"""The run store: nothing finished is lost, two writers coexist, damage is never
overwritten."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipetune.core.kernel.errors import StoreError
from pipetune.core.kernel.results import Change, Fidelity, Recipe, Trial
from pipetune.core.loop.store import DB_NAME, RunStore

SRC = str(Path(__file__).resolve().parents[3] / "src")


def trial(i: int, status: str = "accepted") -> Trial:
    return Trial(
        proposal=f"toy.change{i}",
        status=status,  # type: ignore[arg-type]
        reason="faster: 1.20x [1.10, 1.30]",
        stage="work",
        plugin="toy",
        speedup=1.2,
        speedup_ci=(1.1, 1.3),
        fidelity=Fidelity(metric="label_agreement", value=1.0, threshold=0.99, n=30),
        change=Change(proposal=f"toy.change{i}", plugin="toy", stage="work", params={"k": i}),
    )


def test_a_run_round_trips(tmp_path):
    with RunStore(tmp_path) as store:
        run = store.start_run("toy", machine_fingerprint="abc", target="app:build")
        store.add_trial(run, 1, trial(1))
        store.add_trial(run, 2, trial(2, "rejected"))
        recipe = Recipe(pipeline="toy", changes=(trial(1).change,), stages=("parse", "work"))
        store.add_recipe(run, recipe)
        store.finish_run(run, "finished", summary={"accepted": 1}, report={"pipeline": "toy"})
    with RunStore(tmp_path) as store:
        record = store.run(run[:10])  # a unique prefix is enough
        assert record.status == "finished" and record.target == "app:build"
        assert record.summary == {"accepted": 1} and record.report == {"pipeline": "toy"}
        assert [t.proposal for t in store.trials(run)] == ["toy.change1", "toy.change2"]
        assert store.trials(run)[0] == trial(1)
        assert store.recipe(run) == recipe
        assert store.run("latest").id == run


def test_an_interrupted_run_keeps_every_finished_trial(tmp_path):
    store = RunStore(tmp_path)
    run = store.start_run("toy", machine_fingerprint="abc")
    store.add_trial(run, 1, trial(1))
    store.add_trial(run, 2, trial(2))
    store.close()  # the process dies here: finish_run never happens
    with RunStore(tmp_path) as again:
        record = again.runs()[0]
        assert record.id == run and record.display_status == "incomplete"
        assert len(again.trials(run)) == 2


WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {src!r})
    from pipetune.core.loop.store import RunStore
    from pipetune.core.kernel.results import Trial
    store = RunStore({folder!r}, busy_timeout_s=30)
    run = store.start_run("p" + sys.argv[1], machine_fingerprint="f")
    for i in range(40):
        store.add_trial(run, i, Trial(proposal=f"x.{{i}}", status="rejected", reason="r"))
    store.finish_run(run, "finished")
    print(run)
    """
)


@pytest.mark.slow
def test_two_processes_writing_at_once_lose_nothing(tmp_path):
    RunStore(tmp_path).close()
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(src=SRC, folder=str(tmp_path)))
    procs = [
        subprocess.Popen([sys.executable, str(script), str(i)], stdout=subprocess.PIPE, text=True)
        for i in range(2)
    ]
    runs = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0
        runs.append(out.strip())
    with RunStore(tmp_path) as store:
        for run in runs:
            assert store.run(run).status == "finished"
            assert len(store.trials(run)) == 40


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_corrupted_store_is_reported_and_left_untouched(tmp_path):
    db = tmp_path / DB_NAME
    db.write_bytes(b"this is not an sqlite database, it is a text file" * 100)
    before = _digest(db)
    with pytest.raises(StoreError, match=r"corrupted .*left untouched"):
        RunStore(tmp_path)
    assert _digest(db) == before


@pytest.mark.slow
def test_a_damaged_page_is_reported_and_left_untouched(tmp_path):
    with RunStore(tmp_path) as store:
        run = store.start_run("toy", machine_fingerprint="abc")
        for i in range(200):
            store.add_trial(run, i, trial(i))
    db = tmp_path / DB_NAME
    data = bytearray(db.read_bytes())
    for page in range(2, len(data) // 4096, 3):  # smash every third page's cell pointers
        data[page * 4096 + 8 : page * 4096 + 1000] = b"\xff" * 992
    db.write_bytes(bytes(data))
    for sidecar in ("-wal", "-shm"):
        Path(str(db) + sidecar).unlink(missing_ok=True)
    before = _digest(db)
    with pytest.raises(StoreError, match="corrupted"):
        RunStore(tmp_path)
    assert _digest(db) == before


def test_a_locked_store_says_so_and_writes_nothing(tmp_path):
    RunStore(tmp_path).close()
    holder = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = RunStore.__new__(RunStore)
        with pytest.raises(StoreError, match=r"locked by another process.*nothing was written"):
            store = RunStore(tmp_path, busy_timeout_s=0.2)
            store.start_run("toy", machine_fingerprint="abc")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with RunStore(tmp_path) as store:
        assert store.runs() == []


def test_a_foreign_sqlite_file_is_not_taken_over(tmp_path):
    db = tmp_path / DB_NAME
    other = sqlite3.connect(db)
    other.execute("CREATE TABLE customers (id INTEGER)")
    other.commit()
    other.close()
    with pytest.raises(StoreError, match="not a pipetune run store"):
        RunStore(tmp_path)
    tables = sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall()
    assert tables == [("customers",)]


def test_unknown_and_ambiguous_run_ids_are_clear(tmp_path):
    with RunStore(tmp_path) as store:
        with pytest.raises(StoreError, match="no run 'nope'"):
            store.run("nope")
        store.start_run("a", machine_fingerprint="f")
        store.start_run("b", machine_fingerprint="f")
        with pytest.raises(StoreError, match="ambiguous"):
            store.run("2")


def test_a_new_store_carries_pipetunes_application_id(tmp_path):
    from pipetune.core.loop.store import APPLICATION_ID

    RunStore(tmp_path).close()
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_foreign_database_with_a_runs_table_is_refused_untouched(tmp_path):
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id TEXT, created TEXT)")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match="not a pipetune run store"):
        RunStore(tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


def test_a_store_from_before_the_application_id_is_adopted(tmp_path):
    from pipetune.core.loop.store import APPLICATION_ID

    with RunStore(tmp_path) as store:
        store.start_run("p", machine_fingerprint="m")
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("PRAGMA application_id = 0")
    with RunStore(tmp_path) as store:
        assert len(store.runs()) == 1
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID


def test_a_damaged_row_is_listed_as_damaged_beside_the_others(tmp_path):
    with RunStore(tmp_path) as store:
        bad = store.start_run("p", machine_fingerprint="m")
        good = store.start_run("p", machine_fingerprint="m")
        store.add_trial(bad, 1, trial(1))
        store.finish_run(good, "finished", summary={"trials": 0})
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        db.execute("UPDATE runs SET summary = '{oops' WHERE id = ?", (bad,))
        db.execute("UPDATE trials SET data = '[1]' WHERE run_id = ?", (bad,))
    with RunStore(tmp_path) as store:
        listed = {run.id: run for run in store.runs()}
        assert listed[bad].display_status == "damaged" and "summary" in listed[bad].damage
        assert listed[good].display_status == "finished"
        assert store.trials(bad) == [] and "trial #1" in store.damaged[0]
