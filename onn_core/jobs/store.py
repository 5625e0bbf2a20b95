"""The job store: one SQLite database (WAL mode) shared by the app, the CLI and the workers.

Tables:

* ``jobs`` — one row per job: kind, config JSON, state (queued → running → succeeded | failed |
  cancelled), times, progress fraction and message, metrics so far, error and traceback, artifact
  folder, worker pid/host, heartbeat, attempts, whether cancel was requested, and what to do if
  its worker dies (``fail`` or ``requeue``), and the Dask scheduler it runs on (NULL: a local
  worker process; :mod:`onn_core.jobs.remote`).
* ``events`` — append-only progress/metric events per job (the curves pages draw).
* ``workers`` — live worker processes and their heartbeats.
* ``schema_version`` — the migrations applied so far.

Every write is a short transaction; claiming a job uses ``BEGIN IMMEDIATE`` so two workers never
take the same one. Times are Unix seconds (UTC). Configs, metrics and events are stored as strict
JSON (a NaN or infinite number becomes null), so every reader can parse them.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..paths import studio_home
from ..run_files import json_text

STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")  # waiting for or holding a worker
ON_WORKER_DEATH = ("fail", "requeue")
MAX_ATTEMPTS = 3  # a re-queued job that keeps killing its worker fails after this many

MIGRATIONS: list[str] = [
    # 1: the first schema.
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        config TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        heartbeat REAL,
        progress REAL NOT NULL DEFAULT 0,
        message TEXT NOT NULL DEFAULT '',
        metrics TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        traceback TEXT,
        artifact_dir TEXT NOT NULL,
        worker_pid INTEGER,
        worker_host TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        on_worker_death TEXT NOT NULL DEFAULT 'fail' CHECK (on_worker_death IN ('fail', 'requeue'))
    );
    CREATE INDEX jobs_state_created ON jobs (state, created);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL REFERENCES jobs (id),
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        data TEXT NOT NULL
    );
    CREATE INDEX events_job ON events (job_id, id);
    CREATE TABLE workers (
        pid INTEGER NOT NULL,
        host TEXT NOT NULL,
        started REAL NOT NULL,
        heartbeat REAL NOT NULL,
        job_id TEXT,
        PRIMARY KEY (pid, host)
    );
    """,
    # 2: a job may run on a Dask cluster (the scheduler's address; NULL: a local worker process).
    """
    ALTER TABLE jobs ADD COLUMN scheduler TEXT
    """,
]


class JobError(ValueError):
    """A job request that cannot be honoured (unknown id, wrong state, bad config)."""


class LostJob(BaseException):
    """This worker no longer owns the job (it was declared dead and the job moved on).

    A BaseException, so library code's ``except Exception`` cannot swallow it mid-training.
    """


@dataclass(frozen=True)
class Job:
    """One row of ``jobs``, decoded."""

    id: str
    kind: str
    config: dict[str, Any]
    state: str
    created: float
    started: float | None
    finished: float | None
    heartbeat: float | None
    progress: float
    message: str
    metrics: dict[str, Any]
    error: str | None
    traceback: str | None
    artifact_dir: str
    worker_pid: int | None
    worker_host: str | None
    attempts: int
    cancel_requested: bool
    on_worker_death: str
    scheduler: str | None = None  # the Dask scheduler it runs on (None: a local worker process)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _decode(row: sqlite3.Row) -> Job:
    values = dict(row)
    values["config"] = json.loads(values["config"])
    values["metrics"] = json.loads(values["metrics"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Job(**values)


def default_database() -> Path:
    return studio_home() / "jobs.sqlite3"


class JobStore:
    """The job database at ``path`` (default ``$ONN_STUDIO_HOME/jobs.sqlite3``).

    Safe to use from several processes at once; open one store per process (connections are
    not shared across threads — each thread opens its own :class:`JobStore`).
    """

    def __init__(self, path: str | Path | None = None) -> None:
        # Resolved: workers start in another directory and must open this same file.
        self.path = (Path(path) if path is not None else default_database()).expanduser().resolve()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise JobError(
                f"cannot create the folder of the job store {self.path} ({exc.strerror or exc}). Fix: point "
                "ONN_STUDIO_HOME (or --database) at a folder you can write."
            ) from None
        self.jobs_dir = self.path.parent / "jobs"
        self._connection = None
        try:
            # isolation_level=None: we issue BEGIN ourselves, so transactions are explicit.
            self._connection = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._connection.row_factory = sqlite3.Row
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if self._connection is not None:
                self._connection.close()
            raise self._unusable(exc) from None

    def _unusable(self, error: sqlite3.DatabaseError) -> JobError:
        """Why the file at ``path`` cannot serve as the job store, and what to do, as a JobError."""
        code = getattr(error, "sqlite_errorname", "")
        if code in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
            problem = "is not a job store: the file is not an SQLite database (or is damaged)"
            fix = (f"move it aside (e.g. rename it to {self.path.name}.bad) and the studio starts a new, empty job "
                   "store there, or point ONN_STUDIO_HOME (or --database) elsewhere")  # fmt: skip
        elif code == "SQLITE_CANTOPEN":
            problem = "cannot be opened as the job store (a folder, or a file this user cannot read and write)"
            fix = "point ONN_STUDIO_HOME (or --database) at a writable file path"
        else:
            problem = f"cannot be used as the job store ({error})"
            fix = "retry; if it persists, move the file aside or point ONN_STUDIO_HOME (or --database) elsewhere"
        return JobError(f"{self.path} {problem}. Fix: {fix}.")

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextmanager
    def _transaction(self, immediate: bool = False) -> Iterator[sqlite3.Connection]:
        self._connection.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def _migrate(self) -> None:
        with self._transaction(immediate=True) as db:
            db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = db.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > len(MIGRATIONS):
                raise JobError(
                    f"{self.path} was written by a newer version of the studio (schema {current}, this one knows "
                    f"{len(MIGRATIONS)}). Upgrade, or point ONN_STUDIO_HOME elsewhere."
                )
            for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, script.split(";")):
                    db.execute(statement)
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

    @property
    def schema_version(self) -> int:
        return self._connection.execute("SELECT MAX(version) FROM schema_version").fetchone()[0]

    # ------------------------------------------------------------------ submitting and reading
    def submit(self, kind: str, config: dict[str, Any], *, on_worker_death: str = "fail",
               scheduler: str | None = None) -> str:  # fmt: skip
        """Queue a job; returns its id. Its artifact folder is created with ``job.json``."""
        if on_worker_death not in ON_WORKER_DEATH:
            raise JobError(f"on_worker_death must be one of {', '.join(ON_WORKER_DEATH)}, got {on_worker_death!r}.")
        try:
            # Strict: a config is stored as given, so a NaN or infinity in it is refused, not nulled.
            stored = json.dumps(config, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise JobError(f"a {kind} job's config must be plain JSON with finite numbers ({exc}).") from None
        job_id = time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:8]
        folder = self.jobs_dir / job_id
        folder.mkdir(parents=True)
        (folder / "job.json").write_text(json_text({"id": job_id, "kind": kind, "config": config}))
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, config, state, created, artifact_dir, on_worker_death, scheduler) "
                "VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
                (job_id, kind, stored, time.time(), str(folder), on_worker_death, scheduler),
            )
        return job_id

    def get(self, job_id: str) -> Job:
        row = self._connection.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job with id {job_id!r} in {self.path}.")
        return _decode(row)

    def list(self, state: str | None = None, limit: int = 200) -> list[Job]:
        """Newest first."""
        if state is not None and state not in STATES:
            raise JobError(f"state must be one of {', '.join(STATES)}, got {state!r}.")
        query = "SELECT * FROM jobs" + (" WHERE state = ?" if state else "") + " ORDER BY created DESC LIMIT ?"
        parameters = (state, limit) if state else (limit,)
        return [_decode(row) for row in self._connection.execute(query, parameters)]

    def events(self, job_id: str, *, after: int = 0) -> list[dict[str, Any]]:
        """Events of a job with id > ``after`` (for incremental polling), oldest first."""
        rows = self._connection.execute(
            "SELECT id, time, kind, data FROM events WHERE job_id = ? AND id > ? ORDER BY id", (job_id, after)
        )
        return [{"id": r["id"], "time": r["time"], "kind": r["kind"], **json.loads(r["data"])} for r in rows]

    # ------------------------------------------------------------------ user actions
    def cancel(self, job_id: str) -> Job:
        """Queued jobs are cancelled at once; running ones are asked to stop (their worker obeys)."""
        with self._transaction(immediate=True) as db:
            job = self.get(job_id)
            if job.state == "queued":
                db.execute(
                    "UPDATE jobs SET state = 'cancelled', finished = ?, message = 'cancelled before it started' "
                    "WHERE id = ?",
                    (time.time(), job_id),
                )
            elif job.state == "running":
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            else:
                raise JobError(f"job {job_id} has already {job.state}; there is nothing to cancel.")
        return self.get(job_id)

    def resume(self, job_id: str) -> Job:
        """Re-queue a failed or cancelled job; it continues from its last checkpoint."""
        with self._transaction(immediate=True) as db:
            job = self.get(job_id)
            if job.state not in ("failed", "cancelled"):
                raise JobError(f"job {job_id} is {job.state}; only failed or cancelled jobs can be resumed.")
            db.execute(
                "UPDATE jobs SET state = 'queued', cancel_requested = 0, error = NULL, traceback = NULL, "
                "finished = NULL, message = 'queued to resume from its last checkpoint' WHERE id = ?",
                (job_id,),
            )
        return self.get(job_id)

    # ------------------------------------------------------------------ worker side
    # A worker owns a running job through a lease: (its pid, the attempt number it claimed).
    # Every write it makes is conditional on still holding the lease, so a worker that was
    # declared dead (and whose job was failed or handed to another worker) can change nothing.
    def claim(self, pid: int, host: str | None = None, *, limit: int | None = None,
              remote_limit: int | None = None) -> Job | None:  # fmt: skip
        """Atomically take the oldest queued job that may start; None if the queue is empty or full.

        ``limit`` bounds the jobs running on this host; jobs on a Dask cluster (only relayed from
        here) count apart, against ``remote_limit`` (None: no bound on either).
        """
        host = host or socket.gethostname()
        with self._transaction(immediate=True) as db:
            running = dict(db.execute("SELECT scheduler IS NOT NULL, COUNT(*) FROM jobs WHERE state = 'running' "
                                      "GROUP BY scheduler IS NOT NULL").fetchall())  # fmt: skip
            allowed = []
            if limit is None or running.get(0, 0) < limit:
                allowed.append("scheduler IS NULL")
            if remote_limit is None or running.get(1, 0) < remote_limit:
                allowed.append("scheduler IS NOT NULL")
            if not allowed:
                return None
            row = db.execute(f"SELECT id FROM jobs WHERE state = 'queued' AND ({' OR '.join(allowed)}) "
                             "ORDER BY created LIMIT 1").fetchone()  # fmt: skip
            if row is None:
                return None
            now = time.time()
            db.execute(
                "UPDATE jobs SET state = 'running', started = ?, heartbeat = ?, worker_pid = ?, worker_host = ?, "
                "attempts = attempts + 1, message = 'started' WHERE id = ?",
                (now, now, pid, host, row["id"]),
            )
            db.execute("UPDATE workers SET job_id = ? WHERE pid = ? AND host = ?", (row["id"], pid, host))
        return self.get(row["id"])

    _OWNED = "id = ? AND state = 'running' AND worker_pid = ? AND worker_host = ? AND attempts = ?"

    @staticmethod
    def _lease(job: Job) -> tuple[str, int | None, str | None, int]:
        return (job.id, job.worker_pid, job.worker_host, job.attempts)

    def heartbeat(self, job: Job) -> bool:
        """Stamp a claimed job as alive; returns whether cancel was requested. Raises LostJob."""
        with self._transaction() as db:
            updated = db.execute(f"UPDATE jobs SET heartbeat = ? WHERE {self._OWNED}", (time.time(), *self._lease(job)))
            if updated.rowcount == 0:
                raise LostJob(job.id)
            row = db.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job.id,)).fetchone()
        return bool(row[0])

    def report(self, job: Job, *, progress: float, message: str, metrics: dict[str, Any] | None = None,
               event: dict[str, Any] | None = None, event_kind: str = "progress") -> None:  # fmt: skip
        """Update a claimed job's progress (and metrics so far), optionally appending an event."""
        now = time.time()
        stored_metrics = json_text(metrics, indent=None) if metrics is not None else None
        with self._transaction() as db:
            updated = db.execute(
                f"UPDATE jobs SET progress = ?, message = ?, metrics = COALESCE(?, metrics), heartbeat = ? "
                f"WHERE {self._OWNED}",
                (progress, message, stored_metrics, now, *self._lease(job)),
            )
            if updated.rowcount == 0:
                raise LostJob(job.id)
            if event is not None:
                db.execute(
                    "INSERT INTO events (job_id, time, kind, data) VALUES (?, ?, ?, ?)",
                    (job.id, now, event_kind, json_text(event, indent=None)),
                )

    def finish(self, job: Job, state: str, *, message: str, metrics: dict[str, Any] | None = None,
               error: str | None = None, traceback: str | None = None) -> bool:  # fmt: skip
        """End a claimed job; returns False (changing nothing) if this worker no longer owns it."""
        if state not in (*FINAL_STATES, "queued"):
            raise JobError(f"a job finishes as one of {', '.join(FINAL_STATES)} (or is re-queued), not {state!r}.")
        with self._transaction() as db:
            updated = db.execute(
                "UPDATE jobs SET state = ?, finished = CASE WHEN ? = 'queued' THEN NULL ELSE ? END, message = ?, "
                "metrics = COALESCE(?, metrics), error = ?, traceback = ?, "
                f"progress = CASE WHEN ? = 'succeeded' THEN 1.0 ELSE progress END WHERE {self._OWNED}",
                (state, state, time.time(), message, json_text(metrics, indent=None) if metrics is not None else None,
                 error, traceback, state, *self._lease(job)),
            )  # fmt: skip
            db.execute("UPDATE workers SET job_id = NULL WHERE job_id = ?", (job.id,))
        return updated.rowcount == 1

    # ------------------------------------------------------------------ workers and their deaths
    def register_worker(self, pid: int, host: str | None = None) -> None:
        now = time.time()
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO workers (pid, host, started, heartbeat) VALUES (?, ?, ?, ?)",
                (pid, host or socket.gethostname(), now, now),
            )

    def worker_heartbeat(self, pid: int, host: str | None = None) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE workers SET heartbeat = ? WHERE pid = ? AND host = ?",
                (time.time(), pid, host or socket.gethostname()),
            )

    def unregister_worker(self, pid: int, host: str | None = None) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM workers WHERE pid = ? AND host = ?", (pid, host or socket.gethostname()))

    def reserve_workers(self, stale_after: float, limit: int, spawn, remote_limit: int = 0) -> list[int]:
        """Start workers with ``spawn() → pid`` until enough are alive or no queued job lacks one.

        Enough: ``limit`` for jobs on this host plus ``remote_limit`` for jobs relayed to a Dask
        cluster, each as far as there are such jobs. Counting and registering happen in one
        transaction, so simultaneous callers (two tabs, the app and the CLI) never start more.
        """
        started = []
        with self._transaction(immediate=True) as db:
            db.execute("DELETE FROM workers WHERE heartbeat < ?", (time.time() - stale_after,))
            live = db.execute("SELECT COUNT(*) FROM workers").fetchone()[0]
            idle = db.execute("SELECT COUNT(*) FROM workers WHERE job_id IS NULL").fetchone()[0]
            queued = db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
            active = dict(db.execute("SELECT scheduler IS NOT NULL, COUNT(*) FROM jobs WHERE state IN ('queued', "
                                     "'running') GROUP BY scheduler IS NOT NULL").fetchall())  # fmt: skip
            wanted = min(limit, active.get(0, 0)) + min(remote_limit, active.get(1, 0))
            for _ in range(max(0, min(wanted - live, queued - idle))):
                pid = spawn()
                now = time.time()
                db.execute(
                    "INSERT OR REPLACE INTO workers (pid, host, started, heartbeat) VALUES (?, ?, ?, ?)",
                    (pid, socket.gethostname(), now, now),
                )
                started.append(pid)
        return started

    def retire_worker_if_idle(self, pid: int, host: str | None = None) -> bool:
        """Unregister an idle worker unless work arrived meanwhile (checked in one transaction)."""
        with self._transaction(immediate=True) as db:
            if db.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0]:
                return False
            db.execute("DELETE FROM workers WHERE pid = ? AND host = ?", (pid, host or socket.gethostname()))
        return True

    def reap(self, stale_after: float) -> list[str]:
        """Running jobs whose heartbeat is older than ``stale_after`` s and whose worker is gone.

        On this host a silent worker whose process still runs is left alone (slow, not dead).
        Each dead job is failed (saying so), cancelled (if cancel was pending), or re-queued if it
        asked to be and has attempts left; the worker's row goes too. Returns the reaped ids.
        """
        cutoff = time.time() - stale_after
        host = socket.gethostname()
        reaped = []
        with self._transaction(immediate=True) as db:
            rows = db.execute(
                "SELECT id, worker_pid, worker_host, heartbeat, on_worker_death, attempts, cancel_requested, "
                "artifact_dir, started FROM jobs WHERE state = 'running' AND heartbeat < ?",
                (cutoff,),
            ).fetchall()
            for row in rows:
                if row["worker_host"] == host and process_alive(row["worker_pid"]):
                    continue
                silence = time.time() - row["heartbeat"]
                reason = (
                    f"its worker (pid {row['worker_pid']} on {row['worker_host']}) stopped answering "
                    f"{silence:.0f} s ago"
                )
                cause = recorded_cause(Path(row["artifact_dir"]), since=row["started"])
                if cause:  # it wrote down why before it could tell the store (a full disk, say)
                    reason += f" after recording: {cause}"
                db.execute("DELETE FROM workers WHERE pid = ? AND host = ?", (row["worker_pid"], row["worker_host"]))
                if row["cancel_requested"]:
                    db.execute(
                        "UPDATE jobs SET state = 'cancelled', finished = ?, message = ? WHERE id = ?",
                        (time.time(), f"cancelled ({reason})", row["id"]),
                    )
                elif row["on_worker_death"] == "requeue" and row["attempts"] < MAX_ATTEMPTS:
                    db.execute(
                        "UPDATE jobs SET state = 'queued', message = ? WHERE id = ?",
                        (f"re-queued: {reason}; it resumes from its last checkpoint", row["id"]),
                    )
                else:
                    tries = f" after {row['attempts']} attempts" if row["on_worker_death"] == "requeue" else ""
                    db.execute(
                        "UPDATE jobs SET state = 'failed', finished = ?, error = ?, message = ? WHERE id = ?",
                        (time.time(), f"worker died{tries}: {reason}. `jobs resume {row['id']}` continues from "
                         "the last checkpoint.", "worker died", row["id"]),
                    )  # fmt: skip
                reaped.append(row["id"])
        return reaped


def recorded_cause(folder: Path, *, since: float | None) -> str | None:
    """The last line of the ``error.txt`` a job's worker wrote into ``folder`` during this attempt, if any.

    A worker that fails writes the cause there before it tells the store; when telling the store
    fails too (the disk that filled up holds the store), the cause survives in the file.
    """
    path = folder / "error.txt"
    try:
        # File times run on the kernel's coarse clock (milliseconds behind time.time()); attempts
        # are seconds apart (a death is noticed after missed heartbeats), so a second of slack is safe.
        if since is not None and path.stat().st_mtime < since - 1.0:
            return None  # an earlier attempt's
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return None
    return next((line for line in reversed(lines) if line), None)


def process_alive(pid: int | None) -> bool:
    """Whether process ``pid`` runs on this host (a zombie counts as dead)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
