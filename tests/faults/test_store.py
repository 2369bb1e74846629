"""The run store: a foreign SQLite file is never written; a damaged row shows as damaged
and the other runs are still listed."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.faults.conftest import Project, digest

pytestmark = pytest.mark.slow  # subprocess fault tests: each case runs pipetune in a child process


def test_a_foreign_sqlite_file_with_a_runs_table_is_left_untouched(project: Project):
    project.home.mkdir()
    path = project.home / "runs.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE runs (id TEXT, owner TEXT)")
        db.execute("INSERT INTO runs VALUES ('1', 'someone else')")
    before = digest(path)
    for command in (["history"], ["history", "latest"], ["compare", "a", "b"]):
        result = project.run(*command)
        result.assert_clean(2, "not a pipetune run store", "left untouched")
    assert digest(path) == before
    assert sorted(p.name for p in project.home.iterdir()) == ["runs.db"]  # no -wal, no -shm


def test_another_applications_database_is_refused_by_its_id(project: Project):
    project.home.mkdir()
    path = project.home / "runs.db"
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA application_id = 1234")
        db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    before = digest(path)
    project.run("history").assert_clean(2, "another application's SQLite database")
    assert digest(path) == before


def test_a_damaged_row_is_shown_as_damaged_and_the_rest_listed(project: Project):
    project.write(
        "quick.py",
        """
        from pipetune import Pipeline, Stage, Workload
        pipeline = Pipeline("quick", (Stage("ident", lambda x: x),), output_kind="labels")
        workload = Workload(items=tuple(range(6)), warmup=0, repeats=1)
        """,
    )
    for _ in range(2):
        project.run("optimize", "quick.py", "--quick", "-q").assert_clean(0)
    runs = project.runs()
    damaged, healthy = runs[1][0], runs[0][0]
    with sqlite3.connect(project.home / "runs.db") as db:
        db.execute("UPDATE runs SET summary = '{not json', report = '[' WHERE id = ?", (damaged,))
        db.execute("UPDATE trials SET data = 'garbage' WHERE run_id = ?", (damaged,))
    listed = project.run("history", "--json")
    listed.assert_clean(0)
    rows = {row["id"]: row for row in json.loads(listed.out)}
    assert rows[damaged]["status"] == "damaged" and "summary" in rows[damaged]["damage"]
    assert rows[healthy]["status"] == "finished" and rows[healthy]["damage"] is None
    table = project.run("history")
    table.assert_clean(0, "damaged", f"run {damaged} is damaged")
    shown = project.run("history", damaged)
    shown.assert_clean(0, "is damaged")
    project.run("compare", damaged, healthy).assert_clean(2, f"run {damaged} is damaged")
    project.run("compare", healthy, healthy).assert_clean(0)
