"""Faults of the job system recorded with their cause (issue 19, class 5).

A full disk is told in the designer's terms and keeps the last good checkpoint; JSON the jobs
write is strict; a re-queued job gets a worker; configs are refused at submit, naming the field;
a job store that is not a database is refused with what to do.

This module also declares a cheap job kind (``hold-once``: held on its first attempt until its
worker is stopped, done at once on the next), loaded by workers through ``ONN_STUDIO_EXTENSIONS``.
"""

import errno
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from onn_core import jobs, run_files
from onn_core.jobs import kinds
from onn_core.jobs.kinds import JobKind
from onn_core.jobs.store import JobError, JobStore
from onn_core.jobs.worker import run_job
from onn_core.training.progress import Progress, Stopwatch

ROOT = Path(__file__).resolve().parents[1]
HOLD_LIMIT_S = 300.0  # a held job that nobody stops gives up rather than load the machine forever
QUICK_TRAIN = {"dataset": "digits", "epochs": 2, "train_limit": 200, "batch_size": 64, "threads": 1}


# ---------------------------------------------------------------------------- the cheap job kind
def _hold_once(config: dict, folder: Path, progress) -> dict:
    starts = folder / "starts.txt"
    with starts.open("a", encoding="utf-8") as handle:
        handle.write(f"{os.getpid()}\n")
    attempt = len(starts.read_text(encoding="utf-8").split())
    clock = Stopwatch(1)
    held_since = time.monotonic()
    while attempt == 1 and time.monotonic() - held_since < HOLD_LIMIT_S:
        progress(Progress.counted("hold", 0, 1, clock))  # the test stops this worker meanwhile
        time.sleep(0.05)
    progress(Progress.counted("hold", 1, 1, clock))
    return {"attempt": attempt}


def _no_settings(config: dict) -> None:
    if config:
        raise JobError(f"hold-once takes no settings; got {', '.join(config)}.")


JOB_KINDS = (JobKind("hold-once", _hold_once, _no_settings, "held until its first worker is stopped"),)
THIS_MODULE = "tests.test_job_faults"


@pytest.fixture(autouse=True)
def studio(job_studio):
    return job_studio


@pytest.fixture
def hold_once_kind(monkeypatch):
    """The hold-once kind, known to this process and to every worker it starts."""
    extensions = ",".join([*kinds.extension_modules(), THIS_MODULE])
    monkeypatch.setenv("ONN_STUDIO_EXTENSIONS", extensions)
    monkeypatch.setattr(kinds, "_KINDS", {})  # re-read the providers with this module among them


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def strict_json(text: str):
    """Parse as RFC 8259 JSON: the bare words NaN / Infinity that Python writes are refused."""

    def refuse(word: str):
        raise AssertionError(f"not strict JSON: {word}")

    return json.loads(text, parse_constant=refuse)


# ---------------------------------------------------------------------------- 1. a full disk
def _writes_fail_with_enospc(monkeypatch, name: str, on_write: int) -> dict:
    """From its ``on_write``-th write on, ``name`` fails half-written with ENOSPC, as on a full disk."""
    state = {"full": True, "writes": 0}
    writer = run_files.atomic_write

    def atomic_write(path, write):
        if Path(path).name != name or not state["full"]:
            return writer(path, write)
        state["writes"] += 1
        if state["writes"] < on_write:
            return writer(path, write)

        def half_then_full(handle):
            handle.write(b"\0" * 4096)  # what made it to disk before the space ran out
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        return writer(path, half_then_full)

    monkeypatch.setattr(run_files, "atomic_write", atomic_write)
    return state


def _kernels_fail_with_enospc(monkeypatch) -> dict:
    """The kernels file is written outside run_files (numpy); its ENOSPC carries only the file name."""
    from onn_core.training import trainer

    state = {"full": True}
    export = trainer.export_kernels

    def export_kernels(model, path):
        if state["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return export(model, path)

    monkeypatch.setattr(trainer, "export_kernels", export_kernels)
    return state


@pytest.mark.parametrize(
    ("failing_file", "failing_write", "kept_epoch"),
    [
        ("checkpoint.pt", 2, 1),  # torch.save into an atomic write, at the second epoch
        ("history.json", 2, 1),  # a JSON atomic write: the checkpoint after it is not written either
        ("metrics.json", 1, 2),  # at the end: both epochs' checkpoint stays
        ("kernels.npz", 1, 2),  # written by numpy, outside run_files
    ],
)
def test_a_full_disk_is_recorded_with_its_cause_and_the_last_good_checkpoint_is_kept(
    studio, monkeypatch, failing_file, failing_write, kept_epoch
):
    store = JobStore(studio / "jobs.sqlite3")
    job_id = store.submit("train", QUICK_TRAIN)
    if failing_file == "kernels.npz":
        disk = _kernels_fail_with_enospc(monkeypatch)
    else:
        disk = _writes_fail_with_enospc(monkeypatch, failing_file, on_write=failing_write)

    assert run_job(store, store.claim(os.getpid())) == "failed"
    job = store.get(job_id)
    folder = Path(job.artifact_dir)
    cause = f"the disk is full while writing {failing_file}; free space in {folder} and resume"
    assert cause in job.error and f"jobs resume {job_id}" in job.error
    assert cause in job.message
    assert cause in (folder / "error.txt").read_text(encoding="utf-8")
    assert not [path.name for path in folder.iterdir() if path.name.startswith(".")]  # no temporary left
    assert torch.load(folder / "checkpoint.pt", weights_only=True)["epoch"] == kept_epoch
    strict_json((folder / "history.json").read_text(encoding="utf-8"))

    disk["full"] = False  # space freed: the job resumes from the kept checkpoint and finishes
    store.resume(job_id)
    assert run_job(store, store.claim(os.getpid())) == "succeeded", store.get(job_id).error
    history = strict_json((folder / "history.json").read_text(encoding="utf-8"))
    assert [row["epoch"] for row in history] == [1, 2]
    assert "resumed at epoch" in (folder / "train.log").read_text(encoding="utf-8")
    store.close()


def test_a_full_disk_anywhere_else_names_the_folder_to_free(studio):
    from onn_core.jobs.worker import _disk_full

    folder, database = studio / "jobs" / "a-job", studio / "jobs.sqlite3"
    unnamed = _disk_full(RuntimeError("wrapped"), folder, database)
    assert unnamed is None
    try:
        try:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        except OSError as quota:
            raise RuntimeError("a library wrapped it") from quota
    except RuntimeError as wrapped:
        found = _disk_full(wrapped, folder, database)
    assert str(found) == f"the disk is full while writing the job's results; free space in {folder} and resume"


def test_the_reaper_reports_the_cause_a_dying_worker_wrote_down(studio):
    store = JobStore(studio / "jobs.sqlite3")
    job_id = store.submit("train", {})
    job = store.claim(pid=999_999_999)  # a pid that does not exist: its silence means death
    cause = "the disk is full while writing checkpoint.pt; free space in /somewhere and resume"
    (Path(job.artifact_dir) / "error.txt").write_text(f"Traceback (most recent call last):\n  …\n{cause}\n")
    wait_for(lambda: store.reap(stale_after=0.01), timeout=30)
    failed = store.get(job_id)
    assert failed.state == "failed" and "worker died" in failed.error and cause in failed.error
    store.close()


# ---------------------------------------------------------------------------- 2. strict JSON
def test_json_the_runs_write_is_strict_with_nan_and_infinity_as_null(studio):
    values = {"loss": math.nan, "rows": [1.0, math.inf, {"deep": -math.inf}], "kept": 0.5, "name": "x"}
    text = run_files.json_text(values)
    assert strict_json(text) == {"loss": None, "rows": [1.0, None, {"deep": None}], "kept": 0.5, "name": "x"}
    run_files.atomic_write_json(studio / "metrics.json", values)
    assert strict_json((studio / "metrics.json").read_text()) == strict_json(text)

    store = JobStore(studio / "jobs.sqlite3")
    job_id = store.submit("train", {"dataset": "digits"})
    job = store.claim(os.getpid())
    store.report(job, progress=0.5, message="epoch 1", metrics={"val_loss": math.nan},
                 event={"epoch": 1, "train_loss": math.inf}, event_kind="epoch")  # fmt: skip
    store.finish(job, "succeeded", message="finished", metrics={"best_val": -math.inf})
    [metrics] = store._connection.execute("SELECT metrics FROM jobs").fetchone()
    [event] = store._connection.execute("SELECT data FROM events").fetchone()
    assert strict_json(metrics) == {"best_val": None} and strict_json(event) == {"epoch": 1, "train_loss": None}
    strict_json((Path(store.get(job_id).artifact_dir) / "job.json").read_text())
    with pytest.raises(JobError, match="finite numbers"):
        store.submit("train", {"learning_rate": math.nan})  # the store itself refuses, whoever calls it
    store.close()


# ---------------------------------------------------------------------------- 3. requeue
def test_a_requeue_job_whose_worker_is_stopped_gets_a_new_worker_and_succeeds(studio, hold_once_kind):
    job_id = jobs.submit("hold-once", {}, on_worker_death="requeue")  # submit starts its worker
    folder = Path(jobs.status(job_id).artifact_dir)
    wait_for(lambda: (folder / "starts.txt").is_file(), timeout=180, interval=0.2)
    first = jobs.status(job_id)
    assert first.state == "running" and first.attempts == 1
    os.kill(first.worker_pid, signal.SIGTERM)
    # Nobody starts a worker here: the stopped worker re-queues its job and starts the next one.
    job = wait_for(lambda: (j := jobs.status(job_id)).state in jobs.FINAL_STATES and j, timeout=240, interval=0.2)
    assert job.state == "succeeded", (job.state, job.message, job.error)
    assert job.attempts == 2 and job.worker_pid != first.worker_pid
    assert job.metrics == {"attempt": 2}
    assert len((folder / "starts.txt").read_text().split()) == 2


# ---------------------------------------------------------------------------- 4. configs at submit
@pytest.mark.parametrize(
    ("kind", "config", "named"),
    [
        ("train", {"dataset": "mnist", "phase_pixel": math.inf}, r"field 'phase_pixel'.* inf; it must be a finite"),
        ("train", {"dataset": "mnist", "phase_pixel": 1e308}, r"phase_pixel must be a finite number in \(0, 0.001\]"),
        ("train", {"dataset": "mnist", "phase_pixel": -3e-7}, r"phase_pixel .*metres or null; got -3e-07"),
        ("train", {"dataset": "mnist", "data_root": 5}, r"data_root must be a path \(text\) or null; got 5"),
        ("train", {"dataset": "mnist", "data_root": ""}, r"data_root must be a path"),
        ("train", {"dataset": "mnist", "teacher": ["a"]}, r"teacher must be a path"),
        ("train", {"dataset": 7}, r"dataset must be text; got 7"),
        ("train", {"dataset": "mnist", "learning_rate": math.nan}, r"field 'learning_rate'.* nan"),
        ("train", {"dataset": "mnist", "learning_rate": "fast"}, r"learning_rate must be a finite number"),
        ("train", {"dataset": "mnist", "learning_rate": True}, r"learning_rate must be a finite number"),
        ("train", {"dataset": "mnist", "epochs": 1e9}, r"epochs must be a whole number from 1 to 100000"),
        ("train", {"dataset": "mnist", "batch_size": 0}, r"batch_size must be a whole number from 1"),
        ("train", {"dataset": "mnist", "seed": 2**80}, r"seed must be a whole number from 0 to 4294967295"),
        ("train", {"dataset": "mnist", "augment": "yes"}, r"augment must be true or false; got 'yes'"),
        ("train", {"dataset": "mnist", "kd_alpha": 1.5}, r"kd_alpha must be a finite number in \[0, 1\]"),
        ("train", {"dataset": "mnist", "val_fraction": 1}, r"val_fraction must be a finite number in \(0, 1\)"),
        ("train", {"dataset": "mnist", "design": {"kernel_size": math.inf}}, r"field 'design.kernel_size'"),
        ("teacher", {"dataset": "mnist", "threads": -1}, r"threads must be a whole number from 1 to 4096 or null"),
        ("teacher", {"dataset": "mnist", "weight_decay": -math.inf}, r"field 'weight_decay'.* -inf"),
        # Every kind's config is finite JSON before the kind's own checks run.
        ("fabricate", {"run": "r", "error_model": {"radius_sigma": math.inf}}, r"field 'error_model.radius_sigma'"),
        ("estimate", {"dataset": "mnist", "settings": {"kernels": math.nan}}, r"field 'settings.kernels'"),
        ("export", {"run": "r", "formats": ["npz", math.inf]}, r"field 'formats\[1\]'"),
        ("search", {"dataset": "mnist", "bounds": {1: 2}}, r"has the key 1; keys must be text"),
        ("inverse-design", {"run": Path("r")}, r"field 'run' .* is a PosixPath"),
    ],
)
def test_every_config_field_is_checked_at_submit_naming_the_field_and_what_is_allowed(kind, config, named):
    with pytest.raises(JobError, match=named):
        jobs.submit(kind, config, start_worker=False)
    assert jobs.list_jobs() == []


# ---------------------------------------------------------------------------- 4b. a store that is no store
@pytest.mark.parametrize("content", ["text", "bytes", "folder"])
def test_a_job_store_that_is_not_a_database_is_refused_with_what_to_do(studio, content):
    path = studio / "elsewhere" / "jobs.sqlite3"
    path.parent.mkdir()
    if content == "text":
        path.write_text("these are my notes, not a database\n" * 20)
    elif content == "bytes":
        path.write_bytes(bytes(range(256)) * 16)
    else:
        path.mkdir()
    with pytest.raises(JobError) as refused:
        jobs.list_jobs(database=path)
    message = str(refused.value)
    assert str(path) in message and "Fix:" in message
    if content != "folder":
        assert "not an SQLite database" in message and "move it aside" in message


def test_the_cli_says_so_too(studio):
    path = studio / "jobs.txt"
    path.write_text("not a database\n" * 50)
    result = subprocess.run([sys.executable, "-m", "onn_core", "jobs", "list", "--database", str(path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=240)  # fmt: skip
    assert result.returncode == 2
    assert f"{path} is not a job store" in result.stderr and "Traceback" not in result.stderr
