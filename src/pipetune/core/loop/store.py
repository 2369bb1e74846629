"""The run store: every optimize run, its profiles, trials and recipe, in SQLite.

It lives in ``.pipetune/runs.db`` (``pipetune.core.loop.paths.store_dir``), with artifacts
beside it in ``.pipetune/artifacts`` (content-addressed by
:class:`~pipetune.core.kernel.artifacts.ArtifactStore`).

* **Nothing finished is lost.** Each record is written in its own transaction as soon as
  it exists (a trial the moment it completes), so a run killed half-way keeps its profile
  and every finished trial; it shows as ``incomplete`` in ``pipetune history``.
* **Two runs at once.** The database is in WAL mode (readers never block the writer) and
  every write takes the write lock up front (``BEGIN IMMEDIATE``) and waits up to
  ``busy_timeout_s`` for another writer to finish.
* **A damaged store is never overwritten.** A file that is not a database, a failed
  integrity check, or a lock held longer than the timeout raises
  :class:`~pipetune.core.kernel.errors.StoreError` with the path and what to do; the file is left
  exactly as it was.
* **Only a pipetune store is ever written.** Before any pragma or table is written, an
  existing file must carry pipetune's SQLite application id (:data:`APPLICATION_ID`, in
  the file header) or, for a store from before the id, pipetune's own ``meta`` row and
  ``runs`` table. Anything else (another application's database that happens to have a
  ``runs`` table) is refused, untouched.
* **A damaged row is shown as damaged.** A run whose stored JSON no longer parses is
  listed with status ``damaged`` and what is wrong; the other runs list as usual, and a
  damaged trial or profile row is skipped with a note in :attr:`RunStore.damaged`.
"""

from __future__ import annotations

import datetime as _dt
import json
import secrets
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipetune.core.kernel.artifacts import ArtifactStore
from pipetune.core.kernel.errors import StoreError
from pipetune.core.kernel.results import Profile, Recipe, Trial
from pipetune.core.loop.paths import store_dir

DB_NAME = "runs.db"
#: Bumped when the tables change; a store written by a newer pipetune is refused.
STORE_SCHEMA = 1
#: SQLite's application id for a pipetune run store ("ptrs"), at offset 68 of the header.
APPLICATION_ID = 0x70747273
#: The first bytes of every SQLite 3 database file.
_SQLITE_MAGIC = b"SQLite format 3\x00"

_TABLES = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    created TEXT NOT NULL,
    finished TEXT,
    pipeline TEXT NOT NULL,
    target TEXT,
    status TEXT NOT NULL,
    machine_fingerprint TEXT NOT NULL,
    requirements TEXT,
    summary TEXT,
    report TEXT
);
CREATE TABLE IF NOT EXISTS profiles (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    label TEXT NOT NULL,
    created TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    proposal TEXT NOT NULL,
    status TEXT NOT NULL,
    speedup REAL,
    created TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS recipes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs(id),
    pipeline TEXT NOT NULL,
    created TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS trials_by_run ON trials(run_id, seq);
CREATE INDEX IF NOT EXISTS profiles_by_run ON profiles(run_id);
"""


@dataclass(frozen=True)
class RunRecord:
    """One stored run. ``status``: running (or killed: see :attr:`display_status`),
    finished, interrupted, failed."""

    id: str
    created: str
    pipeline: str
    status: str
    machine_fingerprint: str
    finished: str | None = None
    target: str | None = None
    requirements: Mapping[str, Any] = field(default_factory=dict)
    summary: Mapping[str, Any] = field(default_factory=dict)
    report: Mapping[str, Any] | None = None
    #: What is wrong with the stored row ('' when it reads back whole).
    damage: str = ""

    @property
    def display_status(self) -> str:
        if self.damage:
            return "damaged"
        return "incomplete" if self.status == "running" else self.status


class RunStore:
    """The SQLite run store in ``folder`` (default: ``.pipetune`` or ``$PIPETUNE_HOME``).

    Args:
        folder: the store folder; created if missing.
        busy_timeout_s: how long a write waits for another process's write to finish.
    """

    def __init__(self, folder: str | Path | None = None, *, busy_timeout_s: float = 30.0):
        self.folder = store_dir(folder)
        self.path = self.folder / DB_NAME
        self.busy_timeout_s = busy_timeout_s
        #: Rows skipped while reading because they no longer parse (one note each).
        self.damaged: list[str] = []
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the run store folder {self.folder}: {exc}") from None
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed:
            self._check_header()  # before SQLite touches the file at all
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the run store {self.path}: {exc}") from None
        try:
            if existed:
                self._check_integrity()
                self._check_identity()  # read-only: nothing is written to a foreign file
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
            self._db.execute("PRAGMA foreign_keys=ON")
            with self._write() as db:
                self._ensure_schema(db)
        except StoreError:
            self._db.close()
            raise
        except sqlite3.Error as exc:
            self._db.close()
            raise self._error(exc) from None

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def artifacts(self) -> ArtifactStore:
        return ArtifactStore(self.folder / "artifacts")

    # -- writing ---------------------------------------------------------------------------
    def start_run(
        self,
        pipeline: str,
        *,
        machine_fingerprint: str,
        target: str | None = None,
        requirements: Mapping[str, Any] | None = None,
    ) -> str:
        """Record a new run as ``running``; returns its id."""
        run_id = _new_id()
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, created, pipeline, target, status, machine_fingerprint, "
                "requirements) VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (
                    run_id,
                    _now(),
                    pipeline,
                    target,
                    machine_fingerprint,
                    _dumps(requirements or {}),
                ),
            )
        return run_id

    def add_profile(self, run_id: str, label: str, profile: Profile | Mapping[str, Any]) -> None:
        data = profile.to_dict() if isinstance(profile, Profile) else dict(profile)
        with self._write() as db:
            db.execute(
                "INSERT INTO profiles (run_id, label, created, data) VALUES (?, ?, ?, ?)",
                (run_id, label, _now(), _dumps(data)),
            )

    def add_trial(self, run_id: str, seq: int, trial: Trial) -> None:
        """Write one finished trial (its own transaction: it survives a later crash)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO trials (run_id, seq, proposal, status, speedup, created, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    seq,
                    trial.proposal,
                    trial.status,
                    trial.speedup,
                    _now(),
                    _dumps(trial.to_dict()),
                ),
            )

    def add_recipe(self, run_id: str, recipe: Recipe) -> int:
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO recipes (run_id, pipeline, created, data) VALUES (?, ?, ?, ?)",
                (run_id, recipe.pipeline, _now(), _dumps(recipe.to_dict())),
            )
            return int(cursor.lastrowid or 0)

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        summary: Mapping[str, Any] | None = None,
        report: Mapping[str, Any] | None = None,
    ) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE runs SET status = ?, finished = ?, summary = ?, report = ? WHERE id = ?",
                (
                    status,
                    _now(),
                    _dumps(summary or {}),
                    None if report is None else _dumps(report),
                    run_id,
                ),
            )

    # -- reading ---------------------------------------------------------------------------
    def runs(self, *, limit: int = 50, pipeline: str | None = None) -> list[RunRecord]:
        """The newest runs first."""
        query = "SELECT * FROM runs"
        args: tuple[Any, ...] = ()
        if pipeline:
            query += " WHERE pipeline = ?"
            args = (pipeline,)
        query += " ORDER BY created DESC, rowid DESC LIMIT ?"
        rows = self._read(query, (*args, limit))
        return [self._record(row, with_report=True) for row in rows]  # damage shows here too

    def run(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix, or ``latest``."""
        if ref in ("latest", "last"):
            rows = self._read("SELECT * FROM runs ORDER BY created DESC, rowid DESC LIMIT 1")
        else:
            rows = self._read(
                "SELECT * FROM runs WHERE id = ? OR id LIKE ? ORDER BY created DESC",
                (ref, ref.replace("%", "") + "%"),
            )
            exact = [row for row in rows if row["id"] == ref]
            rows = exact or rows
        if not rows:
            raise StoreError(f"no run {ref!r} in {self.path} (see `pipetune history`)")
        if len(rows) > 1:
            ids = ", ".join(row["id"] for row in rows[:5])
            raise StoreError(f"run id {ref!r} is ambiguous: {ids}")
        return self._record(rows[0], with_report=True)

    def trials(self, run_id: str) -> list[Trial]:
        """The run's trials in order; a damaged row is skipped (noted in :attr:`damaged`)."""
        rows = self._read(
            "SELECT id, seq, data FROM trials WHERE run_id = ? ORDER BY seq, id", (run_id,)
        )
        found = []
        for row in rows:
            trial = self._parse(row["data"], Trial.from_dict, f"trial #{row['seq']} of {run_id}")
            if trial is not None:
                found.append(trial)
        return found

    def profiles(self, run_id: str) -> list[tuple[str, Profile]]:
        """The run's profiles in order; a damaged row is skipped (noted in :attr:`damaged`)."""
        rows = self._read(
            "SELECT label, data FROM profiles WHERE run_id = ? ORDER BY id", (run_id,)
        )
        found = []
        for row in rows:
            what = f"profile {row['label']!r} of {run_id}"
            profile = self._parse(row["data"], Profile.from_dict, what)
            if profile is not None:
                found.append((str(row["label"]), profile))
        return found

    def recipe(self, run_id: str) -> Recipe | None:
        """The run's latest readable recipe (a damaged row is noted in :attr:`damaged`)."""
        rows = self._read(
            "SELECT data FROM recipes WHERE run_id = ? ORDER BY id DESC LIMIT 1", (run_id,)
        )
        if not rows:
            return None
        return self._parse(rows[0]["data"], Recipe.from_dict, f"the recipe of {run_id}")

    def _parse(self, text: Any, build: Any, what: str) -> Any:
        try:
            data = json.loads(text)
            if not isinstance(data, Mapping):
                raise TypeError(f"a JSON {type(data).__name__}, not an object")
            return build(data)
        except Exception as exc:  # a damaged row must not hide the readable ones
            self.damaged.append(f"{what} is damaged ({_short(exc)}); skipped")
            return None

    # -- internals -------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taking the write lock up front."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        try:
            yield self._db
        except sqlite3.Error as exc:
            self._db.execute("ROLLBACK")
            raise self._error(exc) from None
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            try:
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._error(exc) from None

    def _read(self, query: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            cursor = self._db.execute(query, args)
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from None

    def _check_header(self) -> None:
        """Refuse a file that is not an SQLite database, or is another application's,
        from its first 100 bytes (nothing is opened for writing yet)."""
        try:
            with self.path.open("rb") as handle:
                header = handle.read(100)
        except OSError as exc:
            raise StoreError(f"cannot read the run store {self.path}: {exc}") from None
        if not header.startswith(_SQLITE_MAGIC) or len(header) < 100:
            raise StoreError(
                f"the run store {self.path} is corrupted or not an SQLite database at all "
                "(its header is not SQLite's); it was left untouched: move it aside (or "
                "restore a backup), or point PIPETUNE_HOME at another folder"
            )
        app_id = int.from_bytes(header[68:72], "big")
        if app_id not in (0, APPLICATION_ID):
            raise StoreError(
                f"{self.path} is another application's SQLite database (application id "
                f"{app_id:#010x}), not a pipetune run store; it was left untouched"
            )

    def _check_identity(self) -> None:
        """An existing file without pipetune's application id must be a store from before
        the id: pipetune's ``meta`` row and ``runs`` table (read-only checks)."""
        try:
            app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
            if app_id == APPLICATION_ID:
                return
            tables = {
                row[0]
                for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            marked = False
            if "meta" in tables:
                row = self._db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                marked = row is not None
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if not tables:  # an empty database: nothing to overwrite
            return
        if not (marked and "runs" in tables):
            shown = ", ".join(sorted(tables - {"sqlite_sequence"})) or "none"
            raise StoreError(
                f"{self.path} is an SQLite database but not a pipetune run store (no pipetune "
                f"application id or meta row; tables: {shown}); it was left untouched"
            )

    def _check_integrity(self) -> None:
        try:
            result = self._db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.Error as exc:
            raise self._error(exc) from None
        if not result or result[0] != "ok":
            found = (result[0] if result else "no answer").replace("*** in database main ***", "")
            found = " ".join(found.split())
            found = found if len(found) <= 160 else found[:157] + "..."
            raise StoreError(
                f"the run store {self.path} is corrupted ({found}); "
                "it was left untouched: move it aside (or restore a backup) and run again"
            )

    def _ensure_schema(self, db: sqlite3.Connection) -> None:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        # Statement by statement: executescript() would commit the open transaction.
        for statement in _TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta (key, value) VALUES ('schema', ?)", (str(STORE_SCHEMA),))
        elif int(row[0]) > STORE_SCHEMA:
            raise StoreError(
                f"the run store {self.path} was written by a newer pipetune (store schema "
                f"{row[0]}, this one reads {STORE_SCHEMA}); upgrade pipetune"
            )

    def _error(self, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StoreError(
                f"the run store {self.path} is locked by another process and stayed locked "
                f"for {self.busy_timeout_s:g} s ({text}); nothing was written. Wait for the "
                "other pipetune run to finish, or point PIPETUNE_HOME at another folder"
            )
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text or "corrupt" in text
        ):
            return StoreError(
                f"the run store {self.path} is corrupted ({text}); it was left untouched: "
                "move it aside (or restore a backup) and run again"
            )
        return StoreError(f"run store {self.path}: {text}")

    def _record(self, row: sqlite3.Row, *, with_report: bool) -> RunRecord:
        """A run row; one whose JSON no longer parses is a record with ``damage`` set and
        what could be read (never an error that hides the other runs)."""
        problems: list[str] = []

        def cell(name: str, default: Any) -> Any:
            text = row[name]
            if not text:
                return default
            try:
                value = json.loads(text)
            except (TypeError, ValueError) as exc:
                problems.append(f"{name}: {_short(exc)}")
                return default
            if not isinstance(value, Mapping):
                problems.append(f"{name}: a JSON {type(value).__name__}, not an object")
                return default
            return value

        requirements = cell("requirements", {})
        summary = cell("summary", {})
        report = cell("report", None) if with_report else None
        return RunRecord(
            id=str(row["id"]),
            created=str(row["created"] or ""),
            finished=None if row["finished"] is None else str(row["finished"]),
            pipeline=str(row["pipeline"] or ""),
            target=None if row["target"] is None else str(row["target"]),
            status=str(row["status"] or ""),
            machine_fingerprint=str(row["machine_fingerprint"] or ""),
            requirements=requirements,
            summary=summary,
            report=report,
            damage="; ".join(problems),
        )


def _new_id() -> str:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{secrets.token_hex(3)}"


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds")


def _short(exc: BaseException, limit: int = 120) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str)
