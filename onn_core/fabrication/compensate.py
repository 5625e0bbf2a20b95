"""Post-fabrication compensation: the optics are fixed, only the digital backend is fine-tuned.

The method's stage 3. The fabricated frontend (measured PSFs, or a seeded draw of an error
model) is frozen; the backend, starting from its trained weights, is fine-tuned on a small
``fraction`` of the training images as the fabricated optics capture them (≈ 10 % in the method),
with

* ``e2e`` — the task loss alone, or
* ``ntkd`` — α·task + β·D(Θ_teacher, Θ_student): the teacher sees the raw images; the student's
  NTK is taken w.r.t. the backend's parameters only, on the fabricated feature maps (also
  ``kd`` and ``kd+ntkd``, as in training).

The same fraction of the validation split picks the best epoch: a real bench has no more
captured data for model selection than for training. Before/after scores are on the full test
split through the same fabricated optics.

``compensate_captured`` does the same from **captured feature maps** (the real optics and camera,
no simulation at all): the backend is fine-tuned on maps of some training images, a fifth of
them (stratified) picks the epoch, and before/after are scored on captured maps of test images.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import Split
from ..data.registry import stratified_split
from ..errors import MeasuredDataError, TrainingError
from ..models import OpticalFrontend
from ..models.zoo import BackendOnFeatures
from ..run_files import atomic_save, atomic_write_json, run_log
from ..training.config import METHODS
from ..training.loop import train_epoch
from ..training.losses import TransferLoss, needs_teacher, uses_ntk
from ..training.progress import Progress, Stopwatch
from ..training.run import FinishedRun
from ..training.trainer import load_teacher, teacher_sketch
from .error_model import ErrorModel
from .evaluate import score
from .fabricated import fabricate
from .inverse_design import Metasurface
from .measured import CapturedMaps

RESULT_FILE = "compensation.json"


@dataclass(frozen=True)
class CompensationSettings:
    """How to fine-tune the backend after fabrication.

    Attributes:
        method: "e2e", "kd", "ntkd" or "kd+ntkd".
        fraction: of the training (and validation) split captured through the fabricated optics.
        epochs, learning_rate, weight_decay: AdamW on the backend, cosine schedule.
        batch_size: None uses the run's own (128 for classification, 8 for segmentation).
        alpha, beta, temperature, kd_alpha: loss weights (None: the run's own).
        ntk_draws, ntk_normalisation: the student NTK estimator (None: the run's own).
        teacher: the teacher's run folder (None: the run's teacher, else the teacher store's best).
        seed: which images are captured, batch order, and noise.
    """

    method: str = "ntkd"
    fraction: float = 0.1
    epochs: int = 15
    batch_size: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    alpha: float | None = None
    beta: float | None = None
    temperature: float | None = None
    kd_alpha: float | None = None
    ntk_draws: int | None = None
    ntk_normalisation: str | None = None
    teacher: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise TrainingError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}.")
        if not isinstance(self.fraction, int | float) or not 0 < self.fraction <= 1:
            raise TrainingError(f"fraction is the share of the training images captured, in (0, 1]; got "
                                f"{self.fraction!r}.")  # fmt: skip
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainingError(f"{name} must be a whole number ≥ 1; got {value!r}.")
        if not (isinstance(self.learning_rate, int | float) and math.isfinite(self.learning_rate)
                and 0 < self.learning_rate <= 1):  # fmt: skip
            raise TrainingError(f"learning_rate must be a number in (0, 1]; got {self.learning_rate!r}.")
        for name in ("weight_decay", "alpha", "beta", "temperature", "kd_alpha"):
            value = getattr(self, name)
            if value is None and name != "weight_decay":
                continue
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or not 0 <= value <= 1e3 or (name == "temperature" and value == 0):  # fmt: skip
                low = "above 0" if name == "temperature" else "from 0"
                raise TrainingError(f"{name} must be a finite number {low} to 1000; got {value!r}.")
        if self.ntk_draws is not None and (isinstance(self.ntk_draws, bool) or not isinstance(self.ntk_draws, int)
                                           or not 1 <= self.ntk_draws <= 1024):  # fmt: skip
            raise TrainingError(f"ntk_draws must be a whole number from 1 to 1024; got {self.ntk_draws!r}.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**32:
            raise TrainingError(f"seed must be a whole number from 0 to 2³²−1; got {self.seed!r}.")
        if self.teacher is not None and (not isinstance(self.teacher, str) or not self.teacher):
            raise TrainingError(f"teacher must be a run folder (text), or left out; got {self.teacher!r}.")


@dataclass
class CompensationResult:
    """Scores around compensation (fractions: accuracy or mIoU on the test split).

    ``trained``: the run in simulation; ``before``: through the fabricated optics; ``after``:
    with the fine-tuned backend. ``recovered``: (after − before)/(trained − before), the share of
    the fabrication drop won back (None when there was no drop).
    """

    method: str
    fraction: float
    metric: str
    trained: float
    before: float
    after: float
    train_images: int
    val_images: int
    epochs_run: int
    best_epoch: int
    seconds: float
    error_model: dict[str, Any] | None
    source: str
    history: list[dict[str, float]]
    settings: dict[str, Any]

    @property
    def recovered(self) -> float | None:
        drop = self.trained - self.before
        return (self.after - self.before) / drop if drop > 1e-9 else None

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "drop": self.trained - self.before, "recovered": self.recovered}


def captured_subset(split: Split, fraction: float, task: str, seed: int) -> np.ndarray:
    """Indices of the ``fraction`` of a split that is captured (stratified by class)."""
    rng = np.random.default_rng(seed)
    count = max(1, round(fraction * len(split)))
    if task == "classification" and fraction < 1:
        chosen = stratified_split(split.targets.numpy(), (fraction,), rng)[0]
        return np.sort(chosen[:count]) if len(chosen) >= 1 else np.arange(count)
    return np.sort(rng.permutation(len(split))[:count])


def _run_config(run: FinishedRun, settings: CompensationSettings):
    names = ("alpha", "beta", "temperature", "kd_alpha", "ntk_draws", "ntk_normalisation")
    overrides = {name: getattr(settings, name) for name in names if getattr(settings, name) is not None}
    teacher = settings.teacher or run.config.teacher
    if settings.teacher and not Path(settings.teacher).is_dir():
        raise TrainingError(f"the teacher {settings.teacher} is not a run folder; give a trained teacher's folder.")
    if teacher and not Path(teacher).is_dir():  # the run's own teacher moved: fall back, and say so
        logging.getLogger("onn_core.compensate").warning("the run's teacher %s is gone; using the teacher store",
                                                         teacher)  # fmt: skip
        teacher = None
    return run.config.replace(
        method=settings.method, epochs=settings.epochs, batch_size=settings.batch_size or run.config.batch_size,
        learning_rate=settings.learning_rate, weight_decay=settings.weight_decay, seed=settings.seed, augment=False,
        early_stopping_patience=None, ntk_parameters="backend", ntk_engine="structured", teacher_ntk="sketch",
        ntk_unbiased=False, teacher=teacher, **overrides,
    )  # fmt: skip


def compensate(
    run: FinishedRun,
    settings: CompensationSettings | None = None,
    *,
    errors: ErrorModel | None = None,
    metasurface: Metasurface | None = None,
    measured: list[torch.Tensor] | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> CompensationResult:
    """Fine-tune ``run``'s backend behind its fabricated optics; optionally write ``out_dir``.

    ``out_dir`` receives compensation.json (the result), model.pt (the fabricated model with
    its compensated backend: frontend buffers included) and compensate.log.
    """
    settings = settings or CompensationSettings()
    errors = errors or ErrorModel()
    with _compensation_log(out_dir) as (folder, log):
        return _compensate(run, settings, errors, metasurface, measured, folder, log, progress, time.perf_counter())


@contextlib.contextmanager
def _compensation_log(out_dir: str | Path | None):
    """(folder or None, logger): the log goes to ``out_dir``/compensate.log while compensation runs."""
    if out_dir is None:
        yield None, logging.getLogger("onn_core.compensate")
        return
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with run_log(folder, "compensate.log") as log:
        yield folder, log


def _teacher_and_sketch(config, data, captured, log, progress):
    """The frozen teacher (kd, ntkd) and its NTK sketch over the captured training images (ntkd)."""
    if not needs_teacher(config.method):
        return None, None
    teacher, teacher_folder, _ = load_teacher(config, data)
    if not uses_ntk(config.method):
        return teacher, None
    return teacher, teacher_sketch(teacher, teacher_folder, captured, config, log, progress)


def _finish(result: CompensationResult, model: nn.Module, run: FinishedRun, folder: Path | None,
            log: logging.Logger) -> CompensationResult:  # fmt: skip
    """Log the outcome; with a folder, save the compensated model and compensation.json there."""
    log.info("%s: %.4f → %.4f after %s compensation (best epoch %d; %s)", result.metric, result.before, result.after,
             result.method, result.best_epoch, result.source)  # fmt: skip
    if folder is not None:
        atomic_save(model.state_dict(), folder / "model.pt")
        atomic_write_json(folder / RESULT_FILE, {"run": str(run.folder), **result.to_dict()})
    return result


def _compensate(run, settings, errors, metasurface, measured, folder, log, progress, started) -> CompensationResult:
    torch.manual_seed(settings.seed)
    data = run.data()
    task, classes = run.task, run.classes
    config = _run_config(run, settings)
    model = fabricate(run.model, run.design, errors, metasurface=metasurface, measured=measured)
    before = score(model, data.test, task, classes)
    trained = float(run.metrics[run.score_name])
    train_index = captured_subset(data.train, settings.fraction, task, settings.seed)
    val_index = captured_subset(data.val, settings.fraction, task, settings.seed + 1)
    captured = dataclasses.replace(
        data, train=Split(data.train.images[train_index], data.train.targets[train_index]),
        val=Split(data.val.images[val_index], data.val.targets[val_index]),
    )  # fmt: skip
    log.info("compensating %s (%s) with %s on %d captured training images (%.0f %%): %s %.4f → fabricated %.4f",
             run.folder, ", ".join(errors.describe()) or "measured/ideal optics", settings.method, len(train_index),
             100 * settings.fraction, run.score_name, trained, before)  # fmt: skip
    loss_fn = TransferLoss(config, task, *_teacher_and_sketch(config, data, captured, log, progress))
    frontend_ids = {id(p) for m in model.modules() if isinstance(m, OpticalFrontend) for p in m.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) not in frontend_ids)
    history, best_epoch = _fine_tune(
        model, loss_fn, captured.train.images, captured.train.targets, captured.train.images,
        lambda: score(model, captured.val, task, classes), settings, config.batch_size, run.score_name, log,
        progress, started,
    )  # fmt: skip
    after = score(model, data.test, task, classes)
    result = CompensationResult(
        method=settings.method, fraction=settings.fraction, metric=run.score_name, trained=trained, before=before,
        after=after, train_images=len(train_index), val_images=len(val_index), epochs_run=len(history),
        best_epoch=best_epoch, seconds=time.perf_counter() - started,
        error_model=errors.to_dict(),
        source="measured PSFs" if measured is not None else ("metasurface" if metasurface is not None else "kernels"),
        history=history, settings=dataclasses.asdict(settings),
    )  # fmt: skip
    return _finish(result, model, run, folder, log)


SELECTION_SHARE = 0.2  # of the captured training maps, held out to pick the epoch


def compensate_captured(
    run: FinishedRun,
    train_maps: CapturedMaps,
    test_maps: CapturedMaps,
    settings: CompensationSettings | None = None,
    *,
    out_dir: str | Path | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> CompensationResult:
    """Fine-tune ``run``'s backend on captured feature maps of training images; score on captured test maps.

    Nothing is simulated: ``train_maps`` (split "train") and ``test_maps`` (split "test" or "val")
    are what the real optics and camera gave (:func:`~.evaluate.load_captured_maps`). A fifth of
    the training maps, stratified by class, picks the epoch. The teacher, for kd/ntkd, sees the
    raw images the maps were captured from. ``settings.fraction`` is ignored: the captures decide
    it. ``out_dir`` receives compensation.json, the compensated backend (model.pt) and a log.
    """
    settings = settings or CompensationSettings()
    if train_maps.split != "train":
        raise MeasuredDataError(f"split {train_maps.split}", "compensation trains on maps of training images "
                                "(split 'train'); the test images must stay unseen.")  # fmt: skip
    if test_maps.split not in ("test", "val"):
        raise MeasuredDataError(f"split {test_maps.split}", "before/after are scored on maps of test (or "
                                "validation) images, not of the images compensation trains on.")  # fmt: skip
    started = time.perf_counter()
    with _compensation_log(out_dir) as (folder, log):
        return _compensate_captured(run, train_maps, test_maps, settings, folder, log, progress, started)


def _compensate_captured(run, train_maps, test_maps, settings, folder, log, progress, started) -> CompensationResult:
    torch.manual_seed(settings.seed)
    data = run.data()
    model = copy.deepcopy(run.model)
    student = BackendOnFeatures(model)

    def accuracy(features: torch.Tensor, targets: torch.Tensor) -> float:
        student.eval()
        with torch.no_grad():
            return float((student(features).argmax(dim=1) == targets).float().mean())

    images, targets = data.train.images[train_maps.indices], data.train.targets[train_maps.indices]
    rng = np.random.default_rng(settings.seed)
    held, kept = stratified_split(targets.numpy(), (SELECTION_SHARE,), rng)
    if len(held) == 0 or len(kept) == 0:
        raise MeasuredDataError("captured training maps", f"{len(targets)} maps are too few to train on and pick "
                                "an epoch with; capture at least a few per class.")  # fmt: skip
    held, kept = torch.as_tensor(np.sort(held)), torch.as_tensor(np.sort(kept))
    test_split = getattr(data, test_maps.split)
    test_targets = test_split.targets[test_maps.indices]
    before = accuracy(test_maps.features, test_targets)
    with torch.no_grad():
        trained = float((run.model(test_split.images[test_maps.indices]).argmax(dim=1) == test_targets).float().mean())
    config = _run_config(run, settings)
    captured = dataclasses.replace(data, train=Split(images[kept], targets[kept]),
                                   val=Split(images[held], targets[held]))  # fmt: skip
    log.info("compensating %s with %s on %d captured training maps (%d pick the epoch): accuracy on %d captured "
             "%s maps %.4f, simulated %.4f", run.folder, settings.method, len(kept), len(held), len(test_targets),
             test_maps.split, before, trained)  # fmt: skip
    loss_fn = TransferLoss(config, "classification", *_teacher_and_sketch(config, data, captured, log, progress))
    features = train_maps.features
    history, best_epoch = _fine_tune(
        student, loss_fn, features[kept], targets[kept], images[kept],
        lambda: accuracy(features[held], targets[held]), settings, config.batch_size, run.score_name, log,
        progress, started,
    )  # fmt: skip
    after = accuracy(test_maps.features, test_targets)
    result = CompensationResult(
        method=settings.method, fraction=len(train_maps.indices) / len(data.train), metric=run.score_name,
        trained=trained, before=before, after=after, train_images=len(kept), val_images=len(held),
        epochs_run=len(history), best_epoch=best_epoch, seconds=time.perf_counter() - started, error_model=None,
        source=f"captured maps ({len(test_targets)} {test_maps.split} images scored)", history=history,
        settings=dataclasses.asdict(settings),
    )  # fmt: skip
    return _finish(result, model, run, folder, log)


def _fine_tune(model: nn.Module, loss_fn: TransferLoss, inputs: torch.Tensor, targets: torch.Tensor,
               teacher_inputs: torch.Tensor, select: Callable[[], float], settings: CompensationSettings,
               batch: int, metric: str, log: logging.Logger, progress, started: float) -> tuple[list, int]:  # fmt: skip
    """AdamW on ``model``'s trainable parameters; keeps the epoch ``select`` scores best (epoch 0: as given).

    ``inputs`` feed the student and ``teacher_inputs`` the teacher (the same images through
    simulated optics; captured maps and their raw images from a bench). Returns (history, best epoch)
    and leaves ``model`` at its best state, in eval mode.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=settings.epochs,
                                                          eta_min=settings.learning_rate * 0.01)  # fmt: skip
    model.eval()
    best_score = select()
    best_state, best_epoch, history = copy.deepcopy(model.state_dict()), 0, []
    steps = math.ceil(len(inputs) / batch)
    clock = Stopwatch(settings.epochs * steps, elapsed_before=time.perf_counter() - started)
    for epoch in range(settings.epochs):

        def on_step(step: int, steps: int, loss: float, terms: dict[str, float], epoch: int = epoch) -> None:
            if progress:
                terms = {f"loss_{name}": value for name, value in terms.items()}
                progress(Progress("compensate", epoch + 1, settings.epochs, step, steps, loss, clock.elapsed(),
                                  clock.eta(epoch * steps + step), terms))  # fmt: skip

        totals = train_epoch(model, loss_fn, inputs, targets, optimiser, epoch=epoch, seed=settings.seed,
                             batch_size=batch, teacher_inputs=teacher_inputs, on_step=on_step,
                             divergence_hint="Compensation diverged: lower its learning rate.", log=log)  # fmt: skip
        schedule.step()
        model.eval()
        validation = select()
        history.append({"epoch": epoch + 1, "train_loss": totals.loss, f"val_{metric}": validation})
        log.info("epoch %d/%d %s", epoch + 1, settings.epochs, json.dumps(history[-1]))
        if validation > best_score:
            best_score, best_state, best_epoch = validation, copy.deepcopy(model.state_dict()), epoch + 1
    model.load_state_dict(best_state)
    model.eval()
    return history, best_epoch
