"""Workers: detached processes that take jobs from the store, run them, and report.

A worker runs one job at a time in its own process (a new session, so it outlives the web
server and the shell that started it). While a job runs, a heartbeat thread stamps the job and
the worker every ``ONN_JOB_HEARTBEAT_S`` seconds (default 2) and picks up cancel requests; the
job's progress callback raises at the next training step once cancel is requested, so the
checkpoint and log written so far stay. A worker that stops answering for three heartbeats is
declared dead by whichever worker or client looks next (``JobStore.reap``).

Job kinds map a config dict to a function of (config, artifact folder, progress) → metrics.
``train`` and ``teacher`` exist now; estimate, sweep, inverse-design and compensate register
here when they land.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..design import Design
from ..errors import DesignError, TrainingError
from .store import Job, JobError, JobStore

REPO_ROOT = Path(__file__).resolve().parents[2]
POLL_S = 0.5
PROGRESS_WRITE_S = 0.5


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


class JobCancelled(Exception):
    """Raised inside a job's progress callback once the user asked to cancel it."""


# ---------------------------------------------------------------------------- job kinds
def _training_inputs(config: dict[str, Any], role: str):
    from ..training import TrainConfig

    settings = {key: value for key, value in config.items() if key != "design"}
    settings["role"] = role
    train_config = TrainConfig.from_dict(settings)
    if train_config.threads is None:
        train_config = train_config.replace(threads=job_threads())
    design = Design.from_dict(config["design"]) if config.get("design") is not None else None
    if role == "student" and design is None:
        design = Design()
    return train_config, design


def _run_training(role: str):
    def run(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:
        from ..training import train

        train_config, design = _training_inputs(config, role)
        return train(train_config, folder, design=design, progress=progress)

    return run


KINDS: dict[str, Callable[[dict[str, Any], Path, Callable], dict[str, Any]]] = {
    "train": _run_training("student"),
    "teacher": _run_training("teacher"),
}


def validate_job(kind: str, config: dict[str, Any]) -> None:
    """Refuse, before queueing, a job whose kind or config cannot work (clear message)."""
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}; this version runs: {', '.join(KINDS)}.")
    if not isinstance(config, dict):
        raise JobError(f"a {kind} job's config must be a JSON object, got {type(config).__name__}.")
    if kind in ("train", "teacher"):
        try:
            _training_inputs(config, "student" if kind == "train" else "teacher")
        except (TrainingError, DesignError, TypeError) as exc:
            raise JobError(f"the {kind} config is not valid: {exc}") from None


# ---------------------------------------------------------------------------- running one job
def run_job(store: JobStore, job: Job, pid: int) -> str:
    """Run a claimed job to its end; returns the final state."""
    folder = Path(job.artifact_dir)
    folder.mkdir(parents=True, exist_ok=True)
    cancel_requested = threading.Event()
    stop = threading.Event()

    def beat() -> None:
        beats = JobStore(store.path)  # SQLite connections stay in their own thread
        try:
            while not stop.wait(heartbeat_seconds()):
                if beats.heartbeat(job.id):
                    cancel_requested.set()
                beats.worker_heartbeat(pid)
        finally:
            beats.close()

    thread = threading.Thread(target=beat, name=f"heartbeat-{job.id}", daemon=True)
    thread.start()
    last_write = 0.0

    def progress(update) -> None:
        nonlocal last_write
        if cancel_requested.is_set():
            raise JobCancelled
        now = time.monotonic()
        eta = f", ETA {update.eta_s:.0f} s" if update.eta_s is not None else ""
        message = f"epoch {update.epoch}/{update.epochs}, step {update.step}/{update.steps}{eta}"
        if update.phase in ("validate", "done"):
            event = {"epoch": update.epoch, "train_loss": update.train_loss, "elapsed_s": update.elapsed_s,
                     **update.metrics}  # fmt: skip
            store.report(job.id, progress=update.fraction, message=message, metrics=update.metrics, event=event,
                         event_kind="epoch")  # fmt: skip
            last_write = now
        elif now - last_write >= PROGRESS_WRITE_S:
            store.report(job.id, progress=update.fraction, message=f"{message}, loss {update.train_loss:.4f}")
            last_write = now

    try:
        metrics = KINDS[job.kind](job.config, folder, progress)
        store.finish(job.id, "succeeded", message="finished", metrics=_json_safe(metrics))
        return "succeeded"
    except JobCancelled:
        store.finish(job.id, "cancelled", message="cancelled; the checkpoint and log written so far are kept")
        return "cancelled"
    except Exception as exc:  # any failure ends the job as failed, with its reason kept
        trace = traceback.format_exc()
        (folder / "error.txt").write_text(trace, encoding="utf-8")
        store.finish(job.id, "failed", message=str(exc)[:500], error=f"{type(exc).__name__}: {exc}", traceback=trace)
        return "failed"
    finally:
        stop.set()
        thread.join()


def _json_safe(metrics: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(metrics, default=str))


# ---------------------------------------------------------------------------- the worker loop
def work(database: str | Path | None = None, *, idle_exit: float | None = 30.0, once: bool = False) -> int:
    """Take and run jobs until the queue has been empty for ``idle_exit`` seconds (None: forever).

    Returns the number of jobs run.
    """
    store = JobStore(database)
    pid = os.getpid()
    store.register_worker(pid)
    ran = 0
    idle_since = time.monotonic()
    try:
        while True:
            store.reap(stale_after())
            store.worker_heartbeat(pid)
            job = store.claim(pid)
            if job is None:
                if once or (idle_exit is not None and time.monotonic() - idle_since > idle_exit):
                    return ran
                time.sleep(POLL_S)
                continue
            run_job(store, job, pid)
            ran += 1
            idle_since = time.monotonic()
            if once:
                return ran
    finally:
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
    log = (logs / f"worker-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log").open("ab")
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
    queued = len(store.list(state="queued"))
    missing = min((limit or concurrency()) - store.live_workers(stale_after()), queued)
    started = []
    for _ in range(max(0, missing)):
        pid = spawn_worker(store.path)
        store.register_worker(pid)  # counted at once, so a second submit does not start another
        started.append(pid)
    return started
