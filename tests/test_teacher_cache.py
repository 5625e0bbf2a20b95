"""A teacher's once-only results (NTK sketch, exact kernel table) are built once across processes:
the builder holds a lock, a second run waits for it, stays cancellable, and reads what was written."""

import logging
import threading
import time

import pytest
import torch

from onn_core.run_files import DiskFullError, atomic_save, file_lock
from onn_core.training import trainer
from onn_core.training.trainer import _built_once

LOG = logging.getLogger("test-teacher-cache")
WAIT_LIMIT_S = 60.0  # generous: the machine may be busy


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + WAIT_LIMIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr(trainer, "CACHE_WAIT_POLL_S", 0.01)


def test_a_run_waiting_for_another_runs_cache_reads_it_instead_of_building_it(tmp_path):
    cache = tmp_path / "cache" / "teacher-sketch" / "abc.pt"
    written = torch.arange(12.0).reshape(3, 4)
    builds, reports, result = [], [], {}

    def build():
        builds.append(1)
        return torch.zeros(3, 4)

    def waiting_run():
        result["value"] = _built_once(cache, lambda t: t.shape == (3, 4), build, LOG, "sketch", reports.append)

    with file_lock(cache.with_name(f"{cache.name}.lock")) as mine:  # "another process" is building it
        assert mine
        thread = threading.Thread(target=waiting_run, daemon=True)
        thread.start()
        wait_until(lambda: len(reports) >= 3, "the second run reports that it waits")
        assert not builds and "value" not in result  # it waits, it does not build
        assert "waiting for another run" in reports[-1].metrics["task"]
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(written, cache)  # the first run finishes
    thread.join(WAIT_LIMIT_S)
    assert not thread.is_alive()
    assert not builds
    assert torch.equal(result["value"], written)


def test_concurrent_runs_build_the_cache_once_and_share_it(tmp_path):
    cache = tmp_path / "teacher-kernel" / "k.pt"
    builds, results, waiters = [], [], set()

    def build_while_the_others_wait():
        builds.append(1)
        wait_until(lambda: len(waiters) >= 2, "the other two runs wait for this build")
        return torch.full((2, 2), 7.0)

    def run():
        report = lambda _progress: waiters.add(threading.get_ident())  # noqa: E731
        results.append(_built_once(cache, lambda t: t.shape == (2, 2), build_while_the_others_wait, LOG, "table",
                                   report))  # fmt: skip

    threads = [threading.Thread(target=run, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_LIMIT_S)
    assert len(builds) == 1
    assert len(results) == 3 and all(torch.equal(r, torch.full((2, 2), 7.0)) for r in results)
    assert torch.equal(torch.load(cache, weights_only=True), torch.full((2, 2), 7.0))


def test_a_cache_that_exists_is_read_without_taking_the_lock(tmp_path):
    cache = tmp_path / "s.pt"
    atomic_save(torch.ones(3), cache)
    with file_lock(cache.with_name(f"{cache.name}.lock")):  # a run that holds the lock does not delay a reader
        stored = _built_once(cache, lambda t: True, lambda: pytest.fail("must not build"), LOG, "sketch", None)
    assert torch.equal(stored, torch.ones(3))


def test_where_no_lock_can_be_taken_the_run_builds_the_cache_itself(tmp_path, monkeypatch):
    def no_locks(path, *, wait=True):
        raise PermissionError(13, "read-only folder", str(path))

    monkeypatch.setattr(trainer, "file_lock", no_locks)
    cache = tmp_path / "s.pt"
    built = _built_once(cache, lambda t: True, lambda: torch.ones(2), LOG, "sketch", None)
    assert torch.equal(built, torch.ones(2)) and cache.exists()


def test_a_failing_build_is_not_mistaken_for_a_lock_that_cannot_be_taken(tmp_path):
    def full_disk():
        raise DiskFullError(tmp_path / "s.pt")

    with pytest.raises(DiskFullError):
        _built_once(tmp_path / "s.pt", lambda t: True, full_disk, LOG, "sketch", None)


def test_a_cancel_stops_a_run_that_waits_for_a_cache(tmp_path):
    cache = tmp_path / "s.pt"

    class Cancelled(BaseException):
        pass

    def cancel(_progress):
        raise Cancelled

    with file_lock(cache.with_name(f"{cache.name}.lock")), pytest.raises(Cancelled):
        _built_once(cache, lambda t: True, lambda: pytest.fail("must not build"), LOG, "sketch", cancel)
    assert not cache.exists()


def test_a_cache_that_does_not_fit_is_rebuilt_under_the_lock(tmp_path):
    cache = tmp_path / "s.pt"
    atomic_save(torch.zeros(5), cache)  # another training set's sketch, say
    rebuilt = _built_once(cache, lambda t: t.shape == (3,), lambda: torch.ones(3), LOG, "sketch", None)
    assert torch.equal(rebuilt, torch.ones(3))
    assert torch.equal(torch.load(cache, weights_only=True), torch.ones(3))


def test_file_lock_is_exclusive_and_released_when_the_holder_leaves(tmp_path):
    lock = tmp_path / "deep" / "x.lock"
    with file_lock(lock) as first:
        assert first
        with file_lock(lock, wait=False) as second:
            assert second is False
    with file_lock(lock, wait=False) as again:
        assert again
