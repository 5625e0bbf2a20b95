"""The trainer: config-driven, seeded, resumable, with progress callbacks and a divergence guard.

A run folder holds everything needed to inspect or resume the run:

    config.json      training settings        design.json   the frontend design (students)
    checkpoint.pt    latest epoch (atomic)     model.pt      best-validation weights
    history.json     per-epoch metrics         metrics.json  final test metrics
    kernels.npz      kernels / PSFs (students) train.log     human-readable log

Checkpoints hold only tensors, numbers and strings, so they load with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import DatasetSplits, Split, load_dataset
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
)
from ..models.frontends import held_kernels
from ..paths import studio_home
from .config import TrainConfig
from .losses import METHOD_TERMS, TransferLoss, needs_teacher, uses_ntk
from .metrics import classification_metrics, headline, segmentation_counts, segmentation_metrics, task_loss
from .ntk import TeacherKernelTable, TeacherSketch, flat_outputs
from .store import find_teacher

CHECKPOINT = "checkpoint.pt"
EVALUATION_SEED = 20_251_125


@dataclass
class Progress:
    """What a running job reports (to the job store, a progress bar, a log)."""

    # "prepare" (e.g. the teacher's NTK sketch; step/steps count its images) | "train" | "validate"
    # | "done" | "estimate" (an estimate job: step/steps count initialisations)
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


ProgressCallback = Callable[[Progress], None]


def _atomic_save(obj: Any, path: Path) -> None:
    """torch.save to a temporary file then rename: a crash never leaves a half-written file."""
    temporary = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def _atomic_write_text(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _logger(run_dir: Path) -> logging.Logger:
    logger = logging.getLogger(f"onn_core.training.{run_dir.resolve()}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
    return logger


def check_design_channels(design: Design, dataset: str, channels: int) -> None:
    """A design takes the dataset's colour channels (sizes are resampled), or says how to fix it."""
    if channels != design.input_channels:
        raise DesignError(
            "input_channels",
            design.input_channels,
            f"{dataset} images have {channels} channel(s) but the design expects {design.input_channels}.",
            f"set input channels to {channels}"
            + (" and give one wavelength per colour channel." if channels > 1 else "."),
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
        found = find_teacher(config.dataset, split_seed=config.split_seed, data_root=config.data_root)
        if found is None:
            raise TrainingError(
                f"method {config.method} needs a trained teacher for {config.dataset} (split {config.split_seed}) and "
                f"the teacher store has none. Fix: run `python -m onn_core train-teacher --dataset {config.dataset} "
                f"--split-seed {config.split_seed}` first, or pass --teacher RUN_DIR."
            )
        folder = found[0]
    try:
        teacher_config = TrainConfig.from_dict(json.loads((folder / "config.json").read_text(encoding="utf-8")))
        teacher_metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
        weights = torch.load(folder / "model.pt", weights_only=True)
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
    digest = hashlib.sha256()
    digest.update((folder / "model.pt").read_bytes())
    digest.update(data.train.images.numpy().tobytes())
    digest.update(f"{config.ntk_output_pool}:v1".encode())
    cache = studio_home() / "cache" / "teacher-kernel" / f"{digest.hexdigest()[:20]}.pt"
    if cache.exists():
        try:
            table = torch.load(cache, weights_only=True)
            if table.shape == (count, count):
                log.info("teacher's exact kernel table from %s", cache)
                return TeacherKernelTable.from_table(table)
        except Exception:  # a torn cache file is rebuilt, never trusted
            log.warning("unreadable teacher kernel table %s; rebuilding it", cache)
    started = time.perf_counter()

    def report(done: int, total: int) -> None:
        if progress:
            elapsed = time.perf_counter() - started
            progress(Progress("prepare", 0, config.epochs, done, total, math.nan, elapsed,
                              elapsed / done * (total - done), {"task": "teacher kernel table"}))  # fmt: skip

    table = TeacherKernelTable(teacher, data.train.images, output_pool=config.ntk_output_pool, progress=report)
    log.info("teacher's exact kernel table (%d images) in %.1f s", count, time.perf_counter() - started)
    cache.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(table.table, cache)
    return table


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
    digest = hashlib.sha256()
    digest.update((folder / "model.pt").read_bytes())
    digest.update(data.train.images.numpy().tobytes())
    digest.update(f"{config.ntk_sketch}:{config.ntk_output_pool}:v1".encode())
    cache = studio_home() / "cache" / "teacher-sketch" / f"{digest.hexdigest()[:20]}.pt"
    if cache.exists():
        try:
            features = torch.load(cache, weights_only=True)
            if features.shape[0] == len(data.train):
                log.info("teacher NTK sketch from %s", cache)
                return TeacherSketch.from_features(features)
        except Exception:  # a torn cache file is rebuilt, never trusted
            log.warning("unreadable teacher sketch cache %s; rebuilding it", cache)
    started = time.perf_counter()

    def report(done: int, total: int) -> None:  # a long, once-only phase: keep jobs informed (and cancellable)
        if progress:
            elapsed = time.perf_counter() - started
            progress(Progress("prepare", 0, config.epochs, done, total, math.nan, elapsed,
                              elapsed / done * (total - done), {"task": "teacher NTK sketch"}))  # fmt: skip

    # vmap over the directions holds directions × batch × activations at once: keep that product
    # bounded (a U-Net on 64 × 64 images at batch 256 took 23 GB and was killed).
    pixels = int(data.train.images[0].numel())
    batch_size = max(4, min(256, 2**22 // (config.ntk_sketch * pixels)))
    sketch = TeacherSketch(
        teacher, data.train.images, directions=config.ntk_sketch, seed=0, output_pool=config.ntk_output_pool,
        progress=report, batch_size=batch_size,
    )  # fmt: skip
    log.info("teacher NTK sketch (%d directions) in %.1f s", config.ntk_sketch, time.perf_counter() - started)
    cache.parent.mkdir(parents=True, exist_ok=True)
    _atomic_save(sketch.features, cache)
    return sketch


def _optimiser(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimiser == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.learning_rate, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(parameters, lr=config.learning_rate, weight_decay=config.weight_decay)


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
    Raises TrainingError if the loss becomes NaN/Inf (the last good checkpoint is kept).
    """
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = _logger(run_dir)
    previous_threads = torch.get_num_threads()
    # Deliberate: every core this process may use (affinity/cgroup aware) unless the caller —
    # e.g. the job runner, which leaves one for the web server — says otherwise.
    threads = config.threads or len(os.sched_getaffinity(0)) or 1
    torch.set_num_threads(threads)
    try:
        return _train(config, run_dir, log, threads, design, progress, data)
    finally:
        torch.set_num_threads(previous_threads)
        for handler in list(log.handlers):
            log.removeHandler(handler)
            handler.close()


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
        size = (design.input_height, design.input_width) if design is not None and config.role == "student" else None
        data = load_dataset(
            config.dataset,
            root=config.data_root,
            seed=config.split_seed,
            image_size=size,
            val_fraction=config.val_fraction,
            train_limit=config.train_limit,
        )
    task, classes = data.spec.task, len(data.spec.classes)
    model, model_name = build_model(design, config, data)
    cost = count_cost(model, data.image_shape)
    optimiser = _optimiser(model, config)
    scheduler = _scheduler(optimiser, config)
    score_name = headline(task)
    teacher_info, teacher, sketch = None, None, None
    if config.role == "student" and needs_teacher(config.method):
        teacher, teacher_folder, teacher_metrics = load_teacher(config, data)
        if uses_ntk(config.method) and config.teacher_ntk == "sketch":
            sketch = teacher_sketch(teacher, teacher_folder, data, config, log, progress)
        teacher_info = {
            "run_dir": str(teacher_folder),
            "model": teacher_metrics.get("model"),
            score_name: teacher_metrics.get(score_name),
            "best_val": teacher_metrics.get("best_val"),
        }
        log.info("teacher %s from %s (test %s %.4f)", teacher_info["model"], teacher_folder, score_name,
                 teacher_info[score_name] or float("nan"))  # fmt: skip
    known_outputs = None
    if teacher is not None and "kd" in METHOD_TERMS[config.method](config) and not config.augment:
        known_outputs = teacher_outputs_once(teacher, data.train.images)
    table = None
    if teacher is not None and uses_ntk(config.method) and config.teacher_ntk in ("exact", "structured"):
        table = teacher_kernel_table(teacher, teacher_folder, data, config, log, progress)
    loss_fn = TransferLoss(config, task, teacher, sketch, known_outputs, table)

    _atomic_write_text(run_dir / "config.json", json.dumps(config.to_dict(), indent=2))
    if design is not None and config.role == "student":
        _atomic_write_text(run_dir / "design.json", design.to_json())

    history: list[dict[str, Any]] = []
    start_epoch, best_score, best_state, stale, elapsed_before = 0, -math.inf, None, 0, 0.0
    checkpoint_path = run_dir / CHECKPOINT
    run_id = config.run_id(design.design_id if design is not None and config.role == "student" else None)
    if checkpoint_path.exists():
        try:
            state = torch.load(checkpoint_path, weights_only=True)
        except Exception as exc:  # a torn or foreign file: say which, and how to go on
            raise TrainingError(
                f"{checkpoint_path} is not a readable checkpoint ({type(exc).__name__}). "
                "Fix: delete it to start this run afresh, or choose another --out."
            ) from None
        if isinstance(state, dict) and state.get("run_id") == run_id:
            model.load_state_dict(state["model"])
            optimiser.load_state_dict(state["optimiser"])
            scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng_state"])
            start_epoch, history = state["epoch"], json.loads(state["history"])
            best_score, best_state, stale = state["best_score"], state["best_model"], state["stale"]
            elapsed_before = state["elapsed_s"]
            log.info("resumed at epoch %d of %d", start_epoch, config.epochs)
        else:
            log.warning("checkpoint.pt belongs to another configuration or design; starting afresh")

    log.info(
        "training %s (%s) on %s: %d train / %d val / %d test images, %d threads, %s",
        model_name, config.role, data.source, len(data.train), len(data.val), len(data.test), threads, cost,
    )  # fmt: skip
    batch = config.batch_size
    steps = math.ceil(len(data.train) / batch)
    session_started = time.perf_counter()
    started = session_started - elapsed_before  # elapsed times count earlier sessions of this run
    for epochs_done_here, epoch in enumerate(range(start_epoch, config.epochs), start=1):
        if best_state is not None and config.early_stopping_patience and stale >= config.early_stopping_patience:
            break
        model.train()
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        order = torch.randperm(len(data.train), generator=generator)
        running, seen = 0.0, 0
        components: dict[str, float] = {}
        for step in range(steps):
            index = order[step * batch : (step + 1) * batch]
            images, targets = data.train.images[index], data.train.targets[index]
            if config.augment:
                images = _augment(images, generator)
            _, parts = loss_fn(model, images, targets, index)
            loss = parts.total
            if not torch.isfinite(loss):
                message = (
                    f"the loss became {float(loss.detach())} at epoch {epoch + 1}, step {step + 1} "
                    f"(learning rate {optimiser.param_groups[0]['lr']:.3g}). Lower the learning rate or "
                    f"turn off sensor noise; the last good checkpoint is kept in {checkpoint_path}."
                )
                log.error(message)
                raise TrainingError(message)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            running += float(loss.detach()) * len(index)
            for name, value in parts.components.items():
                components[name] = components.get(name, 0.0) + value * len(index)
            seen += len(index)
            if progress:  # every step: callers throttle, and a job's cancel is checked here
                now = time.perf_counter()
                done = (epochs_done_here - 1) * steps + step + 1
                remaining = (config.epochs - epoch) * steps - step - 1
                eta = (now - session_started) / done * remaining
                terms = {f"loss_{name}": total / seen for name, total in components.items()}
                progress(
                    Progress("train", epoch + 1, config.epochs, step + 1, steps, running / seen, now - started, eta,
                             terms)
                )  # fmt: skip
        scheduler.step()
        validation = evaluate(model, data.val, task, classes)
        score = validation[score_name]
        if score > best_score:
            best_score, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
        row = {
            "epoch": epoch + 1,
            "train_loss": running / max(seen, 1),
            **{f"train_{name}": total / max(seen, 1) for name, total in components.items()},
            "val_loss": validation["loss"],
            f"val_{score_name}": score,
            "learning_rate": optimiser.param_groups[0]["lr"],
            "elapsed_s": time.perf_counter() - started,
        }
        history.append(row)
        log.info("epoch %d/%d %s", epoch + 1, config.epochs, json.dumps(row))
        _atomic_save(
            {
                "run_id": run_id,
                "rng_state": torch.get_rng_state(),
                "elapsed_s": time.perf_counter() - started,
                "epoch": epoch + 1,
                "model": model.state_dict(),
                "optimiser": optimiser.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": json.dumps(history),
                "best_score": best_score,
                "best_model": best_state,
                "stale": stale,
            },
            checkpoint_path,
        )
        _atomic_write_text(run_dir / "history.json", json.dumps(history, indent=2))
        if progress:
            now = time.perf_counter()
            elapsed = now - started
            eta = (now - session_started) / epochs_done_here * (config.epochs - epoch - 1)
            progress(Progress("validate", epoch + 1, config.epochs, steps, steps, row["train_loss"], elapsed, eta,
                              {f"val_{score_name}": score}))  # fmt: skip

    if best_state is not None:
        model.load_state_dict(best_state)
    test = evaluate(model, data.test, task, classes)
    metrics = {
        **test,
        "task": task,
        "dataset": data.spec.name,
        "model": model_name,
        "role": config.role,
        "method": config.method,
        "teacher": teacher_info,
        "frontend": config.frontend if config.role == "student" else None,
        "seed": config.seed,
        "split_seed": config.split_seed,
        "data_root": config.data_root,
        "epochs_run": len(history),
        "best_val": best_score,
        "train_seconds": history[-1]["elapsed_s"] if history else 0.0,
        "data": data.summary(),
        "cost": cost,
        "design_id": design.design_id if design is not None and config.role == "student" else None,
    }
    _atomic_save(model.state_dict(), run_dir / "model.pt")
    export_kernels(model, run_dir / "kernels.npz")
    _atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    log.info("test %s = %.4f", score_name, test[score_name])
    if progress:
        elapsed = time.perf_counter() - started
        progress(Progress("done", len(history), config.epochs, steps, steps, history[-1]["train_loss"] if history
                          else math.nan, elapsed, 0.0, {score_name: test[score_name]}))  # fmt: skip
    return metrics
