"""Workers: detached processes that take jobs from the store, run them, and report.

A worker runs one job at a time in its own process (a new session, so it outlives the web
server and the shell that started it). While a job runs, a watcher thread stamps the job and the
worker every ``ONN_JOB_HEARTBEAT_S`` seconds (default 2) and looks for a cancel request twice a
second; on one it interrupts the job's main thread (``JobCancelled`` is raised at the next Python
instruction, whatever phase the job is in), so cancel takes effect within a second or the length
of one uninterruptible tensor operation. Checkpoints and logs are written atomically, so what was
written stays. A worker silent for three heartbeats whose process is gone is declared dead by
whichever worker or client looks next (``JobStore.reap``). SIGTERM or Ctrl-C stop a worker
cleanly: its job is re-queued (if it asked for that) or failed with the reason.

The store is one SQLite file in WAL mode: every worker and client must run on the host that
holds it (WAL needs shared memory; network filesystems are not supported).

What a job runs is its kind's (:mod:`onn_core.jobs.kinds`): the worker looks the kind up and
knows none of them.
"""

from __future__ import annotations

import _thread
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
from typing import Any

from ..run_files import atomic_write_text
from .kinds import job_kind
from .store import Job, JobStore, LostJob

REPO_ROOT = Path(__file__).resolve().parents[2]
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

    gate = _CancelGate()
    previous = signal.signal(signal.SIGUSR1, gate.on_signal)
    thread = threading.Thread(target=watch, name=f"watch-{job.id}", daemon=True)
    thread.start()
    try:
        try:
            metrics = kind.run(job.config, folder, progress)
        finally:
            stop.set()
            thread.join()
            gate.disarm()  # the job's outcome is decided: an interrupt still in flight changes nothing
        store.finish(job, "succeeded", message="finished", metrics=_json_safe(metrics))
        return "succeeded"
    except LostJob:
        return "lost"  # declared dead meanwhile: the job is someone else's now, write nothing
    except JobCancelled:
        if lost.is_set():
            return "lost"
        store.finish(job, "cancelled", message="cancelled; the checkpoint and log written so far are kept")
        return "cancelled"
    except (WorkerStopped, KeyboardInterrupt) as exc:
        reason = "SIGTERM" if isinstance(exc, WorkerStopped) else "Ctrl-C"
        if job.on_worker_death == "requeue":
            store.finish(job, "queued", message=f"re-queued: its worker was stopped ({reason})")
        else:
            store.finish(job, "failed", message=f"worker stopped ({reason})",
                         error=f"the worker was stopped ({reason}); `jobs resume {job.id}` continues from the "
                         "last checkpoint.")  # fmt: skip
        raise
    except Exception as exc:  # any failure ends the job as failed, with its reason kept
        trace = traceback.format_exc()
        atomic_write_text(folder / "error.txt", trace)
        store.finish(job, "failed", message=str(exc)[:500], error=f"{type(exc).__name__}: {exc}", traceback=trace)
        return "failed"
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(metrics, default=str))


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
    try:
        while True:
            store.reap(stale_after())
            store.worker_heartbeat(pid)
            job = store.claim(pid, limit=concurrency())
            if job is None:
                idle_for = time.monotonic() - idle_since
                if (once or (idle_exit is not None and idle_for > idle_exit)) and store.retire_worker_if_idle(pid):
                    return ran
                time.sleep(POLL_S)
                continue
            run_job(store, job)
            ran += 1
            idle_since = time.monotonic()
            if once:
                return ran
    except WorkerStopped:
        return ran
    finally:
        signal.signal(signal.SIGTERM, previous)
        store.unregister_worker(pid)
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
        command, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    return process.pid


def ensure_workers(store: JobStore, *, limit: int | None = None) -> list[int]:
    """Start workers until ``limit`` (default :func:`concurrency`) are alive or none is needed."""
    store.reap(stale_after())
    return store.reserve_workers(stale_after(), limit or concurrency(), lambda: spawn_worker(store.path))
