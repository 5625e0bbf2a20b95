"""Accuracy before training: NTK regression of the student a design implies (the method's stage 1).

For a design and a dataset the estimator builds the student the design implies — the kernels its
layout fits, its taps, the spatial frequencies its aperture can pass (:func:`realisable_band`)
and its camera's noise — computes the student's empirical NTK at initialisation on a training
subset, and kernel-regresses the labels of held-out images:

    ŷ(X*) = Θ(X*, X) (Θ(X, X) + λI)⁻¹ Y,

with Y the centred one-hot labels (classification) or ±1 masks (segmentation), and λ, relative
to the mean diagonal of Θ(X, X), chosen on a validation subset. Repeated over a few random
initialisations. Nested random subsets (⅛ … all of the training subset) of the same kernel give
the learning curve, whose power-law fit is extrapolated to the dataset's full training set: that
is the estimate, because training uses every image. The spread combines the initialisations'
standard deviation with the test subset's binomial error.

The classification NTK is exact and cheap because of the student's structure: every fully
connected layer l contributes (A_l A_lᵀ + 1) ⊙ Σ_c G_lc G_lcᵀ (layer inputs A, back-propagated
signals G per class c), and the optical kernels' per-sample gradients come from one grouped
convolution per batch, so a 64-kernel student (1.6 M parameters) needs no n × P Jacobian. Sensor
noise enters as one seeded draw of additive capture noise per image, at the variance of the
trainer's camera model (shot and read noise, the design's ADC). Segmentation uses the exact
``torch.func`` NTK of the segmentation student (noise off) over 4 × 4 pooled logit maps.

The estimate is a linearised (lazy-training) view of the network: it ranks designs and bounds
what the frontend can express, and is validated against trained accuracy in
``bench/estimator_validation.py``.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import jacrev, vmap

from onn_core.data.registry import SPECS, DatasetSplits, load_for_design
from onn_core.design import Design
from onn_core.errors import DataFormatError, DesignError
from onn_core.models import FrontendOptions, SensorSettings, build_student, default_student
from onn_core.models.zoo import HybridClassifier, segmentation_groups
from onn_core.training.metrics import headline, segmentation_counts, segmentation_metrics
from onn_core.training.ntk import ntk_exact
from onn_core.training.trainer import check_design_channels

from .calibration import calibrate_result

# Per task, so a change to one task's method need not invalidate the other's sweeps.
ESTIMATOR_VERSIONS = {"classification": "ntk-regression/1", "segmentation": "ntk-regression/1"}
ESTIMATOR_VERSION = ESTIMATOR_VERSIONS["classification"]


def estimator_version(dataset: str) -> str:
    """The estimator version that applies to ``dataset`` (its task's)."""
    return ESTIMATOR_VERSIONS[SPECS[dataset].task] if dataset in SPECS else ESTIMATOR_VERSION


# λ relative to the mean diagonal of Θ(X, X); the validation subset picks one.
RIDGE_GRID = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
# Kernel count standing in for the infinite-kernel (NTK-regime) bound: the normalised kernel
# converges as 1/√K; bench/estimator_validation.py reports how far 128 is from 256.
BOUND_KERNELS = 128
# Beyond this many images per subset the n × n kernels outgrow a laptop's memory.
MAX_IMAGES = 20_000
# The learning curve is extrapolated at most this many times beyond the largest subset.
MAX_EXTRAPOLATION = 32
# torch's default generator is shared by threads: a sweep worker running points in threads
# must not interleave two initialisations.
_INIT_LOCK = threading.Lock()


@dataclass(frozen=True)
class EstimateSettings:
    """How large and how repeated one estimate is.

    Attributes:
        train_size, val_size, test_size: images in the regression's training subset, the subset
            that picks λ, and the subset it is scored on (drawn from the dataset's own splits).
        inits: random initialisations averaged. seed: first initialisation (and subset draw).
        split_seed: the dataset split (as in training). data_root: the user's copy, if any.
        band_limit: keep kernels within the aperture's OTF support. sensor_noise: model the camera.
        kernels: override the design's kernel count (None: what the layout fits).
        segmentation_pool: segmentation logit maps are pooled to this many pixels per side in
            the NTK (the full-resolution masks are still regressed and scored).
        segmentation_train_size: train_size for segmentation (its Jacobians are larger).
    """

    train_size: int = 3000
    val_size: int = 500
    test_size: int = 1000
    inits: int = 3
    seed: int = 0
    split_seed: int = 0
    data_root: str | None = None
    band_limit: bool = True
    sensor_noise: bool = True
    kernels: int | None = None
    segmentation_pool: int = 4
    segmentation_train_size: int = 400
    ridge_grid: tuple[float, ...] = RIDGE_GRID

    def __post_init__(self) -> None:
        for name in ("train_size", "val_size", "test_size", "inits", "segmentation_pool", "segmentation_train_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DesignError(name, value, "must be a whole number ≥ 1.")
        if self.train_size < 10:
            raise DesignError("train_size", self.train_size, "an NTK regression needs at least 10 training images.")
        for name, limit in (("train_size", MAX_IMAGES), ("val_size", MAX_IMAGES), ("test_size", MAX_IMAGES),
                            ("segmentation_train_size", MAX_IMAGES // 4), ("inits", 20)):  # fmt: skip
            if getattr(self, name) > limit:
                raise DesignError(name, getattr(self, name), f"is above {limit}: the kernel matrices would not fit "
                                  "in memory (or take hours).", f"use at most {limit}.")  # fmt: skip
        if self.kernels is not None and (isinstance(self.kernels, bool) or not isinstance(self.kernels, int)
                                         or not 1 <= self.kernels <= 1024):  # fmt: skip
            raise DesignError("kernels", self.kernels, "must be a whole number of kernels from 1 to 1024, or null.")
        if not self.ridge_grid or any(isinstance(r, bool) or not isinstance(r, int | float) or not (
                r > 0 and math.isfinite(r)) for r in self.ridge_grid):  # fmt: skip
            raise DesignError("ridge_grid", self.ridge_grid, "must list positive, finite ridge values.")
        for name in ("seed", "split_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**32:
                raise DesignError(name, value, "must be a whole number from 0 to 2³²−1.")
        if self.data_root is not None and (not isinstance(self.data_root, str) or not self.data_root):
            raise DesignError("data_root", self.data_root, "must be a folder path (text), or null.")
        for name in ("band_limit", "sensor_noise"):
            if not isinstance(getattr(self, name), bool):
                raise DesignError(name, getattr(self, name), "must be true or false.")


@dataclass
class Estimate:
    """One design's estimated accuracy (classification) or mIoU (segmentation), fractions 0–1.

    ``raw_accuracy`` is the regression's learning curve extrapolated to the dataset's full
    training set (training sees all of it); ``subset_accuracy`` what the regression measured on
    its subset; [raw_low, raw_high] runs from the subset score minus one standard deviation to the
    extrapolation plus one. ``accuracy`` [low, high] is what a trained student reaches: the raw
    figure calibrated with its conformal interval (``estimators.calibration``) when
    ``calibrated``, else the raw one; ``calibration`` says how it was validated, or why not.
    """

    accuracy: float
    low: float
    high: float
    metric: str
    subset_accuracy: float
    per_init: list[float]
    ridge: list[float]
    kernels: int
    dataset: str
    design_id: str
    band_limited: bool
    sizes: dict[str, int]
    seconds: float
    learning_curve: list[list[float]] = field(default_factory=list)
    full_train_size: int = 0
    version: str = ESTIMATOR_VERSION
    settings: dict[str, Any] = field(default_factory=dict)
    raw_accuracy: float | None = None
    raw_low: float | None = None
    raw_high: float | None = None
    calibrated: bool = False
    calibration: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------------------- kernel regression
def ridge_regression_select(
    train_kernel: torch.Tensor,
    targets: torch.Tensor,
    val_kernel: torch.Tensor,
    test_kernel: torch.Tensor,
    score_val,
    score_test,
    grid: tuple[float, ...] = RIDGE_GRID,
) -> tuple[float, float, float]:
    """Kernel ridge regression with λ picked on validation: (relative λ, val score, test score).

    ``train_kernel`` Θ(X, X) (n × n), ``val_kernel`` / ``test_kernel`` Θ(X*, X); ``targets``
    (n × outputs). One eigendecomposition serves every λ; λ = grid value × mean diagonal.
    ``score_val`` / ``score_test`` map predictions to a score (higher is better).
    """
    train_kernel = train_kernel.double()
    scale = float(train_kernel.diagonal().mean().clamp_min(1e-300))
    eigenvalues, eigenvectors = torch.linalg.eigh(train_kernel / scale)
    rotated = eigenvectors.T @ targets.double()
    best = (-math.inf, None, None)
    for relative in grid:
        weights = eigenvectors @ (rotated / (eigenvalues.clamp_min(0) + relative)[:, None]) / scale
        score = score_val(val_kernel.double() @ weights)
        if score > best[0]:
            best = (score, relative, weights)
    val_score, relative, weights = best
    return relative, val_score, score_test(test_kernel.double() @ weights)


# ---------------------------------------------------------------------------- classification NTK
@dataclass
class _Features:
    """Per-image pieces of the structured NTK: optical-kernel Jacobian, and per FC layer its
    inputs (with a 1 for the bias) and back-propagated signals per class."""

    optical: torch.Tensor  # (n, classes · K·C·t²)
    inputs: list[torch.Tensor]  # per FC layer (n, fan_in + 1)
    signals: list[torch.Tensor]  # per FC layer (n, classes, fan_out)


def capture_noise_std(design: Design, mean_intensity: float, sensor: SensorSettings) -> float:
    """RMS noise of one capture as a fraction of full scale: shot + read + ADC quantisation.

    A unit-sum PSF passes the scene's mean intensity, so a capture holds ≈ mean_intensity ×
    full_well electrons; the variance (electrons²) is that signal plus σ_read², and the ADC adds
    a uniform Δ²/12 with Δ = 1/(2^bits − 1).
    """
    signal = mean_intensity * sensor.full_well
    variance = (signal + sensor.read_noise**2) / sensor.full_well**2
    if sensor.bit_depth is not None:
        variance += 1.0 / (12 * (2**sensor.bit_depth - 1) ** 2)
    return math.sqrt(variance)


def _feature_noise(kernels: torch.Tensor, capture_std: float) -> torch.Tensor:
    """Per-kernel noise RMS in feature units: K⁺ and K⁻ are read separately (each through a
    unit-sum PSF) and scaled back by their sums g±, so σ² = (g⁺² + g⁻²)·σ_capture²."""
    positive = F.relu(kernels).sum(dim=(1, 2, 3))
    negative = F.relu(-kernels).sum(dim=(1, 2, 3))
    return torch.sqrt(positive**2 + negative**2) * capture_std


def _classifier_features(
    model: HybridClassifier, images: torch.Tensor, noise_std: torch.Tensor | None, generator: torch.Generator,
    chunk: int = 256,
) -> _Features:  # fmt: skip
    frontend = model.frontend
    kernels = frontend.signed_kernels().detach()  # (K, C, t, t), band-limited when the frontend is
    count, channels, taps = kernels.shape[:3]
    # d kernel / d weight, one (C·t²)² block per kernel (kernels depend only on their own
    # weights): the identity for free signed kernels, P with a band limit, 2W or 2(P½W)P½ unsigned.
    weight = frontend.weight.detach()
    block = vmap(jacrev(lambda w: frontend.kernel_map(w.unsqueeze(0))[0]))(weight)
    block = block.reshape(count, channels * taps * taps, channels * taps * taps)
    linears = [layer for layer in model.backend if isinstance(layer, nn.Linear)]
    optical, inputs, signals = [], [[] for _ in linears], [[] for _ in linears]
    for start in range(0, len(images), chunk):
        batch = images[start : start + chunk]
        size = len(batch)
        # One copy of the kernels per image (grouped convolution) gives per-image gradients.
        copies = kernels.unsqueeze(0).repeat(size, 1, 1, 1, 1).requires_grad_(True)
        weight = copies.flip(-2, -1).reshape(size * count, channels, taps, taps)
        height, width = batch.shape[-2:]
        features = F.conv2d(batch.reshape(1, size * channels, height, width), weight, padding=taps // 2, groups=size)
        features = features.view(size, count, height, width)
        if noise_std is not None:
            noise = torch.randn(features.shape, generator=generator) * noise_std.view(1, -1, 1, 1)
            features = features + noise
        hidden = F.relu(features)
        hidden = F.max_pool2d(hidden, model.pool) if model.pool > 1 else hidden
        hidden = hidden.flatten(1)
        outputs_of_linears = []
        for layer in model.backend:
            if isinstance(layer, nn.Linear):
                inputs[len(outputs_of_linears)].append(F.pad(hidden.detach(), (0, 1), value=1.0))
                hidden = layer(hidden)
                outputs_of_linears.append(hidden)
            else:
                hidden = layer(hidden)
        classes = hidden.shape[1]
        per_class = []
        layer_signals = [[] for _ in linears]
        for c in range(classes):
            grads = torch.autograd.grad(hidden[:, c].sum(), [copies, *outputs_of_linears], retain_graph=c < classes - 1)
            grad_kernels = grads[0].reshape(size, count, channels * taps * taps)
            per_class.append(torch.einsum("kij,nki->nkj", block, grad_kernels).flatten(1))  # chain rule to W
            for index, grad in enumerate(grads[1:]):
                layer_signals[index].append(grad)
        optical.append(torch.stack(per_class, dim=1).flatten(1))
        for index, grads in enumerate(layer_signals):
            signals[index].append(torch.stack(grads, dim=1))
    return _Features(
        torch.cat(optical), [torch.cat(blocks) for blocks in inputs], [torch.cat(blocks) for blocks in signals]
    )


def structured_ntk(left: _Features, right: _Features) -> torch.Tensor:
    """Θ(left, right) from per-image pieces, float64, classes contracted."""
    kernel = left.optical.double() @ right.optical.double().T
    for a_left, a_right, g_left, g_right in zip(left.inputs, right.inputs, left.signals, right.signals, strict=True):
        signal = torch.einsum("ncj,mcj->nm", g_left.double(), g_right.double())
        kernel += (a_left.double() @ a_right.double().T) * signal
    return kernel


def classifier_ntk(
    model: HybridClassifier, left: torch.Tensor, right: torch.Tensor | None = None, *,
    noise_std: torch.Tensor | None = None, seed: int = 0,
) -> torch.Tensor:  # fmt: skip
    """Exact empirical NTK Θ(left, right) of a hybrid classifier over all its parameters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        features_left = _classifier_features(model, left, noise_std, generator)
        features_right = features_left if right is None else _classifier_features(model, right, noise_std, generator)
    return structured_ntk(features_left, features_right)


# ---------------------------------------------------------------------------- the estimate
def _subset(split, count: int, generator: np.random.Generator):
    # Random order (not sorted): every prefix is itself a random subset (the learning curve).
    index = torch.from_numpy(generator.permutation(len(split))[: min(count, len(split))])
    return split.images[index], split.targets[index]


def _check_design_fits(design: Design, data: DatasetSplits) -> None:
    channels, height, width = data.image_shape
    check_design_channels(design, data.spec.name, channels)
    if (design.input_height, design.input_width) != (height, width):
        raise DesignError(
            "input_height", (design.input_height, design.input_width),
            f"the design's input is {design.input_height}×{design.input_width} pixels but the images given are "
            f"{height}×{width}.", f"set the input size to {height}×{width} or load the data at the design's size.",
        )  # fmt: skip


def estimate(
    design: Design,
    dataset: str,
    settings: EstimateSettings | None = None,
    *,
    data: DatasetSplits | None = None,
    threads: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    calibrate: bool = True,
) -> Estimate:
    """NTK-regression estimate of the accuracy (mIoU) the design's student can reach on ``dataset``.

    ``progress(done, total)`` is called after each initialisation (a job's progress bar).
    ``calibrate``: map the raw figure to trained accuracy (classification; see ``Estimate``).
    """
    settings = settings or EstimateSettings()
    started = time.perf_counter()
    if dataset not in SPECS:
        raise DataFormatError(dataset, f"unknown dataset; choose one of {', '.join(SPECS)}.")
    if data is None:
        data = load_for_design(dataset, design, root=settings.data_root, seed=settings.split_seed)
    _check_design_fits(design, data)
    task = data.spec.task
    kernels = settings.kernels or design.kernel_count
    if task == "segmentation":
        segmentation_groups(kernels)  # raises a designer-readable error when too few fit
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        scores, ridges, curves, band_limited, sizes = [], [], [], False, {}
        for init in range(settings.inits):
            seed = settings.seed + init
            rng = np.random.default_rng(seed)
            train_size = settings.train_size if task == "classification" else settings.segmentation_train_size
            train_x, train_y = _subset(data.train, train_size, rng)
            val_x, val_y = _subset(data.val, settings.val_size, rng)
            test_x, test_y = _subset(data.test, settings.test_size, rng)
            sizes = {"train": len(train_x), "val": len(val_x), "test": len(test_x)}
            options = FrontendOptions(kind="ideal", band_limit=settings.band_limit, seed=seed)
            with _INIT_LOCK, torch.random.fork_rng():
                torch.manual_seed(seed)
                student = default_student(task, design.input_channels)
                model = build_student(student, design, len(data.spec.classes), options, kernels=kernels)
            band_limited = any(getattr(m, "band_limit", None) is not None for m in model.modules())
            with torch.no_grad():
                if task == "classification":
                    problem = _classification_problem(model, design, data, settings, seed, train_x, train_y, val_x,
                                                      val_y, test_x, test_y)  # fmt: skip
                else:
                    problem = _segmentation_problem(model, settings, train_x, train_y, val_x, val_y, test_x, test_y)
            # Nested random subsets (⅛, ¼, ½, all) of one kernel give the learning curve for free.
            curve_sizes = [max(10, len(train_x) // 2**k) for k in (3, 2, 1, 0)]
            curve = [problem.solve(size, settings.ridge_grid)[1] for size in curve_sizes[:-1]]
            ridge, score = problem.solve(len(train_x), settings.ridge_grid)
            curves.append([*curve, score])
            ridges.append(ridge)
            scores.append(score)
            if progress:
                progress(init + 1, settings.inits)
    finally:
        torch.set_num_threads(previous_threads)
    mean = float(np.mean(scores))
    full_train_size = len(data.train)
    target = min(full_train_size, MAX_EXTRAPOLATION * curve_sizes[-1])
    mean_curve = np.mean(curves, axis=0).tolist()
    full_data = extrapolate_learning_curve(curve_sizes, mean_curve, target)
    # Each initialisation's curve is also extrapolated on its own, so the upper end of the range
    # includes how much the extrapolation itself moves between initialisations.
    extrapolated = [extrapolate_learning_curve(curve_sizes, curve, target) for curve in curves]
    binomial = math.sqrt(max(mean * (1 - mean), 1e-12) / max(1, sizes["test"])) if task == "classification" else 0.0

    def spread(values: list[float]) -> float:
        between = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return math.sqrt(between**2 + binomial**2)

    result = Estimate(
        accuracy=full_data,
        low=max(0.0, mean - spread(scores)),
        high=min(1.0, full_data + spread(extrapolated)),
        metric=headline(task),
        subset_accuracy=mean,
        per_init=[float(s) for s in scores],
        ridge=[float(r) for r in ridges],
        kernels=sum(segmentation_groups(kernels)) if task == "segmentation" else kernels,
        dataset=dataset,
        design_id=design.design_id,
        band_limited=band_limited,
        sizes=sizes,
        seconds=time.perf_counter() - started,
        learning_curve=[[float(n), float(v)] for n, v in zip(curve_sizes, mean_curve, strict=True)],
        full_train_size=full_train_size,
        version=ESTIMATOR_VERSIONS[task],
        settings={k: v for k, v in asdict(settings).items() if k != "ridge_grid"},
    )
    if not calibrate:
        return replace(result, raw_accuracy=result.accuracy, raw_low=result.low, raw_high=result.high,
                       calibration="raw NTK-regression figure (calibration off)")  # fmt: skip
    return Estimate(**calibrate_result(result.to_dict(), task, design.signed_kernels, len(data.spec.classes)))


@dataclass
class _Problem:
    """A kernel regression: Θ(train, train), Θ(val, train), Θ(test, train), targets, scorers."""

    train_kernel: torch.Tensor
    val_kernel: torch.Tensor
    test_kernel: torch.Tensor
    targets: torch.Tensor
    score_val: Any
    score_test: Any

    def solve(self, size: int, grid: tuple[float, ...]) -> tuple[float, float]:
        """(relative λ, test score) using the first ``size`` training images (a random subset)."""
        relative, _, test = ridge_regression_select(
            self.train_kernel[:size, :size], self.targets[:size], self.val_kernel[:, :size],
            self.test_kernel[:, :size], self.score_val, self.score_test, grid,
        )  # fmt: skip
        return relative, test


def _classification_problem(model, design, data, settings, seed, train_x, train_y, val_x, val_y, test_x, test_y):
    classes = len(data.spec.classes)
    noise_std = None
    if settings.sensor_noise:
        sensor = SensorSettings(bit_depth=design.sensor_bit_depth)
        capture = capture_noise_std(design, float(train_x.mean()), sensor)
        noise_std = _feature_noise(model.frontend.signed_kernels().detach(), capture)
    everything = torch.cat([train_x, val_x, test_x])
    generator = torch.Generator().manual_seed(seed)
    with torch.enable_grad():
        features = _classifier_features(model, everything, noise_std, generator)
    n_train, n_val = len(train_x), len(val_x)

    def rows(start: int, stop: int) -> _Features:
        return _Features(
            features.optical[start:stop],
            [a[start:stop] for a in features.inputs],
            [g[start:stop] for g in features.signals],
        )

    def accuracy(labels):
        return lambda predictions: float((predictions.argmax(dim=1) == labels).double().mean())

    train = rows(0, n_train)
    return _Problem(
        structured_ntk(train, train),
        structured_ntk(rows(n_train, n_train + n_val), train),
        structured_ntk(rows(n_train + n_val, len(everything)), train),
        F.one_hot(train_y, classes).double() - 1.0 / classes,
        accuracy(val_y),
        accuracy(test_y),
    )


def _segmentation_problem(model: nn.Module, settings, train_x, train_y, val_x, val_y, test_x, test_y):
    everything = torch.cat([train_x, val_x, test_x])
    model.requires_grad_(False)  # the kernel is over all parameters; no graph back to them is kept
    kernel = ntk_exact(
        model, everything, output_pool=settings.segmentation_pool, image_chunk=16, max_elements=2**28
    ).double()
    n_train, n_val = len(train_x), len(val_x)

    def miou(masks):
        def score(predictions: torch.Tensor) -> float:
            counts = segmentation_counts(predictions.view_as(masks), masks)
            return segmentation_metrics(*(float(v) for v in counts))["miou"]

        return score

    return _Problem(
        kernel[:n_train, :n_train],
        kernel[n_train : n_train + n_val, :n_train],
        kernel[n_train + n_val :, :n_train],
        (2 * train_y - 1).flatten(1).double(),
        miou(val_y),
        miou(test_y),
    )


def extrapolate_learning_curve(sizes: list[float], scores: list[float], target: float) -> float:
    """Score at ``target`` training images from a power law with a floor fitted to (size, score).

    The error e(n) = c + a·n^(−b) (c ≥ 0, 0.05 ≤ b ≤ 1: kernel-regression learning curves decay
    as a power of n towards an irreducible error) is fitted by least squares over a grid of b;
    without a decreasing trend the last measured score is returned unchanged.
    """
    n = np.asarray(sizes, dtype=float)
    errors = 1.0 - np.asarray(scores, dtype=float)
    if len(n) < 3 or target <= n[-1] or not errors[0] > errors[-1]:
        return float(scores[-1])
    best = (math.inf, float(scores[-1]))
    for exponent in np.linspace(0.05, 1.0, 96):
        basis = np.stack([np.ones_like(n), n**-exponent], axis=1)
        (floor, amplitude), *_ = np.linalg.lstsq(basis, errors, rcond=None)
        if floor < 0:
            floor, amplitude = 0.0, float(errors @ n**-exponent / (n**-exponent @ n**-exponent))
        if amplitude <= 0:
            continue
        residual = float(np.sum((floor + amplitude * n**-exponent - errors) ** 2))
        if residual < best[0]:
            best = (residual, 1.0 - (floor + amplitude * target**-exponent))
    return float(min(1.0, max(scores[-1], best[1])))


def infinite_kernel_bound(
    design: Design, dataset: str, settings: EstimateSettings | None = None, **options: Any
) -> Estimate:
    """The method's "∞" row: the estimate with many kernels (``BOUND_KERNELS``), one initialisation.

    With K → ∞ the student's NTK (normalised) converges to its expectation over the kernels;
    BOUND_KERNELS is a Monte-Carlo stand-in for that limit, with everything else from the design.
    """
    settings = settings or EstimateSettings()
    if dataset in SPECS and SPECS[dataset].task == "segmentation":
        raise DesignError(
            "dataset", dataset,
            "the segmentation student's architecture fixes its kernel groups (8/16/32), so it has no many-kernel "
            "limit to estimate.", "use a classification dataset.",
        )  # fmt: skip
    # A limit of the kernel machine, not a trained student: the raw figure (and 128 kernels lie
    # beyond the designs the calibration was fitted on).
    return estimate(design, dataset, replace(settings, kernels=BOUND_KERNELS, inits=1), calibrate=False, **options)
