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

Job kinds map a config dict to a function of (config, artifact folder, progress) → metrics.
``train``, ``teacher``, ``estimate``, and stage 3's ``inverse-design``, ``fabricate`` and
``compensate``, ``export`` (:mod:`onn_core.fabrication.jobs`).
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..design import Design
from ..errors import DesignError, TrainingError
from .store import Job, JobError, JobStore, LostJob

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


def _estimate_inputs(config: dict[str, Any]):
    from estimators.ntk_regression import EstimateSettings

    unknown = sorted(set(config) - {"design", "dataset", "settings"})
    if unknown:
        raise JobError(f"an estimate job takes design, dataset and settings; not {', '.join(unknown)}.")
    design = Design.from_dict(config["design"]) if config.get("design") is not None else Design()
    settings = dict(config.get("settings") or {})
    if "ridge_grid" in settings:
        settings["ridge_grid"] = tuple(settings["ridge_grid"])
    return design, config.get("dataset"), EstimateSettings(**settings)


def _run_estimate(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:
    """The exact NTK-regression estimate of a design (seconds to a minute), as a job."""
    import json

    from estimators.ntk_regression import estimate

    from ..training.trainer import Progress

    design, dataset, settings = _estimate_inputs(config)
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        elapsed = time.monotonic() - started
        eta = elapsed / done * (total - done) if done else None
        progress(Progress("estimate", 1, 1, done, total, 0.0, elapsed, eta))

    result = estimate(design, dataset, settings, threads=job_threads(), progress=report)
    (folder / "estimate.json").write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result.to_dict()


def _fabrication_kind(kind: str) -> Callable[[dict[str, Any], Path, Callable], dict[str, Any]]:
    def run(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:
        from ..fabrication.jobs import KINDS as FABRICATION_KINDS

        return FABRICATION_KINDS[kind](config, folder, progress)

    return run


KINDS: dict[str, Callable[[dict[str, Any], Path, Callable], dict[str, Any]]] = {
    "train": _run_training("student"),
    "teacher": _run_training("teacher"),
    "estimate": _run_estimate,
    **{kind: _fabrication_kind(kind) for kind in ("inverse-design", "fabricate", "compensate", "export")},
}


def validate_job(kind: str, config: dict[str, Any]) -> None:
    """Refuse, before queueing, a job whose kind or config cannot work (clear message)."""
    if kind not in KINDS:
        raise JobError(f"unknown job kind {kind!r}; this version runs: {', '.join(KINDS)}.")
    if not isinstance(config, dict):
        raise JobError(f"a {kind} job's config must be a JSON object, got {type(config).__name__}.")
    if kind in ("train", "teacher"):
        from ..data import SPECS
        from ..models import STUDENTS, TEACHERS

        try:
            train_config, _ = _training_inputs(config, "student" if kind == "train" else "teacher")
        except (TrainingError, DesignError, TypeError) as exc:
            raise JobError(f"the {kind} config is not valid: {exc}") from None
        if train_config.dataset not in SPECS:
            raise JobError(f"unknown dataset {train_config.dataset!r}; choose one of {', '.join(SPECS)}.")
        models = STUDENTS if kind == "train" else TEACHERS
        if train_config.model and train_config.model not in models:
            raise JobError(f"unknown {kind} model {train_config.model!r}; choose one of {', '.join(models)}.")
    if kind == "estimate":
        from ..data import SPECS

        try:
            design, dataset, settings = _estimate_inputs(config)
        except (DesignError, TypeError) as exc:
            raise JobError(f"the estimate config is not valid: {exc}") from None
        if dataset not in SPECS:
            raise JobError(f"unknown dataset {dataset!r}; choose one of {', '.join(SPECS)}.")
        if SPECS[dataset].task == "segmentation":
            from ..models.zoo import segmentation_groups

            try:
                segmentation_groups(settings.kernels or design.kernel_count)
            except DesignError as exc:
                raise JobError(f"the estimate config is not valid: {exc}") from None
        from ..training.trainer import check_design_channels

        try:
            check_design_channels(design, dataset, SPECS[dataset].channels)
        except DesignError as exc:
            raise JobError(str(exc)) from None
    if kind in ("inverse-design", "fabricate", "compensate", "export"):
        from ..fabrication.jobs import validate

        try:
            validate(kind, config)
        except (DesignError, TrainingError, TypeError) as exc:
            raise JobError(f"the {kind} config is not valid: {exc}") from None


# ---------------------------------------------------------------------------- running one job
def _raise_cancelled(signum, frame) -> None:
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

    def progress(update) -> None:
        nonlocal last_write
        now = time.monotonic()
        eta = f", ETA {update.eta_s:.0f} s" if update.eta_s is not None else ""
        message = f"epoch {update.epoch}/{update.epochs}, step {update.step}/{update.steps}{eta}"
        if update.phase == "prepare":
            message = f"{update.metrics.get('task', 'preparing')}: {update.step}/{update.steps}{eta}"
        elif update.phase == "estimate":
            message = f"NTK regression: initialisation {update.step}/{update.steps} done{eta}"
        if update.phase in ("validate", "done"):
            event = {"epoch": update.epoch, "train_loss": update.train_loss, "elapsed_s": update.elapsed_s,
                     **update.metrics}  # fmt: skip
            store.report(job, progress=update.fraction, message=message, metrics=update.metrics, event=event,
                         event_kind="epoch")  # fmt: skip
            last_write = now
        elif now - last_write >= PROGRESS_WRITE_S:
            loss = f", loss {update.train_loss:.4f}" if update.phase == "train" else ""
            store.report(job, progress=update.fraction, message=message + loss)
            last_write = now

    previous = signal.signal(signal.SIGUSR1, _raise_cancelled)
    thread = threading.Thread(target=watch, name=f"watch-{job.id}", daemon=True)
    thread.start()
    try:
        try:
            metrics = KINDS[job.kind](job.config, folder, progress)
        finally:
            stop.set()
            thread.join()
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
        (folder / "error.txt").write_text(trace, encoding="utf-8")
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
