import contextlib
import os
import signal

import pytest
import torch

torch.set_num_threads(2)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture
def job_studio(tmp_path, monkeypatch):
    """A fresh studio home with fast job heartbeats; every worker it started is killed afterwards,
    whatever happened, so none is left to load the CPU for the tests that follow."""
    from onn_core.jobs.store import JobStore

    monkeypatch.setenv("ONN_STUDIO_HOME", str(tmp_path))
    monkeypatch.setenv("ONN_JOB_HEARTBEAT_S", "1.0")
    monkeypatch.setenv("ONN_JOB_IDLE_EXIT_S", "3")
    yield tmp_path
    database = tmp_path / "jobs.sqlite3"
    if database.exists():
        store = JobStore(database)
        pids = {job.worker_pid for job in store.list(limit=1000) if job.worker_pid}
        pids |= {row[0] for row in store._connection.execute("SELECT pid FROM workers")}
        store.close()
        for pid in pids - {os.getpid()}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def installed_studio(tmp_path_factory):
    """The studio as `pip install .` lays it out: the wheel built from this checkout (offline: no
    build isolation) and unpacked into a folder of its own, which is all a node puts on its path."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    checkout = Path(__file__).resolve().parents[1]
    # Built from a copy of what git tracks (and would track): never from the checkout itself,
    # where setuptools leaves build/ behind and a module deleted since could slip into the wheel.
    source = tmp_path_factory.mktemp("source")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=checkout,
                            capture_output=True, check=True, timeout=60).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (checkout / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(checkout / name, source / name)
    wheels = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            "--wheel-dir", str(wheels), str(source)], capture_output=True, text=True, timeout=300,
                           cwd=wheels)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = wheels.glob("onn_studio-*.whl")
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return wheel, site
