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
* **A Dask worker that dies** mid-run is seen within seconds (it leaves the scheduler); the job
  is then failed, or re-queued if it asked to be (``on_worker_death``), as a local one is. What
  it had written on that node is lost; a re-queued job starts again from the checkpoint it was
  sent with.
"""

from __future__ import annotations

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

from ..run_files import atomic_write, finite_or_null

INPUT_SCHEME = "onn-input://"  # a config value naming a file sent with the job
EVENT_INTERVAL_S = 0.25  # progress events sent at most this often (epoch ends always)
WORKER_CHECK_S = 1.0
CANCEL_WAIT_S = 30.0  # how long a cancelled job's files are waited for


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
    """Every file under ``path`` (or ``path`` itself) by its relative path, as bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(file.relative_to(path)): file.read_bytes() for file in sorted(path.rglob("*")) if file.is_file()}


def unpack(files: dict[str, bytes], folder: Path) -> None:
    """Write ``files`` under ``folder``; a name that would leave it is refused."""
    root = folder.resolve()
    for name, content in files.items():
        target = (root / name).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"refusing to write {name!r} outside {root}")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda handle, content=content: handle.write(content))


def _get_field(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


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
        files.update({f"{place}/{name}" if path.is_dir() else f"{field}/{name}": content
                      for name, content in pack(path).items()})  # fmt: skip
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


def cancel_remote(token: str) -> bool:
    """Run on the Dask worker (``Client.run``): raise ``JobCancelled`` in the thread running the job
    ``token``, at its next Python instruction. False if that job is not running here."""
    from .worker import JobCancelled

    running = _RUNNING.get(token)
    if running is None:
        return False
    with running.lock:
        if running.armed:
            thread = ctypes.c_ulong(running.thread_id)
            ctypes.pythonapi.PyThreadState_SetAsyncExc(thread, ctypes.py_object(JobCancelled))
    return True


def _json_event(value: Any) -> Any:
    return json.loads(json.dumps(finite_or_null(value), default=str))


def remote_job(kind_name: str, config: dict[str, Any], folder_files: dict[str, bytes], input_files: dict[str, bytes],
               topic: str, token: str) -> dict[str, Any]:  # fmt: skip
    """Run one job on this Dask worker (the task the relay submits); returns its outcome and files.

    The outcome is ``{"state": "succeeded" | "failed" | "cancelled", "metrics", "error",
    "traceback", "files", "worker"}``; a failure is returned, not raised, so the files written up
    to it (log, last checkpoint) come back with it.
    """
    from distributed import get_worker

    from .kinds import job_kind
    from .worker import JobCancelled

    worker = get_worker()
    running = _Running(threading.get_ident(), threading.Lock())
    outcome: dict[str, Any] = {"metrics": {}, "error": None, "traceback": None, "worker": worker.address}
    with tempfile.TemporaryDirectory(prefix="onn-job-") as scratch:
        folder, inputs = Path(scratch) / "job", Path(scratch) / "inputs"
        unpack(folder_files, folder)
        unpack(input_files, inputs)
        last_sent = 0.0

        def progress(update) -> None:
            nonlocal last_sent
            now = time.monotonic()
            if update.phase in ("validate", "done") or now - last_sent >= EVENT_INTERVAL_S:
                worker.log_event(topic, {"type": "progress", "update": _json_event(asdict(update))})
                last_sent = now

        _RUNNING[token] = running
        worker.log_event(topic, {"type": "started", "worker": worker.address, "pid": os.getpid()})
        try:
            try:
                outcome["metrics"] = _json_event(job_kind(kind_name).run(_placed(config, inputs), folder, progress))
                outcome["state"] = "succeeded"
            finally:
                with running.lock:  # no cancel is raised once the outcome is decided; clear one in flight
                    running.armed = False
                    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(running.thread_id), None)
        except JobCancelled:
            outcome["state"] = "cancelled"
        except Exception as exc:  # returned with the files, not raised: the log and checkpoint come back
            outcome.update(state="failed", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc())
        finally:
            _RUNNING.pop(token, None)
        outcome["files"] = pack(folder)
    return outcome


# ---------------------------------------------------------------------------- on the studio's host
def run_on_cluster(job, inputs: dict[str, str], folder: Path, progress: Callable[[Any], None]) -> dict[str, Any]:
    """Run ``job`` on the Dask cluster at ``job.scheduler`` and relay it; returns its metrics.

    ``inputs``: the kind's ``remote_inputs`` for this config (field → host path). Raises what a
    local run would (``JobCancelled`` after the files written so far are back), plus
    :class:`RemoteJobFailed` and :class:`RemoteWorkerLost`; a cluster that cannot run the job
    raises :class:`onn_core.errors.ClusterError` before anything is sent.
    """
    from distributed import TimeoutError as DaskTimeoutError

    from ..cluster import checked_client, remote_failure
    from ..training.progress import Progress
    from .worker import JobCancelled

    # No worker yet is no error here: the job waits on the scheduler until one joins (a worker
    # restarting, an autoscaled cluster); it was refused at submit if none was there at all.
    client = checked_client(job.scheduler, min_workers=0)
    token = f"{job.id}-{uuid.uuid4().hex[:8]}"
    topic = f"onn-job-{token}"
    inbox: queue.SimpleQueue = queue.SimpleQueue()
    client.subscribe_topic(topic, lambda event: inbox.put(event[1]))
    config, input_files = sent_inputs(inputs, job.config)
    future = client.submit(remote_job, job.kind, config, pack(folder), input_files, topic, token,
                           key=f"onn-job-{token}", pure=False, retries=0)  # fmt: skip
    address = None

    def lost(where: str) -> RemoteWorkerLost:
        # The scheduler re-runs a task whose worker died; the studio decides instead (fail or
        # re-queue, as for a local worker), so a re-run already started is stopped.
        client.run(cancel_remote, token)
        future.cancel()
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
            elif message.get("type") == "progress":
                progress(Progress(**message["update"]))
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                return

    try:
        try:
            last_check = time.monotonic()
            while not future.done():
                drain(0.2)
                if address and time.monotonic() - last_check >= WORKER_CHECK_S:
                    last_check = time.monotonic()
                    if address not in client.scheduler_info(n_workers=-1)["workers"] and not future.done():
                        raise lost(address)
            drain(0.0)
            try:
                outcome = future.result()
            except Exception as exc:  # the task itself could not run (e.g. it could not be unpickled there)
                raise remote_failure(exc, f"the {job.kind} job") from exc
        except JobCancelled:
            outcome = _cancelled(client, future, token, address, DaskTimeoutError)
            if outcome is not None:
                unpack(outcome["files"], folder)
            raise
        unpack(outcome["files"], folder)
        if outcome["state"] == "failed":
            raise RemoteJobFailed(f"{outcome['error']} (on Dask worker {outcome['worker']})", outcome["traceback"])
        if outcome["state"] == "cancelled":  # cancelled on the node without a request from here
            raise JobCancelled
        return outcome["metrics"]
    finally:
        client.unsubscribe_topic(topic)
        client.close()


def _cancelled(client, future, token: str, address: str | None, timeout_error: type) -> dict[str, Any] | None:
    """Stop the remote run of a cancelled job; its outcome (with the files written so far) or None."""
    if future.done():
        return future.result() if future.status == "finished" else None
    # Asked of every worker: the relay may not have heard yet where the job started.
    if not any(client.run(cancel_remote, token, workers=[address] if address else None).values()):
        future.cancel()  # not running anywhere yet: dropping it from the scheduler is enough
        return None
    try:
        return future.result(timeout=CANCEL_WAIT_S)
    except (timeout_error, TimeoutError, Exception):
        future.cancel()
        return None
