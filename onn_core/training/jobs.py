"""Training as background jobs: ``train`` (an optical student) and ``teacher`` (an electronic teacher).

A job's config is :class:`TrainConfig`'s keys plus an optional ``design`` object (students; the
default design when absent). Threads default to every core but one (the web server keeps one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data import SPECS
from ..design import Design
from ..jobs.kinds import JobKind, no_inputs
from ..jobs.store import JobError
from ..jobs.worker import job_threads
from ..models import STUDENTS, TEACHERS
from .config import TrainConfig
from .losses import needs_teacher
from .store import find_teacher
from .trainer import train


def training_inputs(config: dict[str, Any], role: str) -> tuple[TrainConfig, Design | None]:
    """(TrainConfig, design) of a job config; raises TrainingError/DesignError on bad settings."""
    settings = {key: value for key, value in config.items() if key != "design"}
    settings["role"] = role
    train_config = TrainConfig.from_dict(settings)
    if train_config.threads is None:
        train_config = train_config.replace(threads=job_threads())
    design = Design.from_dict(config["design"]) if config.get("design") is not None else None
    if role == "student" and design is None:
        design = Design()
    return train_config, design


def _runner(role: str) -> Callable[[dict[str, Any], Path, Callable], dict[str, Any]]:
    def run(config: dict[str, Any], folder: Path, progress: Callable) -> dict[str, Any]:

        train_config, design = training_inputs(config, role)
        return train(train_config, folder, design=design, progress=progress)

    return run


def _validator(role: str) -> Callable[[dict[str, Any]], None]:
    def validate(config: dict[str, Any]) -> None:

        train_config, _ = training_inputs(config, role)
        if train_config.dataset not in SPECS:
            raise JobError(f"unknown dataset {train_config.dataset!r}; choose one of {', '.join(SPECS)}.")
        models = STUDENTS if role == "student" else TEACHERS
        kind = "train" if role == "student" else "teacher"
        if train_config.model and train_config.model not in models:
            raise JobError(f"unknown {kind} model {train_config.model!r}; choose one of {', '.join(models)}.")
        train_config.check_sources()  # its data and teacher are there: refused now, not in the worker

    return validate


def student_inputs(config: dict[str, Any]) -> dict[str, str]:
    """What a ``train`` job reads on the studio's host (sent with it to a Dask worker): the teacher
    a distillation learns from: the one it names, else the teacher store's that it would pick here."""
    train_config, design = training_inputs(config, "student")
    if not needs_teacher(train_config.method):
        return {}
    if train_config.teacher:
        return {"teacher": train_config.teacher}
    found = find_teacher(train_config.dataset, split_seed=train_config.split_seed, data_root=train_config.data_root,
                         input_shape=list(design.input_shape))  # fmt: skip
    return {"teacher": str(found[0])} if found else {}  # none: the run says so, as it would here


JOB_KINDS = (
    JobKind("train", _runner("student"), _validator("student"), "train an optical student",
            "TrainConfig keys plus an optional 'design' object", remote_inputs=student_inputs),
    JobKind("teacher", _runner("teacher"), _validator("teacher"), "train an electronic teacher",
            "TrainConfig keys", remote_inputs=no_inputs),
)  # fmt: skip
