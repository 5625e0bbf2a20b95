"""From the NTK-regression estimate to the accuracy a trained student reaches, with an interval.

The raw estimate answers a question about the linearised (kernel-machine) student; on small or
easy data that machine beats the trained network, so the raw figure over-shoots data the studio
was not built with. The calibration maps it to trained accuracy, learned from (dataset, design)
pairs whose trained result is known (``bench/estimator_calibration.py``):

    g(trained) = g(raw) + (a − 1)·g(raw) + b·x + c,   a ≥ 0,

with g the identity or the logit, and x a subset of the standardised learning-curve slope, log
training-set size, log class count, log2 kernels and the kernel sign regime. A ridge penalty pulls
a → 1 and b → 0 (the raw estimate plus an offset). Which g, which inputs and how much ridge —
or no map at all (the raw figure, ridge None), which any map must beat — are chosen by leaving
one of the fitting datasets out at a time (so the validation that leaves a
dataset out of the whole fit tests the choice too). Because a ≥ 0 the calibrated figure never
falls when the raw one rises (the other inputs fixed).

The interval is conformal on datasets left out: every pair's residual is taken from the fit that
did not see its dataset, and the interval is the full fit's prediction plus the residuals'
α/2 and 1 − α/2 quantiles in g's space, each dataset weighing the same and the levels corrected
for the number of datasets (a new dataset is exchangeable with the fitted ones; its pairs are not
exchangeable with theirs). The
calibration covers classification; segmentation estimates stay raw (one segmentation dataset
cannot be left out of its own calibration) and say so.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import lsq_linear
from scipy.stats import spearmanr

from onn_core.paths import asset_path

SHIPPED = asset_path("estimator_calibration.json")
SCHEMA = "onn-estimator-calibration/3"
LEVEL = 0.8
INPUTS = ("slope", "log_train_images", "log_classes", "log2_kernels", "signed")
# The candidates the fit chooses among by leave-one-dataset-out error: spaces, input sets, ridges.
SPACES = ("accuracy", "logit")
INPUT_SETS = ((), ("signed",), ("log_train_images", "signed"), ("log_train_images", "log_classes", "signed"), INPUTS)
RIDGES = (0.3, 3.0, 30.0)
_CLIP = 1e-3  # accuracies are clipped to [0.001, 0.999] before the logit


def _forward(space: str, p: float | np.ndarray) -> float | np.ndarray:
    if space == "accuracy":
        return p
    p = np.clip(p, _CLIP, 1 - _CLIP)
    return np.log(p / (1 - p))


def _backward(space: str, z: float) -> float:
    value = z if space == "accuracy" else 1 / (1 + math.exp(-z))
    return float(min(1.0, max(0.0, value)))


@dataclass(frozen=True)
class Features:
    """What the calibration reads about one estimate.

    Attributes:
        raw: the NTK-regression estimate (fraction 0–1). slope: what the last doubling of the
        regression's training subset added (fraction; the learning curve's last step).
        n_train: the dataset's training images. classes: its classes. kernels: the student's
        optical kernels. signed: signed kernels (K⁺ − K⁻ pairs) rather than non-negative ones.
    """

    raw: float
    slope: float
    n_train: int
    classes: int
    kernels: int
    signed: bool

    def inputs(self, names: tuple[str, ...]) -> np.ndarray:
        values = {"slope": self.slope, "log_train_images": math.log10(max(self.n_train, 1)),
                  "log_classes": math.log(max(self.classes, 2)), "log2_kernels": math.log2(max(self.kernels, 1)),
                  "signed": float(self.signed)}  # fmt: skip
        return np.array([values[name] for name in names], dtype=float)

    @classmethod
    def of(cls, estimate: dict[str, Any], signed: bool, classes: int) -> Features:
        """From an estimate's dict (``Estimate.to_dict()`` or a sweep row's ``result``)."""
        curve = estimate.get("learning_curve") or []
        slope = float(curve[-1][1] - curve[-2][1]) if len(curve) >= 2 else 0.0
        raw = estimate["accuracy"] if estimate.get("raw_accuracy") is None else estimate["raw_accuracy"]
        return cls(raw=float(raw), slope=slope, n_train=int(estimate.get("full_train_size") or 0),
                   classes=int(classes), kernels=int(estimate["kernels"]), signed=bool(signed))  # fmt: skip


@dataclass(frozen=True)
class Pair:
    """One (dataset, design) whose trained accuracy is known: the calibration's training unit."""

    dataset: str
    features: Features
    trained: float

    @classmethod
    def from_benchmark(cls, pair: dict[str, Any]) -> Pair:
        features = Features.of(pair["estimate"], pair["design"].get("signed_kernels", True), pair["classes"])
        return cls(dataset=pair["dataset"], features=features, trained=float(np.mean(pair["trained"])))


@dataclass(frozen=True)
class Calibrated:
    accuracy: float
    low: float
    high: float


@dataclass
class Calibration:
    """A fitted calibration: a linear map in ``space`` plus conformal residual quantiles."""

    space: str  # "accuracy" or "logit": where the map is linear and the residuals are taken
    inputs: list[str]  # the inputs besides the raw estimate
    slope: float  # a, the raw estimate's coefficient (≥ 0)
    coefficients: list[float]  # per input, on standardised inputs
    intercept: float
    centre: list[float]
    scale: list[float]
    input_low: list[float]  # the inputs' range over the fitting pairs: a query is clamped to it
    input_high: list[float]
    ridge: float | None  # None: the identity (the raw figure; nothing beat it)
    level: float
    residual_low: float  # offsets of the interval's ends, in ``space``
    residual_high: float
    pairs: int
    datasets: list[str]
    selection_mae_points: float = 0.0  # the chosen candidate's leave-one-dataset-out error
    validation: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    def transformed(self, features: Features) -> float:
        """The prediction in ``space``."""
        raw = float(_forward(self.space, features.raw))
        # A linear map is not extrapolated past its data (Fashion-MNIST's 54 000 images against
        # pairs of at most 9 000): each input is clamped to the range it was fitted on.
        inputs = np.clip(features.inputs(tuple(self.inputs)), self.input_low, self.input_high)
        standardised = (inputs - np.array(self.centre)) / np.array(self.scale)
        return float(self.slope * raw + np.dot(self.coefficients, standardised) + self.intercept)

    def predict(self, features: Features) -> Calibrated:
        centre = self.transformed(features)
        return Calibrated(_backward(self.space, centre), _backward(self.space, centre + self.residual_low),
                          _backward(self.space, centre + self.residual_high))  # fmt: skip

    def interval(self, accuracy: float, spread: float = 0.0) -> tuple[float, float]:
        """The conformal interval around an already calibrated ``accuracy`` (the surrogate's
        answer), widened by ``spread`` (fraction) on either side."""
        z = float(_forward(self.space, accuracy))
        low, high = _backward(self.space, z + self.residual_low), _backward(self.space, z + self.residual_high)
        return max(0.0, low - spread), min(1.0, high + spread)

    def summary_line(self) -> str:
        """How it was validated, in one line (the Estimate page and ``estimate --json``)."""
        v = self.validation
        if not v:
            return "calibrated on trained students; not yet validated on data left out"
        level, coverage = round(100 * self.level), round(100 * v["coverage"])
        return (f"within ±{v['loo_mae_points']:.1f} points (mean) on {v['datasets']} datasets it was not fitted "
                f"on; the {level} % interval held for {coverage} % of them")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Calibration:
        if values.get("schema") != SCHEMA:
            raise ValueError(f"not an {SCHEMA} calibration")
        calibration = cls(**values)
        if calibration.space not in SPACES or not set(calibration.inputs) <= set(INPUTS):
            raise ValueError(f"unknown space {calibration.space!r} or inputs {calibration.inputs}")
        return calibration


# ---------------------------------------------------------------------------- fitting
def _bare(pairs: list[Pair], space: str, inputs: tuple[str, ...], ridge: float | None) -> Calibration:
    """Least squares in ``space`` with a ≥ 0 and the ridge pulling (a − 1) and b to zero
    (``ridge`` None: the identity, a = 1, b = c = 0)."""
    if ridge is None:
        return Calibration(space=space, inputs=list(inputs), slope=1.0, coefficients=[0.0] * len(inputs),
                           intercept=0.0, centre=[0.0] * len(inputs), scale=[1.0] * len(inputs),
                           input_low=[-math.inf] * len(inputs), input_high=[math.inf] * len(inputs), ridge=None,
                           level=LEVEL, residual_low=0.0, residual_high=0.0, pairs=len(pairs),
                           datasets=sorted({p.dataset for p in pairs}))  # fmt: skip
    raw = np.array([float(_forward(space, p.features.raw)) for p in pairs])
    target = np.array([float(_forward(space, p.trained)) for p in pairs])
    x = np.array([p.features.inputs(inputs) for p in pairs]).reshape(len(pairs), len(inputs))
    centre, scale = x.mean(axis=0), x.std(axis=0)
    scale[scale == 0] = 1.0  # an input constant over the pairs (one sign regime, say) gets no weight
    design = np.column_stack([raw, (x - centre) / scale, np.ones(len(pairs))])
    # Scaled by the target's spread so one ridge grid serves both spaces.
    penalty = math.sqrt(ridge) * max(float(np.std(target)), 1e-6) * np.eye(design.shape[1])[:-1]
    lower = np.full(design.shape[1], -np.inf)
    lower[0] = -1.0  # a = 1 + (a − 1) ≥ 0: monotone in the raw estimate
    solution = lsq_linear(np.vstack([design, penalty]), np.concatenate([target - raw, np.zeros(len(penalty))]),
                          bounds=(lower, np.full(design.shape[1], np.inf))).x  # fmt: skip
    return Calibration(space=space, inputs=list(inputs), slope=1.0 + float(solution[0]),
                       coefficients=solution[1:-1].tolist(), intercept=float(solution[-1]), centre=centre.tolist(),
                       scale=scale.tolist(), input_low=x.min(axis=0).tolist(), input_high=x.max(axis=0).tolist(),
                       ridge=ridge, level=LEVEL, residual_low=0.0, residual_high=0.0,
                       pairs=len(pairs), datasets=sorted({p.dataset for p in pairs}))  # fmt: skip


def _left_out(pairs: list[Pair], space: str, inputs: tuple[str, ...], ridge: float | None) -> list[tuple[Pair, float]]:
    """Each pair with its prediction (in ``space``) by the fit that left its dataset out."""
    predicted = []
    for dataset in sorted({p.dataset for p in pairs}):
        fitted = _bare([p for p in pairs if p.dataset != dataset], space, inputs, ridge)
        predicted += [(p, fitted.transformed(p.features)) for p in pairs if p.dataset == dataset]
    return predicted


def conformal_offsets(residuals: list[float], level: float, groups: list[str] | None = None) -> tuple[float, float]:
    """The (low, high) residual quantiles of a split-conformal interval at ``level``.

    Without ``groups``: ranks ⌊(n + 1)·α/2⌋ and ⌈(n + 1)·(1 − α/2)⌉ of the n residuals. With
    ``groups`` (each residual's dataset) the datasets, not the pairs, are the exchangeable units
    (a designer brings a new dataset): every dataset weighs the same, and the quantile levels
    get the finite-sample correction for G datasets, α/2·(G + 1)/G and (1 − α/2)·(G + 1)/G,
    clamped to the sample's extremes (too few residuals or datasets for the level).
    """
    if not residuals:
        raise ValueError("a conformal interval needs residuals")
    alpha = 1 - level
    if groups is None:
        ordered = sorted(residuals)
        n = len(ordered)
        # The 1e-9 keeps 1 − 0.8 = 0.19999… from moving a rank that is exactly whole.
        low_rank = max(1, math.floor((n + 1) * alpha / 2 + 1e-9))
        high_rank = min(n, math.ceil((n + 1) * (1 - alpha / 2) - 1e-9))
        return ordered[low_rank - 1], ordered[high_rank - 1]
    sizes = {group: groups.count(group) for group in set(groups)}
    count = len(sizes)
    order = np.argsort(residuals)
    values = np.asarray(residuals, dtype=float)[order]
    cumulative = np.cumsum([1 / (count * sizes[groups[i]]) for i in order])
    low_level = alpha / 2 * (count + 1) / count
    high_level = (1 - alpha / 2) * (count + 1) / count
    low = (
        values[0]
        if low_level <= 0
        else values[min(len(values) - 1, int(np.searchsorted(cumulative, low_level - 1e-12)))]
    )
    high = values[-1] if high_level >= 1 else values[int(np.searchsorted(cumulative, high_level - 1e-12))]
    return float(low), float(high)


def fit(
    pairs: list[Pair],
    level: float = LEVEL,
    spaces: tuple[str, ...] = SPACES,
    input_sets: tuple[tuple[str, ...], ...] = INPUT_SETS,
    ridges: tuple[float, ...] = RIDGES,
) -> Calibration:
    """Fit on ``pairs`` (≥ 2 datasets): space, inputs and ridge by leave-one-dataset-out error
    (mean absolute, accuracy points), then the interval from the same left-out residuals."""
    if len({p.dataset for p in pairs}) < 2:
        raise ValueError("the calibration needs pairs from at least two datasets (one is left out at a time)")

    def error(candidate: tuple[str, tuple[str, ...], float]) -> float:
        space = candidate[0]
        return float(np.mean([abs(_backward(space, z) - p.trained) for p, z in _left_out(pairs, *candidate)]))

    candidates = [*itertools.product(spaces, input_sets, ridges), ("accuracy", (), None)]
    errors = {candidate: error(candidate) for candidate in candidates}
    space, inputs, ridge = min(errors, key=errors.get)
    left_out = _left_out(pairs, space, inputs, ridge)
    residuals = [float(_forward(space, p.trained)) - z for p, z in left_out]
    low, high = conformal_offsets(residuals, level, [p.dataset for p, _ in left_out])
    return replace(_bare(pairs, space, inputs, ridge), level=level, residual_low=low, residual_high=high,
                   selection_mae_points=100 * errors[(space, inputs, ridge)])  # fmt: skip


def loo_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """MAE (points), interval coverage and within-dataset Spearman of left-out predictions."""
    datasets = sorted({r["dataset"] for r in rows})
    spearman = {}
    for dataset in datasets:
        mine = [r for r in rows if r["dataset"] == dataset]
        rho = spearmanr([r["calibrated"] for r in mine], [r["trained_mean"] for r in mine]).statistic
        spearman[dataset] = None if rho is None or math.isnan(rho) else float(rho)
    per_dataset = {
        d: 100 * float(np.mean([abs(r["calibrated"] - r["trained_mean"]) for r in rows if r["dataset"] == d]))
        for d in datasets
    }
    return {
        "datasets": len(datasets),
        "pairs": len(rows),
        "loo_mae_points": 100 * float(np.mean([abs(r["calibrated"] - r["trained_mean"]) for r in rows])),
        "loo_mae_points_per_dataset": per_dataset,
        "coverage": float(np.mean([r["low"] <= r["trained_mean"] <= r["high"] for r in rows])),
        "spearman": spearman,
        "bias_points": 100 * float(np.mean([r["calibrated"] - r["trained_mean"] for r in rows])),
    }


# ---------------------------------------------------------------------------- the studio's
@functools.lru_cache(maxsize=1)
def shipped() -> Calibration | None:
    """The calibration the studio ships (None when the file is absent or not this schema)."""
    try:
        return Calibration.from_dict(json.loads(SHIPPED.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None


def uncalibrated_reason(task: str) -> str:
    """Why an answer for ``task`` is the raw figure."""
    if task != "classification":
        return ("segmentation estimates are not calibrated (one segmentation dataset cannot be left out of its own "
                "calibration): the raw NTK-regression figure")  # fmt: skip
    return f"no calibration in {SHIPPED.name}: the raw NTK-regression figure"


def calibrate_result(result: dict[str, Any], task: str, signed: bool, classes: int) -> dict[str, Any]:
    """An estimate's dict with ``accuracy``/``low``/``high`` calibrated and the raw figures kept
    as ``raw_accuracy``/``raw_low``/``raw_high``; ``calibrated`` says whether it was, and
    ``calibration`` how it was validated (or why not)."""
    # A sweep row may carry the accuracy alone; its range is then the point.
    raw = {name: result.get(name, result["accuracy"]) if result.get(f"raw_{name}") is None else result[f"raw_{name}"]
           for name in ("accuracy", "low", "high")}  # fmt: skip
    raw = {f"raw_{name}": value for name, value in raw.items()}
    calibration = shipped()
    if task != "classification" or calibration is None:
        why = uncalibrated_reason(task)
        return {**result, **raw, "accuracy": raw["raw_accuracy"], "low": raw["raw_low"], "high": raw["raw_high"],
                "calibrated": False, "calibration": why}  # fmt: skip
    answer = calibration.predict(Features.of(result, signed, classes))
    return {**result, **raw, "accuracy": answer.accuracy, "low": answer.low, "high": answer.high,
            "calibrated": True, "calibration": calibration.summary_line()}  # fmt: skip
