"""Background jobs that survive: the SQLite job store, detached workers, and the API pages use.

Pages and the CLI call only these functions; none of them touches SQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .kinds import JobKind, job_kind, job_kinds, validate_job
from .store import ACTIVE_STATES, FINAL_STATES, STATES, Job, JobError, JobStore
from .worker import ensure_workers, work


def submit(
    kind: str,
    config: dict[str, Any],
    *,
    database: str | Path | None = None,
    on_worker_death: str = "fail",
    start_worker: bool = True,
    scheduler: str | None = None,
) -> str:
    """Validate and queue a job, start a worker if none is free; returns the job id.

    ``scheduler``: run it on the Dask cluster at this address (``tcp://HOST:8786``) instead of a
    local process; the cluster is checked now, so one that cannot run it is refused before queueing.
    """
    validate_job(kind, config)
    if scheduler is not None:
        check_remote(kind, config, scheduler)
    with JobStore(database) as store:
        job_id = store.submit(kind, config, on_worker_death=on_worker_death, scheduler=scheduler)
        if start_worker:
            ensure_workers(store)
        return job_id


def check_remote(kind: str, config: dict[str, Any], scheduler: str) -> None:
    """Refuse (JobError, ClusterError) a job that cannot run on the Dask cluster at ``scheduler``."""
    from ..cluster import checked_client

    declared = job_kind(kind)
    if declared.remote_inputs is None:
        remote = ", ".join(name for name, other in job_kinds().items() if other.remote_inputs is not None)
        raise JobError(f"{kind} jobs run on the studio's host only (they write into its run folders); on a "
                       f"cluster the studio runs {remote} jobs. Fix: submit it without a scheduler.")  # fmt: skip
    missing = [path for path in declared.remote_inputs(config).values() if not Path(path).exists()]
    if missing:
        raise JobError(f"the {kind} job reads {', '.join(missing)}, which this host does not have to send.")
    checked_client(scheduler).close()


def _reap(store: JobStore) -> None:
    """Detect dead workers; a job that re-queued gets a worker as a submitted one does.

    (Reading never starts workers otherwise: a job queued with ``start_worker=False`` waits
    for a worker the user starts.)
    """
    from .worker import stale_after

    _give_workers(store, store.reap(stale_after()))


def _give_workers(store: JobStore, reaped: list[str]) -> None:
    """Start workers (as :func:`submit` does) if any of the ``reaped`` jobs went back to the queue."""
    if any(store.get(job_id).state == "queued" for job_id in reaped):
        ensure_workers(store)


def status(job_id: str, *, database: str | Path | None = None) -> Job:
    """The job as stored now (dead workers are detected first)."""
    with JobStore(database) as store:
        _reap(store)
        return store.get(job_id)


def history(job_id: str, *, after: int = 0, database: str | Path | None = None) -> list[dict[str, Any]]:
    """Progress events (one per epoch, with validation metrics), oldest first, ids > ``after``."""
    with JobStore(database) as store:
        store.get(job_id)
        return store.events(job_id, after=after)


def list_jobs(*, state: str | None = None, database: str | Path | None = None) -> list[Job]:
    with JobStore(database) as store:
        _reap(store)
        return store.list(state=state)


def cancel(job_id: str, *, database: str | Path | None = None) -> Job:
    """Cancel a job: at once if queued (or its worker is dead), else its worker stops it."""
    from .worker import stale_after

    with JobStore(database) as store:
        reaped = store.reap(stale_after())
        job = store.cancel(job_id)  # before any worker starts: a re-queued job being cancelled stays cancelled
        _give_workers(store, reaped)
        return job


def resume(job_id: str, *, database: str | Path | None = None, start_worker: bool = True) -> Job:
    with JobStore(database) as store:
        job = store.resume(job_id)
        if start_worker:
            ensure_workers(store)
        return job


__all__ = [
    "ACTIVE_STATES",
    "FINAL_STATES",
    "STATES",
    "Job",
    "JobError",
    "JobKind",
    "JobStore",
    "cancel",
    "history",
    "job_kind",
    "job_kinds",
    "list_jobs",
    "resume",
    "status",
    "submit",
    "validate_job",
    "work",
]
