"""How long a training job will take, said before it starts, from what earlier jobs took here.

A job's time depends on this machine, its load, the design (how many kernels, which frontend)
and the data; no fixed formula knows the machine. So the estimate is measured: the median
seconds per training image and epoch of the earlier finished jobs most like this one (same kind,
method and frontend; the same dataset and design preferred), times this job's images × epochs.
Without such a job there is no estimate, and the page says so rather than guess.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from ..units import format_duration


@dataclass(frozen=True)
class DurationEstimate:
    """``seconds`` for the whole job, and the earlier jobs it rests on (``basis``, in words)."""

    seconds: float
    jobs: int
    basis: str

    def text(self) -> str:
        return f"about {format_duration(self.seconds)} (from {self.basis})"


def _images(job) -> int | None:
    """How many training images a finished job saw (its metrics' split sizes)."""
    return ((job.metrics or {}).get("data") or {}).get("sizes", {}).get("train")


def _rate(job) -> float | None:
    """Seconds per training image and epoch of a finished job, or None if it did not record them."""
    metrics, images = job.metrics or {}, _images(job)
    seconds, epochs = metrics.get("train_seconds"), metrics.get("epochs_run")
    if not seconds or not epochs or not images:
        return None
    return seconds / (epochs * images)


def expected_duration(kind: str, config: dict[str, Any], history: list) -> DurationEstimate | None:
    """The expected seconds of a ``kind`` job ("train" or "teacher") with ``config`` (its
    ``dataset``, ``method``, ``frontend``, ``epochs``, ``train_limit`` and ``design``), from the
    finished jobs in ``history`` (any order); None when none is comparable."""
    method, frontend = config.get("method", "e2e"), config.get("frontend", "ideal")
    def like(job) -> bool:
        same_kind = job.kind == kind and job.state == "succeeded" and _rate(job) is not None
        trained_alike = (job.config.get("method", "e2e"), job.config.get("frontend", "ideal")) == (method, frontend)
        return same_kind and trained_alike

    alike = [job for job in history if like(job)]
    if not alike:
        return None
    same_data = [job for job in alike if job.config.get("dataset") == config.get("dataset")]
    same_design = [job for job in same_data if job.config.get("design") == config.get("design")]
    candidates = ((same_design, "this design on this data"), (same_data, "this data"), (alike, "other data"))
    basis_jobs, where = next((jobs, text) for jobs, text in candidates if jobs)
    # The images this job trains on: its limit, capped by what the dataset gave an earlier job.
    full = max((_images(job) for job in same_data if not job.config.get("train_limit")), default=None)
    limit = config.get("train_limit")
    images = min(limit, full) if limit and full else limit or full
    if images is None:  # no earlier job saw this dataset whole, and this one has no limit
        return None
    rate = statistics.median(_rate(job) for job in basis_jobs)
    seconds = rate * images * int(config.get("epochs", 1))
    count = len(basis_jobs)
    noun = "job" if count == 1 else "jobs"
    return DurationEstimate(seconds, count, f"{count} earlier {method} {kind} {noun} here, {where}")
