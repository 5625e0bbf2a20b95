"""Jobs on a Dask cluster: the studio's worker relays one job to a Dask worker and back.

A job submitted with a scheduler address (``jobs submit … --scheduler tcp://HOST:8786``) is
claimed, as every job is, by a worker process on the studio's host, next to the SQLite store.
That worker does not run it: :func:`run_on_cluster` checks the cluster (:mod:`onn_core.cluster`),
sends the job to a Dask worker, and relays what comes back, so the store, the pages and the CLI
see a remote job as they see a local one:

* **What is sent**: the kind's name and config, the files of the job's folder (a resumed job's
  checkpoint), and the files the config names on the studio's host (a teacher's run folder, the
  run a compensation starts from, measured PSFs: the kind's ``remote_inputs``), rewritten to
  where they land on the node. Datasets are not sent: the embedded ones must be readable on the
  node as on the host (Fashion-MNIST from ``/usr/share/datasets``), and one added with
  ``data add`` must be added on the node too.
* **Progress** comes back as Dask events (``Worker.log_event`` → ``Client.subscribe_topic``)
  and is written to the store by the relay, as a local job's is.
* **Cancel** reaches the remote run within a second: the relay's watcher interrupts it as it
  would a local job; the relay then asks the Dask worker (``Client.run``) to raise the job's
  ``JobCancelled`` in the thread that runs it, and waits for the files written so far.
* **Artifacts** (log, checkpoints, model, metrics) come back when the remote run ends —
  succeeded, failed or cancelled — and are written into the job's folder on the studio's host.
* **A Dask worker that dies** mid-run is seen within seconds (it leaves the scheduler, or the
  scheduler starts the task again elsewhere); the job is then failed, or re-queued if it asked
  to be (``on_worker_death``), as a local one is. What it had written on that node is lost; a
  re-queued job starts again from the checkpoint it was sent with.
* **A relay that dies** (the studio's worker killed) releases the task; the remote run stops at
  its next progress report instead of computing for no one, and the job is reaped here as any
  job of a dead worker is.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..run_files import atomic_write, plain_json

INPUT_SCHEME = "onn-input://"  # a config value naming a file sent with the job
EVENT_INTERVAL_S = 0.25  # progress events sent at most this often (epoch ends always)
WORKER_CHECK_S = 1.0
CANCEL_WAIT_S = 30.0  # how long a cancelled job's files are waited for
MAX_SENT_BYTES = 2 * 2**30  # inputs and a resumed job's folder: what goes through the scheduler
INPUTS_FOLDER = "onn-studio-inputs"  # under the node's temporary folder, one per job


class RemoteWorkerLost(Exception):
    """The Dask worker running a job left the cluster before the job ended."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__(f"its Dask worker {address} died (or left the cluster) while running it")


class RemoteJobFailed(Exception):
    """The job raised on its Dask worker: the remote error and traceback, kept as a local failure's are."""

    def __init__(self, error: str, remote_traceback: str) -> None:
        self.remote_traceback = remote_traceback
        super().__init__(error)


# ---------------------------------------------------------------------------- files sent both ways
def pack(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) by its relative path, as bytes; links are
    left out (what they point to may not be the job's to send)."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(file.relative_to(path)): file.read_bytes() for file in sorted(path.rglob("*"))
            if file.is_file() and not file.is_symlink()}  # fmt: skip


def unpack(files: dict[str, bytes], folder: Path) -> None:
    """Write ``files`` under ``folder``; a name that would leave it is refused."""
    root = folder.resolve()
    for name, content in files.items():
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"refusing to write {name!r} outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda handle, content=content: handle.write(content))


def _set_field(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[last] = value


def sent_inputs(inputs: dict[str, str], config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, bytes]]:
    """(config with each named field pointing into the sent files, the files) for ``inputs``:
    config field (dotted, e.g. ``settings.teacher``) → path on the studio's host."""
    config = json.loads(json.dumps(config))
    files: dict[str, bytes] = {}
    for field, host_path in inputs.items():
        path = Path(host_path)
        place = f"{field}/{path.name}"
        files.update({f"{place}/{name}" if path.is_dir() else place: content for name, content in pack(path).items()})
        _set_field(config, field, INPUT_SCHEME + place)
    return config, files


def _placed(value: Any, inputs: Path) -> Any:
    """``value`` with every sent-file reference replaced by its path on this node."""
    if isinstance(value, str) and value.startswith(INPUT_SCHEME):
        return str(inputs / value.removeprefix(INPUT_SCHEME))
    if isinstance(value, dict):
        return {key: _placed(item, inputs) for key, item in value.items()}
    if isinstance(value, list):
        return [_placed(item, inputs) for item in value]
    return value


# ---------------------------------------------------------------------------- on the Dask worker
@dataclass
class _Running:
    thread_id: int
    lock: threading.Lock
    armed: bool = True


_RUNNING: dict[str, _Running] = {}
_CANCELLED: set[str] = set()  # tokens cancelled on this worker, also before (or without) their start


def cancel_remote(token: str) -> bool:
    """Run on a Dask worker (``Client.run``): stop the job ``token`` there. If it runs here,
    ``JobCancelled`` is raised in its thread at its next Python instruction; if it starts here
    later, it stops at once. Returns whether it was running here."""
    from .worker import JobCancelled

    _CANCELLED.add(token)
    running = _RUNNING.get(token)
    if running is None:
        return False
    with running.lock:
        if running.armed:
            thread = ctypes.c_ulong(running.thread_id)
            ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, ctypes.py_object(JobCancelled))
    return True


def inputs_root(job_id: str) -> Path:
    """Where a job's sent files are placed on a node: the same path for every attempt of the job,
    so a resumed run's settings (which name its teacher's folder) are the same each time."""
    return Path(tempfile.gettempdir()) / INPUTS_FOLDER / job_id


def remote_job(kind_name: str, config: dict[str, Any], folder_files: dict[str, bytes], input_files: dict[str, bytes],
               topic: str, token: str, job_id: str) -> dict[str, Any]:  # fmt: skip
    """Run one job on this Dask worker (the task the relay submits); returns its outcome and files.

    The outcome is ``{"state": "succeeded" | "failed" | "cancelled", "metrics", "error",
    "traceback", "files", "worker", "inputs"}``; a failure is returned, not raised, so the files
    written up to it (log, last checkpoint) come back with it.
    """
    import shutil

    from distributed import get_worker

    from .kinds import job_kind
    from .worker import JobCancelled

    running = _RUNNING[token] = _Running(threading.get_ident(), threading.Lock())  # first: a cancel finds it
    worker = get_worker()
    key = worker.get_current_task()
    inputs = inputs_root(job_id)
    outcome: dict[str, Any] = {"metrics": {}, "error": None, "traceback": None, "worker": worker.address,
                               "inputs": str(inputs), "files": {}}  # fmt: skip
    last_sent = 0.0

    def progress(update) -> None:
        nonlocal last_sent
        # Nobody waits for this run any more (the relay was stopped or killed, or gave the run up
        # when it took its worker for dead): stop, rather than compute for no one.
        task = worker.state.tasks.get(key)
        if token in _CANCELLED or task is None or task.state in ("cancelled", "released", "forgotten"):
            raise JobCancelled
        now = time.monotonic()
        if update.phase in ("validate", "done") or now - last_sent >= EVENT_INTERVAL_S:
            worker.log_event(topic, {"type": "progress", "update": plain_json(asdict(update))})
            last_sent = now

    with tempfile.TemporaryDirectory(prefix="onn-job-") as scratch:
        folder = Path(scratch) / "job"
        try:
            try:
                if token in _CANCELLED:
                    raise JobCancelled
                shutil.rmtree(inputs, ignore_errors=True)
                unpack(folder_files, folder)
                unpack(input_files, inputs)
                worker.log_event(topic, {"type": "started", "worker": worker.address, "pid": os.getpid()})
                outcome["metrics"] = plain_json(job_kind(kind_name).run(_placed(config, inputs), folder, progress))
                outcome["state"] = "succeeded"
            finally:
                with running.lock:  # no cancel is raised once the outcome is decided; clear one in flight
                    running.armed = False
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(running.thread_id), None)
        except JobCancelled:
            outcome["state"] = "cancelled"
        except Exception as exc:  # returned with the files, not raised: the log and checkpoint come back
            if token in _CANCELLED:  # the cancel landed inside a library call that made it an error of its own
                outcome["state"] = "cancelled"
            else:
                outcome.update(state="failed", error=f"{type(exc).__name__}: {exc}",
                               traceback=traceback.format_exc())  # fmt: skip
        finally:
            _RUNNING.pop(token, None)
            _CANCELLED.discard(token)
            shutil.rmtree(inputs, ignore_errors=True)
        if folder.is_dir():
            outcome["files"] = pack(folder)
    return outcome


# ---------------------------------------------------------------------------- on the studio's host
def _with_host_paths(files: dict[str, bytes], node_inputs: str, inputs: dict[str, str]) -> dict[str, bytes]:
    """The job's JSON files as the studio's host reads them: a sent input named by where it lay on
    the node (``config.json``'s teacher, ``metrics.json``'s) is named by its path here. Logs keep
    what happened on the node."""
    replacements = [(f"{node_inputs}/{field}/{Path(path).name}", str(Path(path))) for field, path in inputs.items()]
    mapped = {}
    for name, content in files.items():
        if name.endswith(".json") and replacements:
            text = content.decode("utf-8", errors="surrogateescape")
            for node_path, host_path in replacements:
                text = text.replace(json.dumps(node_path)[1:-1], json.dumps(host_path)[1:-1])
            content = text.encode("utf-8", errors="surrogateescape")
        mapped[name] = content
    return mapped


def _sent_size(*parts: dict[str, bytes]) -> int:
    return sum(len(content) for part in parts for content in part.values())


def run_on_cluster(job, inputs: dict[str, str], folder: Path, progress: Callable[[Any], None], *,
                   on_started: Callable[[str], None] | None = None,
                   lost_lease: threading.Event | None = None) -> dict[str, Any]:  # fmt: skip
    """Run ``job`` on the Dask cluster at ``job.scheduler`` and relay it; returns its metrics.

    ``inputs``: the kind's ``remote_inputs`` for this config (field → host path);
    ``on_started(address)``: called when the job starts on a Dask worker (again after a re-run);
    ``lost_lease``: set when this relay no longer owns the job (then nothing is written here).
    Raises what a local run would (``JobCancelled`` after the files written so far are back),
    plus :class:`RemoteJobFailed` and :class:`RemoteWorkerLost`; a cluster that cannot run the
    job raises :class:`onn_core.errors.ClusterError` before anything is sent.
    """
    from distributed import KilledWorker

    from ..cluster import checked_client, live_workers, remote_failure
    from ..errors import ClusterError
    from ..training.progress import Progress
    from .worker import JobCancelled

    config, input_files = sent_inputs(inputs, job.config)
    folder_files = pack(folder)
    if _sent_size(input_files, folder_files) > MAX_SENT_BYTES:
        raise ClusterError(f"the {job.kind} job would send {_sent_size(input_files, folder_files) / 2**30:.1f} GiB "
                           f"(its inputs {', '.join(inputs.values()) or '-'} and folder) through the Dask scheduler; "
                           f"the limit is {MAX_SENT_BYTES / 2**30:.0f} GiB. Fix: run it on this machine.")  # fmt: skip
    # No worker yet is no error here: the job waits on the scheduler until one joins (a worker
    # restarting, an autoscaled cluster); it was refused at submit if none was there at all.
    client = checked_client(job.scheduler, min_workers=0)
    token = f"{job.id}-{uuid.uuid4().hex[:8]}"
    topic = f"onn-job-{token}"
    future = None
    try:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        client.subscribe_topic(topic, lambda event: inbox.put(event[1]))
        future = client.submit(remote_job, job.kind, config, folder_files, input_files, topic, token, job.id,
                               key=f"onn-job-{token}", pure=False)  # fmt: skip
        del folder_files, input_files
        address = None
        missed = 0

        def lost(where: str) -> RemoteWorkerLost:
            # The scheduler re-runs a task whose worker died; the studio decides instead (fail or
            # re-queue, as for a local worker), so a re-run already started is stopped.
            _stop(client, future, token)
            return RemoteWorkerLost(where)

        def drain(wait: float) -> None:
            nonlocal address
            try:
                message = inbox.get(timeout=wait)
            except queue.Empty:
                return
            while True:
                if message.get("type") == "started":
                    if address is not None:  # started again: the worker it ran on died
                        raise lost(address)
                    address = message["worker"]
                    if on_started is not None:
                        on_started(address)
                elif message.get("type") == "progress":
                    progress(Progress(**message["update"]))
                try:
                    message = inbox.get_nowait()
                except queue.Empty:
                    return

        try:
            last_check = time.monotonic()
            while not future.done():
                drain(0.2)
                if address and time.monotonic() - last_check >= WORKER_CHECK_S:
                    last_check = time.monotonic()
                    alive = live_workers(client)  # None: the scheduler did not answer; not a death
                    missed = missed + 1 if alive is not None and address not in alive else 0
                    if missed >= 2 and not future.done():  # twice: not a worker between two heartbeats
                        raise lost(address)
            drain(0.0)
            try:
                outcome = future.result()
            except KilledWorker as exc:  # the scheduler gave up on it after several dying workers
                raise RemoteWorkerLost(address or "(unknown)") from exc
            except Exception as exc:  # the task itself could not run (e.g. it could not be unpickled there)
                raise remote_failure(exc, f"the {job.kind} job") from exc
        except JobCancelled:
            if lost_lease is None or not lost_lease.is_set():
                outcome = _cancelled(client, future, token, address)
                if outcome is not None:
                    unpack(_with_host_paths(outcome["files"], outcome["inputs"], inputs), folder)
            raise
        unpack(_with_host_paths(outcome["files"], outcome["inputs"], inputs), folder)
        if outcome["state"] == "failed":
            raise RemoteJobFailed(f"{outcome['error']} (on Dask worker {outcome['worker']})", outcome["traceback"])
        if outcome["state"] == "cancelled":  # stopped on the node without a request from here
            raise JobCancelled
        return outcome["metrics"]
    finally:
        if future is not None and not future.done():  # stopped here (SIGTERM, an error): stop it there too
            _stop(client, future, token)
        with contextlib.suppress(Exception):  # not subscribed (it failed before), or the scheduler is gone
            client.unsubscribe_topic(topic)
        client.close()


def _stop(client, future, token: str, *, drop_if_idle: bool = True) -> bool:
    """Ask every worker to stop the job ``token`` (best effort); returns whether it was running
    somewhere. Not running: with ``drop_if_idle`` the scheduler drops it (a start racing this
    stops at once); else it may be finishing, and its result is still wanted."""
    try:
        answers = client.run(cancel_remote, token, on_error="return")
    except Exception:  # the scheduler is gone too: nothing more to stop
        answers = {}
    running = any(answer is True for answer in answers.values())
    if not running and drop_if_idle:
        future.cancel()
    return running


def _cancelled(client, future, token: str, address: str | None) -> dict[str, Any] | None:
    """Stop the remote run of a cancelled job; its outcome (with the files written so far) or None."""
    if future.done():
        return future.result() if future.status == "finished" else None
    if not _stop(client, future, token, drop_if_idle=address is None) and address is None:
        return None  # never started: nothing to bring back
    try:  # running (or just finishing, with its files): wait for what it wrote
        return future.result(timeout=CANCEL_WAIT_S)
    except Exception:
        future.cancel()
        return None
