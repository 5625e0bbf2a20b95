"""Job kinds by name: what each runs, how its config is checked before it is queued, how its progress reads.

A kind is declared by the module that owns its work, as a :class:`JobKind` in that module's
``JOB_KINDS``: training (``train``, ``teacher``) in :mod:`onn_core.training.jobs`, stage 3
(``inverse-design``, ``fabricate``, ``compensate``, ``export``) in :mod:`onn_core.fabrication.jobs`.
The worker, :func:`onn_core.jobs.submit` and the CLI look kinds up here and know none of them.

Studio extensions add kinds (and CLI commands) the same way without ``onn_core`` importing
their code: the modules named in ``ONN_STUDIO_EXTENSIONS`` (comma-separated; default
:data:`DEFAULT_EXTENSIONS`, the studio's estimator) are imported by name on first use, and an
extension that is not installed is skipped. So ``estimators`` depends on ``onn_core`` and never
the other way round.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import TrainingError
from ..units import format_duration
from .store import JobError

BUILT_IN = ("onn_core.training.jobs", "onn_core.fabrication.jobs")
DEFAULT_EXTENSIONS = ("estimators.studio",)

Runner = Callable[[dict[str, Any], Path, Callable[[Any], None]], dict[str, Any]]


def eta_text(update: Any) -> str:
    return f", ETA {format_duration(update.eta_s)}" if update.eta_s is not None else ""


# What one unit of a counted phase is (a phase with no epochs: Monte-Carlo draws, optimiser steps).
COUNTED_UNITS = {"fabricate": "Monte-Carlo draw", "error curve": "error-curve draw", "inverse-design": "step",
                 "estimate": "initialisation", "export": "sub-optic"}  # fmt: skip


def epoch_text(update: Any) -> str:
    """A progress update as a job's status line: the phase being prepared, the units of a counted
    phase ("Monte-Carlo draw 2/4"), or epoch and step."""
    if update.phase == "prepare":
        return f"{update.metrics.get('task', 'preparing')}: {update.step}/{update.steps}{eta_text(update)}"
    if update.phase in COUNTED_UNITS and update.epochs == 1:
        return f"{COUNTED_UNITS[update.phase]} {update.step}/{update.steps}{eta_text(update)}"
    return f"epoch {update.epoch}/{update.epochs}, step {update.step}/{update.steps}{eta_text(update)}"


@dataclass(frozen=True)
class JobKind:
    """One kind of background job.

    Attributes:
        name: the kind as jobs store it (``train``, ``estimate``, …).
        run: (config, artifact folder, progress callback) → the job's metrics (JSON-able).
        validate: raises (a :class:`ValueError` subclass, e.g. DesignError) on a config that
            cannot work; called before the job is queued.
        summary: one line for help texts: what the job does.
        config_help: the keys its config takes.
        progress_text: a progress update → the job's status line.
        remote_inputs: config → the files it reads on the studio's host, by config field
            (dotted: ``settings.teacher``), sent with the job when it runs on a Dask cluster
            (:mod:`onn_core.jobs.remote`); None: the kind runs on the studio's host only.
    """

    name: str
    run: Runner
    validate: Callable[[dict[str, Any]], None]
    summary: str
    config_help: str = ""
    progress_text: Callable[[Any], str] = epoch_text
    remote_inputs: Callable[[dict[str, Any]], dict[str, str]] | None = None


def no_inputs(config: dict[str, Any]) -> dict[str, str]:
    """``remote_inputs`` of a kind that reads nothing from the studio's host but its dataset."""
    return {}


def extension_modules() -> tuple[str, ...]:
    """The extensions this studio loads: ``ONN_STUDIO_EXTENSIONS`` or :data:`DEFAULT_EXTENSIONS`."""
    configured = os.environ.get("ONN_STUDIO_EXTENSIONS")
    if configured is None:
        return DEFAULT_EXTENSIONS
    return tuple(name.strip() for name in configured.split(",") if name.strip())


def providers() -> Iterator[ModuleType]:
    """The modules that declare job kinds and commands: built-in ones, then importable extensions."""
    for name in BUILT_IN:
        yield importlib.import_module(name)
    for name in extension_modules():
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise  # the extension exists but something it needs is missing: say so
            continue  # not installed here: the studio runs without it


_KINDS: dict[str, JobKind] = {}
_KINDS_LOCK = threading.Lock()  # a Dask worker with several threads may start two jobs at once


def job_kinds() -> dict[str, JobKind]:
    """Every registered kind by name (providers are read once per process)."""
    with _KINDS_LOCK:
        if not _KINDS:
            _register_kinds()
    return _KINDS


def _register_kinds() -> None:
    found: dict[str, JobKind] = {}  # filled whole or not at all: a provider that fails leaves none half-read
    for module in providers():
        for kind in getattr(module, "JOB_KINDS", ()):
            if kind.name in found:
                raise RuntimeError(f"job kind {kind.name!r} is declared twice ({module.__name__})")
            found[kind.name] = kind
    _KINDS.update(found)


def job_kind(name: str) -> JobKind:
    kinds = job_kinds()
    if name not in kinds:
        raise JobError(f"unknown job kind {name!r}; this version runs: {', '.join(kinds)}.")
    return kinds[name]


def check_plain_json(kind: str, value: Any, field: str = "") -> None:
    """Refuse a config that is not plain, finite JSON, naming the field (``settings.kernels``).

    Every kind's config crosses to the worker as JSON, and JSON has no NaN or Infinity: Python's
    reader accepts them, and a kind's own checks may not think of them (``x > 0`` holds for
    infinity), so they would fail only inside the worker. This runs for every kind before its own
    checks of types and ranges.
    """
    where = f"field {field!r} of the {kind} config" if field else f"the {kind} config"
    if isinstance(value, float) and not math.isfinite(value):
        raise JobError(f"{where} is {value}; it must be a finite number (JSON has no NaN or Infinity).")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise JobError(f"{where} has the key {key!r}; keys must be text.")
            check_plain_json(kind, item, f"{field}.{key}" if field else key)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_plain_json(kind, item, f"{field}[{index}]")
    elif not (value is None or isinstance(value, str | bool | int | float)):
        raise JobError(f"{where} is a {type(value).__name__} ({value!r}); a config holds only JSON values "
                       "(text, numbers, true/false, null, lists and objects).")  # fmt: skip


def validate_job(kind: str, config: dict[str, Any]) -> None:
    """Refuse, before queueing, a job whose kind or config cannot work (clear message).

    Every kind's config must be plain, finite JSON (:func:`check_plain_json`); then the kind's own
    ``validate`` checks each field's type and range. Its errors become a :class:`JobError` that
    keeps its message (which names the field, the value and what is allowed).
    """
    declared = job_kind(kind)
    if not isinstance(config, dict):
        raise JobError(f"a {kind} job's config must be a JSON object, got {type(config).__name__}.")
    check_plain_json(kind, config)
    try:
        declared.validate(config)
    except JobError:
        raise
    except (ValueError, TypeError, OverflowError, TrainingError) as exc:  # DesignError, unknown keys, huge numbers
        raise JobError(f"the {kind} config is not valid: {exc}") from None
