"""The finished student runs the app can show: every finished training job and the shipped example.

A run is named by a short, stable id (the example's is ``example``; a job's is its job id), so
pages can put it in the URL (``?run=…``) and a reload finds it again. Nothing here touches SQL:
jobs come from :mod:`onn_core.jobs`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..paths import asset_path
from .metrics import HEADLINES
from .run import REQUIRED_FILES

EXAMPLE_RUN = asset_path("example_run")
EXAMPLE_ID = "example"


@dataclass(frozen=True)
class RunEntry:
    """One finished run: ``run_id`` (for URLs), its folder, and what to show in a picker."""

    run_id: str
    folder: Path
    dataset: str
    method: str
    metric: str
    score: float | None
    kernels: int | None
    source: str  # "example" | "job"

    @property
    def label(self) -> str:
        score = f"{self.metric} {100 * self.score:.1f} %" if self.score is not None else "no score"
        origin = "shipped example" if self.source == "example" else f"job {self.run_id}"
        return f"{self.dataset} · {self.method} · {score} · {origin}"


def _entry(run_id: str, folder: Path, source: str) -> RunEntry | None:
    if not all((folder / name).is_file() for name in REQUIRED_FILES):
        return None
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if config.get("role", "student") != "student":
        return None
    metric = HEADLINES.get(metrics.get("task"), "miou")
    kernels = None
    try:
        design = json.loads((folder / "design.json").read_text(encoding="utf-8"))
        from ..design import Design

        kernels = Design.from_dict(design).kernel_count
    except (OSError, ValueError):
        pass
    return RunEntry(run_id, folder, metrics.get("dataset", config.get("dataset", "?")), config.get("method", "?"),
                    metric, metrics.get(metric), kernels, source)  # fmt: skip


def finished_runs(database: str | Path | None = None) -> list[RunEntry]:
    """Finished training jobs, newest first, then the shipped example (all a fresh install has)."""
    from .. import jobs

    entries = []
    for job in jobs.list_jobs(state="succeeded", database=database):
        if job.kind != "train":
            continue
        entry = _entry(job.id, Path(job.artifact_dir), "job")
        if entry is not None:
            entries.append(entry)
    example = _entry(EXAMPLE_ID, EXAMPLE_RUN, "example")
    if example is not None:
        entries.append(example)
    return entries


def find_run(run_id: str | None, database: str | Path | None = None) -> RunEntry | None:
    """The run with this id (None when there is none, e.g. a stale link)."""
    if not run_id:
        return None
    return next((entry for entry in finished_runs(database) if entry.run_id == run_id), None)
