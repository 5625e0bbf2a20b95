"""Training configuration: one validated, JSON-serialisable object (SI units where physical)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import SPECS, dataset_status
from ..errors import TrainingError
from .ntk import NORMALISATIONS

METHODS = ("e2e", "kd", "ntkd", "kd+ntkd")
STUDENT_NTK_ENGINES = ("structured", "estimator", "exact")
NTK_PARAMETERS = ("all", "frontend", "backend")
TEACHER_NTK_ENGINES = ("sketch", "structured", "estimator", "exact")
# Knowledge-transfer settings and their defaults (the CLI's too).
TRANSFER_DEFAULTS: dict[str, Any] = {
    "teacher": None, "alpha": 1.0, "beta": 1.0, "temperature": 4.0, "kd_alpha": 0.5,
    "ntk_engine": "structured", "teacher_ntk": "sketch", "ntk_draws": 2, "ntk_epsilon": 1e-3,
    "ntk_sketch": 64, "ntk_normalisation": "cka", "ntk_output_pool": 8, "ntk_unbiased": False,
    "ntk_parameters": "all", "ntk_batch": 32,
}  # fmt: skip
# A run's identity leaves out transfer settings at these values, so runs that do not use them
# keep the identity (and the resumable checkpoints) they had before. They are the defaults of
# the time run identities began: a run of the present default engine is not one of the old
# estimator's. NTK settings are left out entirely when the method uses no kernel.
_IDENTITY_NEUTRAL: dict[str, Any] = {**TRANSFER_DEFAULTS, "ntk_engine": "estimator", "ntk_batch": None}
_NTK_SETTINGS = frozenset(name for name in TRANSFER_DEFAULTS if "ntk" in name)
ROLES = ("student", "teacher")
SEED_LIMIT = 2**32 - 1  # seeds feed torch's and NumPy's generators, which take 64-bit state
# Whole-number settings: (least, most, whether null is allowed). The upper limits are far past
# any useful run; they exist so a typo (1e9 epochs) is refused at once, not after hours.
WHOLE_NUMBERS: dict[str, tuple[int, int, bool]] = {
    "epochs": (1, 100_000, False), "batch_size": (1, 1_000_000, False), "early_stopping_patience": (1, 100_000, True),
    "seed": (0, SEED_LIMIT, False), "split_seed": (0, SEED_LIMIT, False), "threads": (1, 4096, True),
    "train_limit": (1, 10**9, True), "ntk_draws": (1, 1000, False), "ntk_sketch": (1, 65_536, False),
    "ntk_output_pool": (1, 4096, False), "ntk_batch": (2, 1_000_000, True),
}  # fmt: skip
# Real-number settings: (lower, upper, lower allowed, upper allowed, null allowed); always finite.
REAL_NUMBERS: dict[str, tuple[float, float, bool, bool, bool]] = {
    "learning_rate": (0.0, math.inf, False, False, False), "weight_decay": (0.0, math.inf, True, False, False),
    "val_fraction": (0.0, 1.0, False, False, False), "alpha": (0.0, math.inf, True, False, False),
    "beta": (0.0, math.inf, True, False, False), "temperature": (0.0, math.inf, False, False, False),
    "kd_alpha": (0.0, 1.0, True, True, False), "ntk_epsilon": (0.0, math.inf, False, False, False),
    # metres: a phase map's pitch is a few meta-atoms (hundreds of nm to µm), never beyond a millimetre
    "phase_pixel": (0.0, 1e-3, False, True, True),
}  # fmt: skip
TEXTS: dict[str, bool] = {"dataset": False, "model": False, "data_root": True, "teacher": True}  # name: null allowed
PATHS = ("data_root", "teacher")  # texts that name a file or folder: never empty
TEACHER_FILES = ("config.json", "metrics.json", "model.pt")  # what a finished teacher run folder holds
FLAGS = ("augment", "sensor_noise", "normalise_intensity", "ntk_unbiased")
OPTIMISERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "step", "none")


@dataclass(frozen=True)
class TrainConfig:
    """How to train one model on one dataset.

    Attributes:
        dataset: registry name. data_root: the user's copy (None: embedded/system default).
        role: "student" (a hybrid ONN built from the design) or "teacher" (electronic).
        model: registry name ("" → the task's default student or teacher).
        method: "e2e" (task loss only), "kd" (Hinton distillation: kd_alpha·T²·KL(teacher‖student
            at temperature T) + (1 − kd_alpha)·task), "ntkd" (alpha·task + beta·D(Θ_teacher,
            Θ_student), D the mean squared difference of the normalised minibatch NTKs) or
            "kd+ntkd" (the KD loss + beta·D).
        teacher: run folder of the trained teacher (None: the teacher store's best on validation
            for this dataset, split and data source).
        alpha, beta: NTKD weights of the task loss and of the kernel distance.
        temperature, kd_alpha: Hinton KD temperature T and weight α.
        ntk_engine: student NTK, "structured" (exact, from each layer's inputs and back-propagated
            signals: see training.ntk.ntk_structured), "estimator" (the paper's finite differences,
            forward passes only; its gradient is not the kernel distance's) or "exact" (torch.func
            per-sample Jacobians; the slow reference).
        teacher_ntk: teacher NTK, "sketch" (jvp features cached once per dataset), "structured",
            "estimator" or "exact" (the last three per batch).
        ntk_draws, ntk_epsilon: estimator draws R and step ε (parameter units).
        ntk_sketch: random directions m of the teacher sketch.
        ntk_normalisation: "cka", "trace", "frobenius" or "none" (see training.ntk).
        ntk_output_pool: segmentation logit maps are pooled to this many pixels per side.
        ntk_unbiased: estimator only: the kernel distance as the product of two independent
            half-estimates' residuals (one shared normalisation), which removes the estimator's
            variance from the loss.
        ntk_parameters: the student's kernel over "all" its parameters, only the optical
            "frontend" or only the digital "backend" (what post-fabrication compensation trains).
        ntk_batch: the kernels are taken on the first this-many images of each (shuffled)
            minibatch (None: all of it); the kernel's cost grows with it, the task loss still
            sees the whole minibatch.
        frontend: "ideal" or "physical" (students only).
        epochs, batch_size: as usual. optimiser: "adamw" or "sgd" (momentum 0.9, Nesterov).
        learning_rate, weight_decay: optimiser settings. schedule: "cosine" (to 1 % of the
            initial rate), "step" (×0.1 at 50 % and 75 % of the epochs) or "none".
        early_stopping_patience: epochs without a better validation score before stopping
            (None: never). The best-validation weights are the ones kept.
        seed: fixes the initial weights, batch order and noise (varied across repeated runs).
        split_seed: fixes the train/val/test split (and synthetic images); kept fixed across
            seeds so the spread reflects training, and teachers and students share one test set.
        threads: torch threads (None: every core; the job runner passes cores − 1 so the web
            server stays responsive).
        train_limit: use only this many training images (quick runs). val_fraction: of train.
        augment: random ±2-pixel translations of training images.
        sensor_noise: simulate the camera (shot/read noise, ADC at the design's bit depth).
        normalise_intensity: frontend auto-exposure (feature maps ÷ mean input intensity).
        phase_pixel: physical frontend's phase-map pitch, metres (None: derived from the NA).
    """

    dataset: str = "mnist"
    data_root: str | None = None
    role: str = "student"
    model: str = ""
    method: str = "e2e"
    frontend: str = "ideal"
    epochs: int = 10
    batch_size: int = 128
    optimiser: str = "adamw"
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    early_stopping_patience: int | None = 5
    seed: int = 0
    split_seed: int = 0
    threads: int | None = None
    train_limit: int | None = None
    val_fraction: float = 0.1
    augment: bool = False
    sensor_noise: bool = False
    normalise_intensity: bool = False
    phase_pixel: float | None = None
    teacher: str | None = None
    alpha: float = 1.0
    beta: float = 1.0
    temperature: float = 4.0
    kd_alpha: float = 0.5
    ntk_engine: str = "structured"
    teacher_ntk: str = "sketch"
    ntk_draws: int = 2
    ntk_epsilon: float = 1e-3
    ntk_sketch: int = 64
    ntk_normalisation: str = "cka"
    ntk_output_pool: int = 8
    ntk_unbiased: bool = False
    ntk_parameters: str = "all"
    ntk_batch: int | None = 32

    def __post_init__(self) -> None:
        """Refuse, naming the setting, its value and what is allowed, any setting that cannot work.

        Every field is checked for its type and range first (a job config is JSON from anywhere:
        ``Infinity``, ``1e308`` or a number where a path belongs must be refused before it is
        queued, not in the worker), then the combinations.
        """
        _check_types_and_ranges(self)
        choices = {"role": ROLES, "method": METHODS, "optimiser": OPTIMISERS, "schedule": SCHEDULES,
                   "frontend": ("ideal", "physical"), "ntk_engine": STUDENT_NTK_ENGINES,
                   "teacher_ntk": TEACHER_NTK_ENGINES, "ntk_normalisation": NORMALISATIONS,
                   "ntk_parameters": NTK_PARAMETERS}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise TrainingError(f"{name} must be one of {', '.join(allowed)}; got {getattr(self, name)!r}.")
        if self.method != "e2e" and self.role == "teacher":
            raise TrainingError(f"a teacher is trained on the task loss (method e2e), not {self.method!r}.")
        if self.ntk_unbiased and (self.ntk_engine != "estimator" or self.ntk_draws < 2):
            raise TrainingError("ntk_unbiased splits the estimator's draws in two: it needs ntk_engine estimator and "
                                f"ntk_draws ≥ 2 (got {self.ntk_engine}, {self.ntk_draws}).")  # fmt: skip
        if self.method in ("ntkd", "kd+ntkd") and self.teacher_ntk == "sketch" and self.augment:
            raise TrainingError(
                "the teacher sketch caches the teacher's Jacobian of the un-shifted training images, so it cannot "
                "be used with augment. Fix: set teacher_ntk to estimator or exact, or drop --augment."
            )
        if self.augment and self.dataset in SPECS and SPECS[self.dataset].task == "segmentation":
            raise TrainingError(
                f"augment shifts images but not masks, so it cannot be used with {self.dataset}. Fix: drop --augment."
            )

    def check_sources(self) -> None:
        """Refuse a run whose inputs are not there: its dataset (in ``data_root``) and its named teacher.

        Kept apart from construction (a config read back from a finished run must load even when
        its data has moved): the trainer calls it before any work, and a job's validator calls it
        so a job that cannot start is refused at submit rather than failing in its worker.
        """
        if self.dataset not in SPECS:
            raise TrainingError(f"unknown dataset {self.dataset!r}; choose one of {', '.join(SPECS)}.")
        status = dataset_status(self.dataset, self.data_root)
        if not status["available"]:
            raise TrainingError(f"{self.dataset} is not available: {status['reason']}")
        if self.teacher is not None and self.role == "student" and self.method != "e2e":
            folder = Path(self.teacher)
            missing = [name for name in TEACHER_FILES if not (folder / name).is_file()]
            if missing:
                raise TrainingError(
                    f"teacher {self.teacher!r} is not a finished teacher run folder (it lacks {', '.join(missing)}). "
                    "Fix: give the run folder of a trained teacher, or leave teacher out to use the teacher store's."
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingError(f"unknown training setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        return cls(**data)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def run_id(self, design_id: str | None = None) -> str:
        """Hash of every setting but ``threads``, and of the design: what a checkpoint belongs to."""
        uses_kernel = "ntkd" in self.method.split("+")
        values = {
            k: v
            for k, v in self.to_dict().items()
            if k != "threads"
            and not (k in _IDENTITY_NEUTRAL and v == _IDENTITY_NEUTRAL[k])
            and not (k in _NTK_SETTINGS and not uses_kernel)
        }
        values["design_id"] = design_id
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]


def _interval(lower: float, upper: float, lower_in: bool, upper_in: bool) -> str:
    """An interval as a designer reads it: [0, 1), (0, ∞)."""
    high = "∞" if math.isinf(upper) else f"{upper:g}"
    return f"{'[' if lower_in else '('}{lower:g}, {high}{']' if upper_in else ')'}"


def _check_types_and_ranges(config: TrainConfig) -> None:
    """Each setting alone: its type, finiteness and range (TrainingError naming it, its value, what is allowed)."""
    for name, (least, most, nullable) in WHOLE_NUMBERS.items():
        value = getattr(config, name)
        if value is None and nullable:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= most:
            null = " or null" if nullable else ""
            raise TrainingError(f"{name} must be a whole number from {least} to {most}{null}; got {value!r}.")
    for name, (lower, upper, lower_in, upper_in, nullable) in REAL_NUMBERS.items():
        value = getattr(config, name)
        if value is None and nullable:
            continue
        fits = (
            not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
            and (lower <= value if lower_in else lower < value) and (value <= upper if upper_in else value < upper)
        )  # fmt: skip
        if not fits:
            unit = " metres" if name == "phase_pixel" else ""
            null = " or null" if nullable else ""
            raise TrainingError(f"{name} must be a finite number in {_interval(lower, upper, lower_in, upper_in)}"
                                f"{unit}{null}; got {value!r}.")  # fmt: skip
    for name, nullable in TEXTS.items():
        value = getattr(config, name)
        if value is None and nullable:
            continue
        if not isinstance(value, str) or (name in PATHS and not value.strip()):
            what = "a path (text)" if name in PATHS else "text"
            raise TrainingError(f"{name} must be {what}{' or null' if nullable else ''}; got {value!r}.")
    for name in FLAGS:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise TrainingError(f"{name} must be true or false; got {value!r}.")
