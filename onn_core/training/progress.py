"""What long work reports while it runs: :class:`Progress` updates, timed by a :class:`Stopwatch`.

Training, compensation, estimates, inverse design and the once-only preparations (a teacher's
kernel sketch) all report the same way, so the job store, the CLI and the pages show them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Stopwatch:
    """Elapsed time and the ETA of work counted in units (steps, images, initialisations).

    ``done_before`` units and ``elapsed_before`` seconds belong to earlier sessions of the same
    work (a resumed run): they count in the elapsed time, and the ETA extrapolates from the pace
    of this session only.
    """

    def __init__(self, total: int, *, done_before: int = 0, elapsed_before: float = 0.0) -> None:
        self.total, self.done_before, self.elapsed_before = total, done_before, elapsed_before
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds, this session and earlier ones."""
        return self.elapsed_before + time.perf_counter() - self.started

    def eta(self, done: int) -> float | None:
        """Seconds left once ``done`` of ``total`` units are finished (None before any in this session)."""
        here = done - self.done_before
        return (time.perf_counter() - self.started) / here * (self.total - done) if here > 0 else None


@dataclass
class Progress:
    """What a running job reports (to the job store, a progress bar, a log)."""

    # "prepare" (e.g. the teacher's NTK sketch; step/steps count its images) | "train" | "validate"
    # | "done" | "compensate" | "estimate" (step/steps count initialisations) | other counted phases
    phase: str
    epoch: int  # 1-based
    epochs: int
    step: int  # 1-based within the epoch
    steps: int
    train_loss: float
    elapsed_s: float
    eta_s: float | None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def fraction(self) -> float:
        if self.phase == "prepare":
            return 0.0
        return min(1.0, ((self.epoch - 1) * self.steps + self.step) / max(1, self.epochs * self.steps))

    @classmethod
    def counted(cls, phase: str, done: int, total: int, clock: Stopwatch, metrics: dict | None = None) -> Progress:
        """A phase of ``total`` units with ``done`` finished (one "epoch"; no loss)."""
        return cls(phase, 1, 1, done, total, 0.0, clock.elapsed(), clock.eta(done), metrics or {})


ProgressCallback = Callable[[Progress], None]


def counting(progress: ProgressCallback | None, phase: str, metrics: dict | None = None) -> Callable[..., None]:
    """A ``report(done, total)`` callback (what the estimator, inverse design and Monte Carlo take)
    that forwards :meth:`Progress.counted` updates to ``progress``, timed from this call."""
    clock = Stopwatch(0)

    def report(done: int, total: int, *_rest: Any) -> None:
        clock.total = total
        if progress is not None:
            progress(Progress.counted(phase, done, total, clock, metrics))

    return report
