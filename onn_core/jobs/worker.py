"""Workers: detached processes that take jobs from the store, run them, and report.

A worker runs one job at a time in its own process (a new session, so it outlives the web
server and the shell that started it). While a job runs, a watcher thread stamps the job and the
worker every ``ONN_JOB_HEARTBEAT_S`` seconds (default 2) and looks for a cancel request twice a
second; on one it interrupts the job's main thread (``JobCancelled`` is raised at the next Python
instruction, whatever phase the job is in), so cancel takes effect within a second or the length
of one uninterruptible tensor operation. Checkpoints and logs are written atomically, so what was
written stays. A worker silent for three heartbeats whose process is gone is declared dead by
whichever worker or client looks next (``JobStore.reap``). SIGTERM or Ctrl-C stop a worker
cleanly: its job is failed with the reason, or, if it asked to be re-queued, re-queued and given
a worker the way a submitted job is (:func:`ensure_workers`), so it runs again without anyone
having to start one.

A job that fails keeps its cause: in the store (error and traceback) and in ``error.txt`` in its
folder. A full disk is told in the designer's terms (which file, which folder to free), the
temporary files of its interrupted writes are removed, and the last checkpoint stays as it was.

The store is one SQLite file in WAL mode: every worker and client must run on the host that
holds it (WAL needs shared memory; network filesystems are not supported).

What a job runs is its kind's (:mod:`onn_core.jobs.kinds`): the worker looks the kind up and
knows none of them.
"""

from __future__ import annotations

import _thread
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ClusterError
from ..paths import CHECKOUT  # the folder that holds onn_core: importable from there, checkout or not
from ..run_files import DiskFullError, atomic_write_text, is_disk_full, plain_json, remove_temporaries
from .kinds import job_kind
from .remote import RemoteJobFailed, RemoteWorkerLost, run_on_cluster
from .store import Job, JobStore, LostJob

POLL_S = 0.5
PROGRESS_WRITE_S = 0.5
CANCEL_POLL_S = 0.5


def heartbeat_seconds() -> float:
    return float(os.environ.get("ONN_JOB_HEARTBEAT_S", "2.0"))


def stale_after() -> float:
    """Seconds of silence after which a worker is taken for dead: three missed heartbeats."""
    return 3 * heartbeat_seconds() + 1.0


def concurrency() -> int:
    """Jobs run at once (``ONN_JOB_CONCURRENCY``, default 1: a 2-core machine runs one well)."""
    return max(1, int(os.environ.get("ONN_JOB_CONCURRENCY", "1")))


def remote_concurrency() -> int:
    """Jobs relayed to a Dask cluster at once (``ONN_REMOTE_JOB_CONCURRENCY``, default 8): a relay
    mostly waits, so they do not count against :func:`concurrency`."""
    return max(0, int(os.environ.get("ONN_REMOTE_JOB_CONCURRENCY", "8")))


def job_threads() -> int:
    """Torch threads for a job: every usable core but one, so the web server stays responsive."""
    return max(1, len(os.sched_getaffinity(0)) - 1)


class JobCancelled(BaseException):
    """Raised in a job's main thread once the user asked to cancel it.

    A BaseException, so library code's ``except Exception`` cannot swallow it.
    """


class WorkerStopped(BaseException):
    """The worker process received SIGTERM."""


# ---------------------------------------------------------------------------- running one job
class _CancelGate:
    """Delivers a cancel to the job's main thread, but never inside a job-store transaction.

    ``JobCancelled`` raised between a ``BEGIN`` and its ``COMMIT`` would leave the connection in
    a transaction, so the job could not record that it was cancelled (its worker would then die
    and the job end only when reaped, seconds later). Store calls made from the main thread run
    ``shielded()``: a cancel that arrives meanwhile is raised as soon as the call has returned.
    """

    def __init__(self) -> None:
        self._depth = 0
        self._pending = False
        self._armed = True

    def disarm(self) -> None:
        self._armed = False

    def on_signal(self, signum, frame) -> None:
        if not self._armed:
            return
        if self._depth:
            self._pending = True
            return
        raise JobCancelled

    @contextmanager
    def shielded(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
        if self._pending and not self._depth and self._armed:
            self._pending = False
            raise JobCancelled


def run_job(store: JobStore, job: Job) -> str:
    """Run a claimed job to its end in this (main) thread; returns the final state."""
    folder = Path(job.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    remove_temporaries(folder)  # half-written files of an attempt whose worker was killed mid-write
    cancelled, lost, stop = threading.Event(), threading.Event(), threading.Event()

    def watch() -> None:
        watcher = JobStore(store.path)  # SQLite connections stay in their own thread
        last_beat = 0.0
        try:
            while not stop.wait(CANCEL_POLL_S):
                try:
                    if time.monotonic() - last_beat >= heartbeat_seconds():
                        watcher.worker_heartbeat(job.worker_pid, job.worker_host)
                        last_beat = time.monotonic()
                    if watcher.heartbeat(job) and not cancelled.is_set():
                        cancelled.set()
                        _thread.interrupt_main(signal.SIGUSR1)
                except LostJob:
                    lost.set()
                    _thread.interrupt_main(signal.SIGUSR1)
                    return
                except sqlite3.Error:
                    continue  # a busy or locked database: try again at the next tick
        finally:
            watcher.close()

    last_write = 0.0

    kind = job_kind(job.kind)

    def progress(update) -> None:
        nonlocal last_write
        now = time.monotonic()
        message = kind.progress_text(update)
        if update.phase in ("validate", "done"):
            event = {"epoch": update.epoch, "train_loss": update.train_loss, "elapsed_s": update.elapsed_s,
                     **update.metrics}  # fmt: skip
            with gate.shielded():
                store.report(job, progress=update.fraction, message=message, metrics=update.metrics, event=event,
                             event_kind="epoch")  # fmt: skip
            last_write = now
        elif now - last_write >= PROGRESS_WRITE_S:
            loss = f", loss {update.train_loss:.4f}" if update.phase == "train" else ""
            with gate.shielded():
                store.report(job, progress=update.fraction, message=message + loss)
            last_write = now

    def started_on(address: str) -> None:  # a remote job's Dask worker, in its status line and events
        with gate.shielded():
            store.report(job, progress=0.0, message=f"started on Dask worker {address}",
                         event={"worker": address}, event_kind="remote")  # fmt: skip

    gate = _CancelGate()
    previous = signal.signal(signal.SIGUSR1, gate.on_signal)
    thread = threading.Thread(target=watch, name=f"watch-{job.id}", daemon=True)
    thread.start()
    try:
        try:
            if job.scheduler:  # relayed to a Dask worker; cancel, heartbeats and the store stay here
                metrics = run_on_cluster(job, kind.remote_inputs(job.config), folder, progress,
                                         on_started=started_on, lost_lease=lost)  # fmt: skip
            else:
                metrics = kind.run(job.config, folder, progress)
        finally:
            stop.set()
            thread.join()
            gate.disarm()  # the job's outcome is decided: an interrupt still in flight changes nothing
        store.finish(job, "succeeded", message="finished", metrics=plain_json(metrics))
        return "succeeded"
    except LostJob:
        return "lost"  # declared dead meanwhile: the job is someone else's now, write nothing
    except JobCancelled:
        if lost.is_set():
            return "lost"
        store.finish(job, "cancelled", message="cancelled; the checkpoint and log written so far are kept")
        return "cancelled"
    except RemoteWorkerLost as exc:
        if job.on_worker_death == "requeue":
            store.finish(job, "queued", message=f"re-queued: {exc}")
            return "queued"
        store.finish(job, "failed", message=str(exc), error=f"{exc}; `jobs resume {job.id}` runs it again from the "
                     "last checkpoint that came back.")  # fmt: skip
        return "failed"
    except (WorkerStopped, KeyboardInterrupt) as exc:
        reason = "SIGTERM" if isinstance(exc, WorkerStopped) else "Ctrl-C"
        if job.on_worker_death == "requeue":
            store.finish(job, "queued", message=f"re-queued: its worker was stopped ({reason})")
        else:
            store.finish(job, "failed", message=f"worker stopped ({reason})",
                         error=f"the worker was stopped ({reason}); `jobs resume {job.id}` continues from the "
                         "last checkpoint.")  # fmt: skip
        raise
    except Exception as exc:  # any failure ends the job as failed, with its cause kept
        # First, so a full disk has room again to record why (and no half-written file stays).
        remove_temporaries(folder)
        if cancelled.is_set() and not lost.is_set() and not isinstance(exc, RemoteJobFailed | RemoteWorkerLost):
            # The cancel landed inside a library call that turned it into an error of its own
            # (torch.save's writer: "enforce fail … unexpected pos"): it is still the cancel.
            store.finish(job, "cancelled", message="cancelled; the checkpoint and log written so far are kept")
            return "cancelled"
        trace = exc.remote_traceback if isinstance(exc, RemoteJobFailed) else traceback.format_exc()
        disk_full = _disk_full(exc, folder, store.path)
        if disk_full is not None:
            error = f"{disk_full} (`python -m onn_core jobs resume {job.id}` continues from the last checkpoint)"
        elif isinstance(exc, RemoteJobFailed | ClusterError):  # already says what failed, and where
            error = str(exc)
        else:
            error = f"{type(exc).__name__}: {exc}"
        _write_error_file(folder / "error.txt", trace if error in trace else f"{trace}\n{error}\n")
        _finish_failed(store, job, message=str(disk_full or exc)[:500], error=error, traceback=trace)
        return "failed"
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _disk_full(error: BaseException, folder: Path, database: Path) -> DiskFullError | None:
    """The full disk behind ``error`` (or anything it was raised from), told in the designer's terms; else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DiskFullError):
            return error
        if is_disk_full(error):
            filename = getattr(error, "filename", None)
            return DiskFullError(filename) if filename else DiskFullError(folder, what="the job's results")
        if isinstance(error, sqlite3.Error) and getattr(error, "sqlite_errorname", "") == "SQLITE_FULL":
            return DiskFullError(database)
        error = error.__cause__ or error.__context__
    return None


def _write_error_file(path: Path, text: str) -> None:
    """Best effort: on a disk that is still full the store's record is what remains (and is tried next)."""
    with contextlib.suppress(OSError):
        atomic_write_text(path, text)


def _finish_failed(store: JobStore, job: Job, *, message: str, error: str, traceback: str, tries: int = 3) -> None:
    """Record a failure, retrying a store that is briefly full or locked; the last try's error propagates
    (the worker then dies, and the reaper reports the cause kept in ``error.txt``)."""
    for attempt in range(tries):
        try:
            store.finish(job, "failed", message=message, error=error, traceback=traceback)
            return
        except sqlite3.OperationalError:
            if attempt == tries - 1:
                raise
            time.sleep(1.0)


# ---------------------------------------------------------------------------- the worker loop
def _stop_on_sigterm(signum, frame) -> None:
    raise WorkerStopped


def work(database: str | Path | None = None, *, idle_exit: float | None = 30.0, once: bool = False) -> int:
    """Take and run jobs until the queue has been empty for ``idle_exit`` seconds (None: forever).

    At most :func:`concurrency` jobs run at once across all workers of the store. Returns the
    number of jobs run.
    """
    store = JobStore(database)
    pid = os.getpid()
    store.register_worker(pid)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    ran = 0
    idle_since = time.monotonic()
    handed_back = False  # whether this worker re-queued its job when it was stopped
    try:
        while True:
            store.reap(stale_after())
            store.worker_heartbeat(pid)
            job = store.claim(pid, limit=concurrency(), remote_limit=remote_concurrency())
            if job is None:
                idle_for = time.monotonic() - idle_since
                if (once or (idle_exit is not None and idle_for > idle_exit)) and store.retire_worker_if_idle(pid):
                    return ran
                time.sleep(POLL_S)
                continue
            try:
                run_job(store, job)
            except (WorkerStopped, KeyboardInterrupt):
                handed_back = job.on_worker_death == "requeue"
                raise
            ran += 1
            idle_since = time.monotonic()
            if once:
                return ran
    except WorkerStopped:
        return ran
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.unregister_worker(pid)
        if handed_back:  # gone from the workers first, so the job it re-queued counts as needing one
            ensure_workers(store)
        store.close()


def idle_exit_seconds() -> float:
    """How long a spawned worker waits for more work before exiting (``ONN_JOB_IDLE_EXIT_S``, 30)."""
    return float(os.environ.get("ONN_JOB_IDLE_EXIT_S", "30"))


def spawn_worker(database: str | Path, *, idle_exit: float | None = None) -> int:
    """Start a detached worker (new session: it survives its parent); returns its pid."""
    database = Path(database)
    idle_exit = idle_exit_seconds() if idle_exit is None else idle_exit
    logs = database.parent / "workers"
    logs.mkdir(parents=True, exist_ok=True)
    log = (logs / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.log").open("ab")
    command = [sys.executable, "-m", "onn_core", "jobs", "worker", "--database", str(database),
               "--idle-exit", str(idle_exit)]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=CHECKOUT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    return process.pid


def ensure_workers(store: JobStore, *, limit: int | None = None) -> list[int]:
    """Start workers until ``limit`` (default :func:`concurrency`) are alive or none is needed."""
    store.reap(stale_after())
    return store.reserve_workers(stale_after(), limit or concurrency(), lambda: spawn_worker(store.path),
                                 remote_limit=remote_concurrency())  # fmt: skip
