"""Scale-out on a real Dask cluster on loopback: `dask scheduler` and `dask worker` processes whose
only copy of the studio is the installed package (the wheel built from this checkout), with a
studio home of their own, so whatever a job reads from the studio's host must have been sent."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from onn_core import jobs
from onn_core.design import Design
from onn_core.errors import ClusterError, SweepError
from onn_core.training import TrainConfig, train
from onn_core.training.catalog import EXAMPLE_RUN

DASK = Path(sys.executable).with_name("dask")
pytestmark = pytest.mark.skipif(not DASK.exists(), reason="the dask command is not installed beside this Python")

SWEEP = {
    "datasets": ["digits"],
    "base": {"kernel_size": 4e-5, "kernel_spacing": 1e-5, "input_height": 8, "input_width": 8, "kernel_taps": 3},
    "grid": {"metasurface_width": [1e-4, 1.5e-4], "metasurface_height": [1e-4]},
    "settings": {"train_size": 150, "val_size": 60, "test_size": 100, "inits": 1},
    "seeds": [0],
}
TINY = {"dataset": "digits", "epochs": 3, "train_limit": 400, "threads": 1, "seed": 5}
LONG = {**TINY, "epochs": 400, "train_limit": 800, "early_stopping_patience": None}  # runs until cancelled


def wait_for(predicate, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def loopback_cluster(folder: Path, site: Path | None, *, workers: int = 1):
    """A scheduler (and ``workers`` single-threaded workers, each under a nanny that restarts it)
    started from ``folder``; ``site``: the folder holding the installed studio (None: not installed).
    Every process is killed on exit, whatever happened."""
    from dask.distributed import Client

    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment["ONN_STUDIO_HOME"] = str(folder / "node-home")  # not the studio's: inputs must be sent
    if site is not None:
        environment["PYTHONPATH"] = str(site)
    address = f"tcp://127.0.0.1:{free_port()}"
    commands = [[str(DASK), "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                 "--no-dashboard"]]  # fmt: skip
    commands += [[str(DASK), "worker", address, "--nworkers", "1", "--nthreads", "1", "--no-dashboard",
                  "--host", "127.0.0.1"]] * workers  # fmt: skip
    log = (folder / "cluster.log").open("ab")
    processes = []
    try:
        for command in commands:
            processes.append(subprocess.Popen(command, cwd=folder, env=environment, stdout=log, stderr=log,
                                              start_new_session=True))  # fmt: skip
        with Client(address, timeout=60) as client:  # the scheduler answers (and the workers joined)
            if workers:
                client.wait_for_workers(workers, timeout=120)
        yield address
    finally:
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.fixture(scope="module")
def cluster(installed_studio, tmp_path_factory):
    _, site = installed_studio
    # Two workers: when one is killed, a re-queued job finds the other. The worker-death tests come
    # last in this module (each kills a worker; its nanny restarts it).
    with loopback_cluster(tmp_path_factory.mktemp("cluster"), site, workers=2) as address:
        yield address


@pytest.fixture
def studio(job_studio):
    return job_studio


def remote_starts(job_id: str) -> list[str]:
    """The Dask workers the job started on, in order (its "remote" events)."""
    return [event["worker"] for event in jobs.history(job_id) if event["kind"] == "remote"]


def pid_running(address: str, job_id: str) -> int:
    """The process id of the Dask worker running the job ``job_id``."""
    from dask.distributed import Client

    with Client(address, timeout=30) as client:
        def running_it():
            return [worker for worker, keys in client.processing().items()
                    if any(str(key).startswith(f"onn-job-{job_id}") for key in keys)]  # fmt: skip

        (worker,) = wait_for(running_it, timeout=30)
        return client.run(os.getpid, workers=[worker])[worker]


def test_a_sweep_runs_on_a_cluster_whose_nodes_have_the_package(cluster, tmp_path):
    from estimators.sweep import read_results, run_sweep

    summary = run_sweep(SWEEP, tmp_path / "remote.jsonl", backend="dask", scheduler=cluster)
    assert summary["ran"] == 2, summary
    rows = read_results(tmp_path / "remote.jsonl")
    assert all("result" in row for row in rows), rows
    run_sweep(SWEEP, tmp_path / "loky.jsonl", backend="loky", jobs=1)  # the same numbers as here
    accuracy = {row["point_id"]: row["result"]["accuracy"] for row in rows}
    assert accuracy == {row["point_id"]: row["result"]["accuracy"] for row in read_results(tmp_path / "loky.jsonl")}
    resumed = run_sweep(SWEEP, tmp_path / "remote.jsonl", backend="dask", scheduler=cluster)
    assert resumed["already_done"] == 2 and resumed["ran"] == 0
    with pytest.raises(SweepError, match="--backend dask"):
        run_sweep(SWEEP, tmp_path / "x.jsonl", backend="loky", scheduler=cluster)


def test_a_cluster_without_the_package_is_refused_within_seconds_with_the_fix(tmp_path, studio):
    from estimators.sweep import run_sweep

    with loopback_cluster(tmp_path, None, workers=0) as bare:
        started = time.monotonic()
        with pytest.raises(ClusterError) as refused:
            run_sweep(SWEEP, tmp_path / "bare.jsonl", backend="dask", scheduler=bare)
        assert time.monotonic() - started < 30
        message = str(refused.value)
        assert "the scheduler cannot import onn_core, estimators" in message
        assert "No module named 'onn_core'" in message and "pip install" in message
        with pytest.raises(ClusterError, match="cannot import onn_core"):
            jobs.submit("train", dict(TINY), scheduler=bare)
    assert jobs.list_jobs() == []  # refused before anything was queued
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        jobs.submit("train", dict(TINY), scheduler=f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(jobs.JobError, match="studio's host only"):
        jobs.submit("export", {"run": str(EXAMPLE_RUN), "formats": ["gds"]}, scheduler=bare)


def test_a_train_job_on_the_cluster_reports_progress_and_matches_a_local_run(cluster, studio):
    job_id = jobs.submit("train", dict(TINY), scheduler=cluster)
    seen = set()

    def finished():
        job = jobs.status(job_id)
        if job.state == "running" and 0 < job.progress < 1:
            seen.add("progress")
        return job.state in jobs.FINAL_STATES and job

    job = wait_for(finished, timeout=240, interval=0.05)
    assert job.state == "succeeded", job.error
    assert job.scheduler == cluster and "progress" in seen
    assert len(remote_starts(job_id)) == 1  # it ran on a Dask worker of this cluster
    assert [event["epoch"] for event in jobs.history(job_id) if event["kind"] == "epoch"][:3] == [1, 2, 3]
    folder = Path(job.artifact_dir)
    assert {"model.pt", "metrics.json", "train.log", "checkpoint.pt"} <= {path.name for path in folder.iterdir()}

    local = train(TrainConfig(**TINY), studio / "local", design=Design())
    assert job.metrics["accuracy"] == pytest.approx(local["accuracy"], abs=1e-6)
    assert job.metrics["confusion_matrix"] == local["confusion_matrix"]


def test_a_distillation_on_the_cluster_is_sent_the_teacher_it_learns_from(cluster, studio):
    teacher_id = jobs.submit("teacher", {"dataset": "digits", "epochs": 1, "train_limit": 400, "threads": 1},
                             scheduler=cluster)  # fmt: skip
    teacher = wait_for(lambda: (job := jobs.status(teacher_id)).state in jobs.FINAL_STATES and job, timeout=240)
    assert teacher.state == "succeeded", teacher.error
    student_id = jobs.submit("train", {**TINY, "epochs": 1, "method": "kd", "teacher": teacher.artifact_dir},
                             scheduler=cluster)  # fmt: skip
    student = wait_for(lambda: (job := jobs.status(student_id)).state in jobs.FINAL_STATES and job, timeout=240)
    assert student.state == "succeeded", student.error
    assert remote_starts(teacher_id) and remote_starts(student_id)
    # The node read the teacher from the files sent with the job (its log says where it lay there);
    # the run's settings, back here, name the teacher's folder here.
    folder = Path(student.artifact_dir)
    assert f"onn-studio-inputs/{student_id}/teacher/" in (folder / "train.log").read_text()
    assert json.loads((folder / "config.json").read_text())["teacher"] == teacher.artifact_dir


def test_cancel_reaches_the_remote_run_and_its_files_come_back(cluster, studio):
    job_id = jobs.submit("train", dict(LONG), scheduler=cluster)
    wait_for(lambda: any(e["kind"] == "epoch" for e in jobs.history(job_id)), timeout=240)
    asked = time.monotonic()
    jobs.cancel(job_id)
    job = wait_for(lambda: (j := jobs.status(job_id)).state in jobs.FINAL_STATES and j, timeout=60, interval=0.05)
    assert job.state == "cancelled", (job.state, job.error)
    assert time.monotonic() - asked < 20
    folder = Path(job.artifact_dir)
    assert (folder / "train.log").is_file() and (folder / "checkpoint.pt").is_file()
    assert "epoch 1/400" in (folder / "train.log").read_text()


def test_a_cluster_whose_packages_differ_from_the_studios_is_refused(cluster, monkeypatch):
    """As if this studio ran another Dask than the nodes (distributed's own check only warns)."""
    from onn_core import cluster as studio_cluster

    real = studio_cluster.local_packages
    monkeypatch.setattr(studio_cluster, "local_packages", lambda: {**real(), "dask": "1999.1.0"})
    with pytest.raises(ClusterError, match=r"the scheduler has dask \S+ \(here 1999.1.0\).*pip install"):
        studio_cluster.checked_client(cluster)

def test_estimate_and_compensate_jobs_run_on_the_cluster(cluster, studio):
    design = {**SWEEP["base"], "metasurface_width": 1e-4, "metasurface_height": 1e-4}
    estimate_id = jobs.submit("estimate", {"design": design, "dataset": "digits", "settings": SWEEP["settings"]},
                              scheduler=cluster)  # fmt: skip
    run = studio / "student"
    train(TrainConfig(**TINY), run, design=Design())  # a finished run here: sent with the job
    compensate_id = jobs.submit("compensate", {"run": str(run), "error_model": {"kernel_sigma": 0.2, "seed": 1},
                                               "settings": {"method": "e2e", "fraction": 0.5, "epochs": 1}},
                                scheduler=cluster)  # fmt: skip
    for job_id in (estimate_id, compensate_id):
        job = wait_for(lambda job_id=job_id: (j := jobs.status(job_id)).state in jobs.FINAL_STATES and j, timeout=240)
        assert job.state == "succeeded", job.error
        assert remote_starts(job_id)
    assert 0 <= jobs.status(estimate_id).metrics["accuracy"] <= 1
    assert {"before", "after"} <= set(jobs.status(compensate_id).metrics)

@pytest.mark.parametrize("on_worker_death", ["fail", "requeue"])
def test_a_dask_worker_that_dies_fails_or_requeues_the_job_as_a_local_worker_does(cluster, studio, on_worker_death):
    job_id = jobs.submit("train", dict(LONG), scheduler=cluster, on_worker_death=on_worker_death)
    wait_for(lambda: any(e["kind"] == "epoch" for e in jobs.history(job_id)), timeout=240)
    os.kill(pid_running(cluster, job_id), signal.SIGKILL)  # its nanny starts a new one, under another address
    killed = time.monotonic()
    if on_worker_death == "fail":
        job = wait_for(lambda: (j := jobs.status(job_id)).state in jobs.FINAL_STATES and j, timeout=60)
        assert job.state == "failed" and "Dask worker" in job.error and "died" in job.error, job.error
        assert time.monotonic() - killed < 20
    else:  # re-queued, then taken again and started on a worker alive (the one killed before is restarted)
        wait_for(lambda: len(remote_starts(job_id)) == 2, timeout=120)
        assert jobs.status(job_id).attempts == 2
        jobs.cancel(job_id)
        assert wait_for(lambda: jobs.status(job_id).state == "cancelled", timeout=60)

