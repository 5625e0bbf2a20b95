"""The trainer: config-driven, seeded, resumable, with progress callbacks and a divergence guard.

A run folder holds everything needed to inspect or resume the run:

    config.json      training settings        design.json   the frontend design (students)
    checkpoint.pt    latest epoch (atomic)     model.pt      best-validation weights
    history.json     per-epoch metrics         metrics.json  final test metrics
    kernels.npz      kernels / PSFs (students) train.log     human-readable log

Checkpoints hold only tensors, numbers and strings, so they load with ``weights_only=True``, and
only good states: an epoch whose weights or losses are not finite ends the run with the reason
instead of being saved, so "the last good checkpoint" is one a resumed run can go on from. The
JSON files are strict JSON (a NaN is written as null).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetSplits, Split, load_for_design
from ..design import Design
from ..errors import DesignError, TrainingError
from ..models import (
    FrontendOptions,
    OpticalFrontend,
    PhysicalFrontend,
    SensorSettings,
    build_student,
    build_teacher,
    count_cost,
    default_student,
    default_teacher,
    energy_per_image,
)
from ..models.frontends import held_kernels
from ..paths import studio_home
from ..run_files import atomic_save, atomic_write_json, atomic_write_text, close_logger, file_lock, run_logger
from ..user_input import load_weights, read_json, refusal
from .config import TrainConfig
from .loop import RunState, divergence, train_epoch
from .losses import METHOD_TERMS, TransferLoss, needs_teacher, uses_ntk
from .metrics import classification_metrics, headline, segmentation_counts, segmentation_metrics, task_loss
from .ntk import TeacherKernelTable, TeacherSketch, flat_outputs
from .progress import Progress, ProgressCallback, Stopwatch, counting
from .store import find_teacher, native_shape

CHECKPOINT = "checkpoint.pt"
EVALUATION_SEED = 20_251_125


def check_design_channels(design: Design, dataset: str, channels: int) -> None:
    """Data handed in already loaded must have the design's colour channels (``load_for_design``
    converts them; data loaded here always has them)."""
    if channels != design.input_channels:
        raise DesignError(
            "input_channels",
            design.input_channels,
            f"the {dataset} images given have {channels} channel(s) but the design expects {design.input_channels}.",
            "load them with onn_core.data.load_for_design(name, design), which converts them.",
        )


def _augment(images: torch.Tensor, generator: torch.Generator, shift: int = 2) -> torch.Tensor:
    """Random translation by up to ±shift pixels (zero fill), one offset per image."""
    padded = F.pad(images, (shift, shift, shift, shift))
    offsets = torch.randint(0, 2 * shift + 1, (len(images), 2), generator=generator)
    height, width = images.shape[-2:]
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets.tolist())])


def evaluate(model: nn.Module, split: Split, task: str, classes: int, batch_size: int = 512) -> dict[str, Any]:
    """Metrics of ``model`` over a whole split (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    # Sensor noise during evaluation is drawn from a fixed stream, so metrics are repeatable
    # and the training RNG is left untouched.
    with torch.random.fork_rng(), held_kernels(model):
        torch.manual_seed(EVALUATION_SEED)
        metrics = _evaluate(model, split, task, classes, batch_size)
    model.train(was_training)
    return metrics


def _evaluate(model: nn.Module, split: Split, task: str, classes: int, batch_size: int) -> dict[str, Any]:
    confusion = torch.zeros(classes, classes, dtype=torch.long)
    counts = torch.zeros(4, dtype=torch.float64)
    total_loss = 0.0
    with torch.no_grad():
        for start in range(0, len(split), batch_size):
            images = split.images[start : start + batch_size]
            targets = split.targets[start : start + batch_size]
            outputs = model(images)
            total_loss += float(task_loss(task, outputs, targets)) * len(images)
            if task == "classification":
                predicted = outputs.argmax(dim=1)
                confusion += torch.bincount(targets * classes + predicted, minlength=classes**2).view(classes, classes)
            else:
                counts += segmentation_counts(outputs, targets)
    metrics = classification_metrics(confusion) if task == "classification" else segmentation_metrics(*counts.tolist())
    metrics["loss"] = total_loss / max(1, len(split))
    return metrics


def build_model(design: Design | None, config: TrainConfig, data: DatasetSplits) -> tuple[nn.Module, str]:
    """The model a config asks for, sized for the data; returns (model, resolved model name)."""
    task, classes = data.spec.task, len(data.spec.classes)
    channels, height, width = data.image_shape
    if config.role == "teacher":
        name = config.model or default_teacher(task)
        return build_teacher(name, channels, (height, width), classes), name
    if design is None:
        raise TrainingError("a student needs a design (the optical frontend it realises).")
    check_design_channels(design, data.spec.name, data.image_shape[0])
    name = config.model or default_student(task, channels)
    sensor = SensorSettings(bit_depth=design.sensor_bit_depth) if config.sensor_noise else None
    options = FrontendOptions(
        kind=config.frontend,
        sensor=sensor,
        normalise_intensity=config.normalise_intensity,
        phase_pixel=config.phase_pixel,
        seed=config.seed,
    )
    return build_student(name, design, classes, options), name


def load_teacher(config: TrainConfig, data: DatasetSplits) -> tuple[nn.Module, Path, dict[str, Any]]:
    """The frozen teacher a distillation run learns from: (model, run folder, its metrics).

    ``config.teacher`` names its run folder; otherwise the teacher store's best (on validation)
    for this dataset, split and data source. A teacher trained on another dataset, split or image
    size is refused: it may have seen the student's test images, or cannot read its inputs.
    """
    if config.teacher:
        folder = Path(config.teacher)
    else:
        shape = data.image_shape
        found = find_teacher(config.dataset, split_seed=config.split_seed, data_root=config.data_root,
                             input_shape=shape)  # fmt: skip
        if found is None:
            design_option = "" if tuple(shape) == native_shape(config.dataset) else " --design DESIGN.json"
            channels, height, width = shape
            raise TrainingError(
                f"method {config.method} needs a trained teacher for {config.dataset} (split {config.split_seed}) "
                f"that reads the images as this student does ({height}×{width}, {channels} channel(s)), and the "
                f"teacher store has none. Fix: run `python -m onn_core train-teacher --dataset {config.dataset} "
                f"--split-seed {config.split_seed}{design_option}` first (with this run's design), or pass "
                "--teacher RUN_DIR."
            )
        folder = found[0]
    try:
        teacher_config = TrainConfig.from_dict(read_json(folder / "config.json", refusal(TrainingError, "config.json")))
        teacher_metrics = read_json(folder / "metrics.json", refusal(TrainingError, "metrics.json"))
        weights = load_weights(folder / "model.pt", refusal(TrainingError, "model.pt"))
    except (OSError, ValueError, RuntimeError, TrainingError) as exc:
        raise TrainingError(
            f"{folder} is not a finished teacher run (config.json, metrics.json and model.pt): {exc}"
        ) from None
    for name in ("dataset", "split_seed", "data_root", "val_fraction"):
        if getattr(teacher_config, name) != getattr(config, name):
            raise TrainingError(
                f"the teacher in {folder} was trained with {name} = {getattr(teacher_config, name)!r} but this run "
                f"uses {getattr(config, name)!r}; a teacher must share the student's data and split. "
                "Fix: train a teacher for this data (`python -m onn_core train-teacher`)."
            )
    teacher, _ = build_model(None, teacher_config.replace(role="teacher"), data)
    try:
        teacher.load_state_dict(weights)
    except RuntimeError:
        raise TrainingError(
            f"the teacher in {folder} does not fit {data.image_shape} images (its weights have other shapes). "
            "Fix: train a teacher at the design's input size."
        ) from None
    teacher.eval()
    return teacher, folder, teacher_metrics


# Above this size the teacher runs on every minibatch instead (large segmentation sets).
TEACHER_OUTPUTS_MAX_BYTES = 256 * 2**20


def teacher_outputs_once(teacher: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor | None:
    """The frozen teacher's outputs on every training image, in order, or None when they would
    not fit in ``TEACHER_OUTPUTS_MAX_BYTES``.

    Without augmentation the KD target of an image is the same in every epoch, so one pass
    replaces a teacher forward per minibatch (the teacher costs more than the optical student).
    """
    if len(images) == 0:
        return None
    with torch.no_grad():
        first = teacher(images[:1])
        if first.element_size() * first.numel() * len(images) > TEACHER_OUTPUTS_MAX_BYTES:
            return None
        return torch.cat([teacher(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])


def _teacher_cache(kind: str, folder: Path, data: DatasetSplits, key: str) -> Path:
    """Where a teacher's once-only result is cached: keyed by its weights, the exact training
    images and ``key`` (the settings it depends on), so it is reused across seeds and methods but
    never for other data."""
    digest = hashlib.sha256()
    digest.update((folder / "model.pt").read_bytes())
    digest.update(data.train.images.numpy().tobytes())
    digest.update(key.encode())
    return studio_home() / "cache" / kind / f"{digest.hexdigest()[:20]}.pt"


def _read_cache(cache: Path, fits: Callable[[torch.Tensor], bool], log: logging.Logger, what: str):
    """The tensor cached at ``cache`` if it is readable and ``fits``; None otherwise (then it is rebuilt)."""
    if not cache.exists():
        return None
    try:
        stored = torch.load(cache, weights_only=True)
    except Exception:  # a torn cache file is rebuilt, never trusted
        log.warning("unreadable %s cache %s; rebuilding it", what, cache)
        return None
    if not fits(stored):
        return None
    log.info("%s from %s", what, cache)
    return stored


# How often a run waiting for another process's teacher cache looks again (seconds): the caches
# take minutes to half an hour to build, so a second's delay is nothing, and the progress report
# made at each look keeps the waiting run cancellable.
CACHE_WAIT_POLL_S = 1.0


def _built_once(
    cache: Path,
    fits: Callable[[torch.Tensor], bool],
    build: Callable[[], torch.Tensor],
    log: logging.Logger,
    what: str,
    progress: ProgressCallback | None,
) -> torch.Tensor:
    """The tensor cached at ``cache``, built by ``build`` and saved there if it is not.

    Built once across processes: the builder holds an OS lock on ``<cache>.lock``, and a second
    run needing the same cache (another studio job, another benchmark process) waits for it and
    reads what the first wrote, instead of spending the same half hour again. While it waits it
    reports progress and sleeps in short polls, so a cancel still stops it (a blocking lock could
    not be interrupted). A builder that dies releases the lock (the kernel drops it) and leaves no
    half-written file (the save is atomic); the next run builds it.

    A cache that exists is read without the lock (atomic saves mean a reader sees the whole file
    or none), so a read-only or shared studio home still serves it. Where the lock cannot be
    taken at all (a read-only folder, a network filesystem without locks) the run builds the
    cache itself, as if alone. On network filesystems the sharing is best-effort: at worst two
    runs build the same cache, never a wrong one.
    """
    stored = _read_cache(cache, fits, log, what)
    if stored is not None:
        return stored

    def build_and_save() -> torch.Tensor:
        stored = _read_cache(cache, fits, log, what)  # the previous holder may have just written it
        if stored is not None:
            return stored
        built = build()
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(built, cache)
        return built

    lock = cache.with_name(f"{cache.name}.lock")
    waiting = None
    while True:
        holding = contextlib.ExitStack()
        try:  # only taking the lock is guarded here: a failing build (a full disk) must still raise
            mine = holding.enter_context(file_lock(lock, wait=False))
        except OSError as error:
            log.warning("cannot lock %s (%s); computing the %s without sharing it", lock, error, what)
            return build_and_save()
        with holding:
            if mine:
                return build_and_save()
        if waiting is None:
            log.info("another run is computing the %s; waiting for it (%s)", what, lock)
            waiting = counting(progress, "prepare", {"task": f"waiting for another run's {what}"})
        waiting(0, 1)  # the job's progress: a remote job's cancel is raised from here
        time.sleep(CACHE_WAIT_POLL_S)  # a local job's cancel lands when the sleep ends


# The n × n table of the teacher's kernel is kept only for training sets up to this many images
# (256 MiB of float32).
TEACHER_TABLE_MAX_IMAGES = 8192


def teacher_kernel_table(
    teacher: nn.Module,
    folder: Path,
    data: DatasetSplits,
    config: TrainConfig,
    log: logging.Logger,
    progress: ProgressCallback | None = None,
) -> TeacherKernelTable | None:
    """The teacher's exact kernel between every pair of training images, when it is cheaper than
    the per-minibatch kernels this run would otherwise evaluate; None otherwise (then each step
    computes the teacher's kernel of its batch, the same numbers).

    Only for un-augmented images (the table holds the raw training images' kernel). Cached in the
    studio's home under the teacher's weights, the exact training images and the output pooling,
    so every seed and method of a study shares one table.
    """
    count = len(data.train)
    if config.augment or not 2 <= count <= TEACHER_TABLE_MAX_IMAGES:
        return None
    with torch.no_grad():
        outputs = flat_outputs(teacher(data.train.images[:1]), config.ntk_output_pool).shape[1]
    row_elements = outputs * sum(p.numel() for p in teacher.parameters())
    block = TeacherKernelTable.block_size(count, row_elements)
    per_minibatch = config.epochs * math.ceil(count / config.batch_size) * min(config.ntk_batch, config.batch_size)
    if TeacherKernelTable.cost(count, block) > per_minibatch:
        return None

    def build() -> torch.Tensor:
        started = time.perf_counter()
        report = counting(progress, "prepare", {"task": "teacher kernel table"})  # a once-only phase, cancellable
        table = TeacherKernelTable(teacher, data.train.images, output_pool=config.ntk_output_pool, progress=report)
        log.info("teacher's exact kernel table (%d images) in %.1f s", count, time.perf_counter() - started)
        return table.table

    cache = _teacher_cache("teacher-kernel", folder, data, f"{config.ntk_output_pool}:v1")
    stored = _built_once(cache, lambda table: table.shape == (count, count), build, log,
                         "teacher's exact kernel table", progress)  # fmt: skip
    return TeacherKernelTable.from_table(stored)


def teacher_sketch(
    teacher: nn.Module,
    folder: Path,
    data: DatasetSplits,
    config: TrainConfig,
    log: logging.Logger,
    progress: ProgressCallback | None = None,
) -> TeacherSketch:
    """The teacher's NTK sketch over the training images, cached in the studio's home.

    The key covers the teacher's weights, the exact training images, m and the output pooling,
    so a cached sketch is reused across seeds and methods but never for other data.
    """
    def build() -> torch.Tensor:
        started = time.perf_counter()
        report = counting(progress, "prepare", {"task": "teacher NTK sketch"})  # a long, once-only phase
        # vmap over the directions holds directions × batch × activations at once: keep that
        # product bounded (a U-Net on 64 × 64 images at batch 256 took 23 GB and was killed).
        pixels = int(data.train.images[0].numel())
        batch_size = max(4, min(256, 2**22 // (config.ntk_sketch * pixels)))
        sketch = TeacherSketch(
            teacher, data.train.images, directions=config.ntk_sketch, seed=0, output_pool=config.ntk_output_pool,
            progress=report, batch_size=batch_size,
        )  # fmt: skip
        log.info("teacher NTK sketch (%d directions) in %.1f s", config.ntk_sketch, time.perf_counter() - started)
        return sketch.features

    cache = _teacher_cache("teacher-sketch", folder, data, f"{config.ntk_sketch}:{config.ntk_output_pool}:v1")
    features = _built_once(cache, lambda features: features.shape[0] == len(data.train), build, log,
                           "teacher NTK sketch", progress)  # fmt: skip
    return TeacherSketch.from_features(features)


def build_optimiser(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The run's optimiser over the model's trainable parameters (``config.optimiser``)."""
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimiser == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.learning_rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    # A physical frontend adds ~10⁷ radius logits, and the reference AdamW makes seven passes over
    # them a step (58 ms at the default design; the fused kernel, one pass: ~5 ms). Other models
    # keep the reference implementation, so their earlier runs resume and reproduce bit for bit.
    fused = any(isinstance(module, PhysicalFrontend) for module in model.modules()) or None
    return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)


def _scheduler(optimiser: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=config.epochs, eta_min=config.learning_rate * 0.01
        )
    if config.schedule == "step":
        milestones = sorted({max(1, config.epochs // 2), max(1, (3 * config.epochs) // 4)})
        return torch.optim.lr_scheduler.MultiStepLR(optimiser, milestones=milestones, gamma=0.1)
    return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda epoch: 1.0)


def export_kernels(model: nn.Module, path: Path) -> None:
    """Save every frontend's signed kernels, capture PSFs (and radius maps) as npz, in taps."""
    arrays: dict[str, np.ndarray] = {}
    frontends = [m for m in model.modules() if isinstance(m, OpticalFrontend)]
    with torch.no_grad():
        for index, frontend in enumerate(frontends):
            prefix = f"group{index}_" if len(frontends) > 1 else ""
            arrays[f"{prefix}signed_kernels"] = frontend.signed_kernels().double().numpy()
            arrays[f"{prefix}capture_kernels"] = frontend.capture_kernels().double().numpy()
            if isinstance(frontend, PhysicalFrontend):
                arrays[f"{prefix}radius_map_m"] = frontend.radius_map().double().numpy()
                arrays[f"{prefix}phase_pixel_m"] = np.array(frontend.phase_pixel)
    if arrays:
        np.savez_compressed(path, **arrays)


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    design: Design | None = None,
    progress: ProgressCallback | None = None,
    data: DatasetSplits | None = None,
) -> dict[str, Any]:
    """Train one model; resume from ``out_dir/checkpoint.pt`` if it holds this same run.

    Returns the final metrics (test split, best-validation weights) and writes the run folder.
    Raises TrainingError if the loss or the weights become NaN/Inf (the last good checkpoint, if
    an epoch ended with finite weights and losses, is kept; the message says whether there is one).
    """
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_logger(run_dir)
    previous_threads = torch.get_num_threads()
    # Deliberate: every core this process may use (affinity/cgroup aware) unless the caller —
    # e.g. the job runner, which leaves one for the web server — says otherwise.
    threads = config.threads or len(os.sched_getaffinity(0)) or 1
    torch.set_num_threads(threads)
    try:
        return _train(config, run_dir, log, threads, design, progress, data)
    finally:
        torch.set_num_threads(previous_threads)
        close_logger(log)


def _train(
    config: TrainConfig,
    run_dir: Path,
    log: logging.Logger,
    threads: int,
    design: Design | None,
    progress: ProgressCallback | None,
    data: DatasetSplits | None,
) -> dict[str, Any]:
    torch.manual_seed(config.seed)
    if data is None:
        config.check_sources()  # a missing dataset or teacher is said before any work
        data = load_for_design(config.dataset, design, root=config.data_root,
                               seed=config.split_seed, val_fraction=config.val_fraction,
                               train_limit=config.train_limit)  # fmt: skip
    model, model_name = build_model(design, config, data)
    cost = count_cost(model, data.image_shape)
    if config.role == "student" and design is not None:
        cost["energy"] = energy_per_image(cost, design)
    optimiser = build_optimiser(model, config)
    scheduler = _scheduler(optimiser, config)
    loss_fn, teacher_info = _transfer_loss(config, data, log, progress)
    atomic_write_json(run_dir / "config.json", config.to_dict())
    student_design = design if config.role == "student" else None
    if student_design is not None:
        atomic_write_text(run_dir / "design.json", student_design.to_json())  # a validated design is finite
    run_id = config.run_id(student_design.design_id if student_design is not None else None)
    state = _resumed_state(run_dir / CHECKPOINT, run_id, model, optimiser, scheduler, config, log)
    log.info(
        "training %s (%s) on %s: %d train / %d val / %d test images, %d threads, %s",
        model_name, config.role, data.source, len(data.train), len(data.val), len(data.test), threads, cost,
    )  # fmt: skip
    clock = _run_epochs(config, data, model, loss_fn, optimiser, scheduler, state, run_dir, log, progress)
    if state.best_model is not None:
        model.load_state_dict(state.best_model)
    task, score_name = data.spec.task, headline(data.spec.task)
    test = evaluate(model, data.test, task, len(data.spec.classes))
    metrics = {
        **test, "task": task, "dataset": data.spec.name, "classes": list(data.spec.classes), "model": model_name,
        "role": config.role,
        "method": config.method, "teacher": teacher_info,
        "frontend": config.frontend if config.role == "student" else None, "seed": config.seed,
        "split_seed": config.split_seed, "data_root": config.data_root, "epochs_run": len(state.history),
        "best_val": state.best_score, "train_seconds": state.history[-1]["elapsed_s"] if state.history else 0.0,
        "data": data.summary(), "cost": cost,
        "design_id": student_design.design_id if student_design is not None else None,
    }  # fmt: skip
    atomic_save(model.state_dict(), run_dir / "model.pt")
    export_kernels(model, run_dir / "kernels.npz")
    atomic_write_json(run_dir / "metrics.json", metrics)
    log.info("test %s = %.4f", score_name, test[score_name])
    if progress:
        steps = math.ceil(len(data.train) / config.batch_size)
        last_loss = state.history[-1]["train_loss"] if state.history else math.nan
        progress(Progress("done", len(state.history), config.epochs, steps, steps, last_loss, clock.elapsed(), 0.0,
                          {score_name: test[score_name]}))  # fmt: skip
    return metrics


def _transfer_loss(
    config: TrainConfig, data: DatasetSplits, log: logging.Logger, progress: ProgressCallback | None
) -> tuple[TransferLoss, dict[str, Any] | None]:
    """The run's loss, with its frozen teacher and what is computed of it once; and the teacher's summary."""
    task, score_name = data.spec.task, headline(data.spec.task)
    if config.role != "student" or not needs_teacher(config.method):
        return TransferLoss(config, task), None
    teacher, teacher_folder, teacher_metrics = load_teacher(config, data)
    sketch = None
    if uses_ntk(config.method) and config.teacher_ntk == "sketch":
        sketch = teacher_sketch(teacher, teacher_folder, data, config, log, progress)
    teacher_info = {
        "run_dir": str(teacher_folder), "model": teacher_metrics.get("model"),
        score_name: teacher_metrics.get(score_name), "best_val": teacher_metrics.get("best_val"),
    }  # fmt: skip
    log.info("teacher %s from %s (test %s %.4f)", teacher_info["model"], teacher_folder, score_name,
             teacher_info[score_name] or float("nan"))  # fmt: skip
    known_outputs = None
    if "kd" in METHOD_TERMS[config.method](config) and not config.augment:
        known_outputs = teacher_outputs_once(teacher, data.train.images)
    table = None
    if uses_ntk(config.method) and config.teacher_ntk in ("exact", "structured"):
        table = teacher_kernel_table(teacher, teacher_folder, data, config, log, progress)
    return TransferLoss(config, task, teacher, sketch, known_outputs, table), teacher_info


def _resumed_state(
    path: Path, run_id: str, model: nn.Module, optimiser: torch.optim.Optimizer, scheduler: Any,
    config: TrainConfig, log: logging.Logger,
) -> RunState:  # fmt: skip
    """Where this run stands: from its checkpoint if ``path`` holds one of this run, else at the start."""
    if not path.exists():
        return RunState(run_id)
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # a torn or foreign file: say which, and how to go on
        raise TrainingError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}). "
            "Fix: delete it to start this run afresh, or choose another --out."
        ) from None
    if not isinstance(state, dict) or state.get("run_id") != run_id:
        log.warning("checkpoint.pt belongs to another configuration or design; starting afresh")
        return RunState(run_id)
    resumed = RunState.from_checkpoint(state, model, optimiser, scheduler)
    log.info("resumed at epoch %d of %d", resumed.epoch, config.epochs)
    return resumed


def _divergence_hint(state: RunState, checkpoint: Path) -> str:
    """What to do when the run diverges now, and truthfully whether a good checkpoint exists.

    Only epochs that ended with finite weights and losses are checkpointed, so one exists exactly
    when this run has finished an epoch (a foreign checkpoint at the path was not resumed).
    """
    advice = "Lower the learning rate or turn off sensor noise"
    if state.epoch:
        return (f"{advice}; the last good checkpoint (epoch {state.epoch}, finite weights and loss) is kept in "
                f"{checkpoint}.")  # fmt: skip
    return f"{advice}; no good checkpoint exists: no epoch of this run ended with finite weights and loss."


def _run_epochs(
    config: TrainConfig, data: DatasetSplits, model: nn.Module, loss_fn: TransferLoss,
    optimiser: torch.optim.Optimizer, scheduler: Any, state: RunState, run_dir: Path, log: logging.Logger,
    progress: ProgressCallback | None,
) -> Stopwatch:  # fmt: skip
    """Train from ``state`` to the last epoch (or early stop), checkpointing after each; returns the run's clock."""
    task, score_name, classes = data.spec.task, headline(data.spec.task), len(data.spec.classes)
    steps = math.ceil(len(data.train) / config.batch_size)
    clock = Stopwatch(config.epochs * steps, done_before=state.epoch * steps, elapsed_before=state.elapsed_s)
    checkpoint = run_dir / CHECKPOINT
    while state.epoch < config.epochs and not state.patience_spent(config.early_stopping_patience):
        epoch = state.epoch
        hint = _divergence_hint(state, checkpoint)

        def on_step(step: int, steps: int, loss: float, terms: dict[str, float], epoch: int = epoch) -> None:
            if progress:
                terms = {f"loss_{name}": value for name, value in terms.items()}
                progress(Progress("train", epoch + 1, config.epochs, step, steps, loss, clock.elapsed(),
                                  clock.eta(epoch * steps + step), terms))  # fmt: skip

        totals = train_epoch(model, loss_fn, data.train.images, data.train.targets, optimiser, epoch=epoch,
                             seed=config.seed, batch_size=config.batch_size,
                             augment=_augment if config.augment else None, on_step=on_step, divergence_hint=hint,
                             log=log)  # fmt: skip
        scheduler.step()
        validation = evaluate(model, data.val, task, classes)
        problem = divergence(model, {"training loss": totals.loss, "validation loss": validation["loss"]})
        if problem is not None:
            message = (f"{problem} at the end of epoch {epoch + 1} (learning rate "
                       f"{optimiser.param_groups[0]['lr']:.3g}), so that epoch is not saved. {hint}")  # fmt: skip
            log.error(message)
            raise TrainingError(message)
        row = {
            "epoch": epoch + 1, "train_loss": totals.loss,
            **{f"train_{name}": value for name, value in totals.components.items()},
            "val_loss": validation["loss"], f"val_{score_name}": validation[score_name],
            "learning_rate": optimiser.param_groups[0]["lr"], "elapsed_s": clock.elapsed(),
        }  # fmt: skip
        state.elapsed_s = row["elapsed_s"]
        state.record(row, validation[score_name], model)
        log.info("epoch %d/%d %s", epoch + 1, config.epochs, json.dumps(row))
        # History first: if either write fails (a full disk), the checkpoint is still the previous
        # epoch's, and resuming redoes this epoch and rewrites the history from the checkpoint's.
        atomic_write_json(run_dir / "history.json", state.history)
        atomic_save(state.to_checkpoint(model, optimiser, scheduler), checkpoint)
        if progress:
            score = {f"val_{score_name}": validation[score_name]}
            progress(Progress("validate", epoch + 1, config.epochs, steps, steps, totals.loss, clock.elapsed(),
                              clock.eta((epoch + 1) * steps), score))  # fmt: skip
    return clock
