"""A fast surrogate of the estimator: design features → estimated accuracy, in milliseconds.

Fitted per dataset on sweep results (the JSON-lines files :mod:`estimators.sweep` writes): the
ones shipped in ``assets/sweeps/`` for the embedded datasets, plus any the user adds. Two
models compete by 5-fold cross-validation and the lower mean absolute error wins (both errors
are kept with the model): a Gaussian process (Matérn 5/2 with a length scale per feature, plus
a white-noise term; its predictive standard deviation is the uncertainty) and gradient-boosted
trees (their uncertainty is the cross-validated RMSE). The GP's hyperparameters are cached in
``$ONN_STUDIO_HOME/cache/surrogate/`` as JSON, so later processes refit without optimising.

Features are what the estimator's student depends on, in physical terms: log₂ of the kernel
count, taps per kernel, the band ratio (the aperture's incoherent cutoff k/(λz) over the taps'
Nyquist frequency, capped at 1) and the ADC bit depth. A query with any feature outside the
swept range, at an input size the sweeps did not use, or farther from every swept design than
twice the sweep's typical spacing, is flagged as an extrapolation.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from onn_core.data.registry import SPECS
from onn_core.data.user import datasets_home
from onn_core.design import Design
from onn_core.errors import DesignError, SurrogateUnavailable, SweepError
from onn_core.optics.psf import incoherent_cutoff
from onn_core.paths import asset_path, studio_home

from .calibration import calibrate_result, uncalibrated_reason
from .calibration import shipped as shipped_calibration
from .ntk_regression import estimator_version
from .sweep import read_results

ASSET_SWEEPS = asset_path("sweeps")
FEATURES = ("log2_kernels", "kernel_taps", "band_ratio", "sensor_bit_depth")
SEGMENTATION_TAPS = 3  # the segmentation student's kernels are 3 × 3 whatever the design says


def design_features(design: Design, task: str = "classification") -> dict[str, float]:
    """The surrogate's inputs for a design (dimensionless)."""
    taps = SEGMENTATION_TAPS if task == "segmentation" else design.kernel_taps
    wavelength = max(design.wavelengths)
    cutoff = incoherent_cutoff(design.kernel_size, wavelength, design.sensor_distance)
    nyquist = 1 / (2 * design.tap_pitch)
    return {
        "log2_kernels": math.log2(max(1, design.kernel_count)),
        "kernel_taps": float(taps),
        "band_ratio": min(1.0, cutoff / nyquist),
        "sensor_bit_depth": float(design.sensor_bit_depth),
    }


@dataclass
class SurrogateAnswer:
    accuracy: float
    low: float
    high: float
    extrapolation: bool
    outside: list[str]
    seconds: float
    method: str = "surrogate"
    calibrated: bool = False
    calibration: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Surrogate:
    """A fitted surrogate for one dataset."""

    dataset: str
    kind: str  # "gp" | "gbm"
    cv_mae: dict[str, float]
    n_points: int
    ranges: dict[str, tuple[float, float]]
    model: Any = field(repr=False)
    scaler: tuple[np.ndarray, np.ndarray] = field(repr=False)
    residual_rmse: float = 0.0
    sources: list[str] = field(default_factory=list)
    input_sizes: list[tuple[int, int]] = field(default_factory=list)
    input_channels: list[int] = field(default_factory=list)
    swept: np.ndarray | None = field(default=None, repr=False)  # standardised features of the sweep
    gap: float = math.inf  # nearest-swept-design distance beyond which a query is "far"

    def _matrix(self, rows: list[dict[str, float]]) -> np.ndarray:
        raw = np.array([[r[name] for name in FEATURES] for r in rows], dtype=float)
        return (raw - self.scaler[0]) / self.scaler[1]

    def predict(self, design: Design) -> SurrogateAnswer:
        started = time.perf_counter()
        features = design_features(design, SPECS[self.dataset].task)
        outside = [
            name for name, (low, high) in self.ranges.items()
            if not low - 1e-9 * max(1, abs(low)) <= features[name] <= high + 1e-9 * max(1, abs(high))
        ]  # fmt: skip
        if (design.input_height, design.input_width) not in self.input_sizes:
            outside.append("input_size")  # the sweeps saw other image sizes
        if self.input_channels and design.input_channels not in self.input_channels:
            outside.append("input_channels")  # the sweeps saw the images in other colours
        x = self._matrix([features])
        if self.swept is not None and float(np.min(np.linalg.norm(self.swept - x, axis=1))) > self.gap:
            outside.append("far_from_swept_designs")  # inside the ranges, but in a gap between them
        if self.kind == "gp":
            mean, std = self.model.predict(x, return_std=True)
            mean, std = float(mean[0]), float(std[0])
        else:
            mean, std = float(self.model.predict(x)[0]), self.residual_rmse
        mean = min(1.0, max(0.0, mean))
        low, high = max(0.0, mean - std), min(1.0, mean + std)
        calibration = shipped_calibration() if SPECS[self.dataset].task == "classification" else None
        if calibration is not None:  # fitted on calibrated figures: the conformal interval, widened by its own spread
            low, high = calibration.interval(mean, std)
        return SurrogateAnswer(
            accuracy=mean, low=low, high=high, extrapolation=bool(outside), outside=outside,
            seconds=time.perf_counter() - started, calibrated=calibration is not None,
            calibration=calibration.summary_line() if calibration else uncalibrated_reason(SPECS[self.dataset].task),
        )  # fmt: skip

    def describe(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "kind": self.kind, "cv_mae": self.cv_mae, "n_points": self.n_points,
                "ranges": self.ranges, "sources": self.sources, "input_sizes": self.input_sizes,
                "input_channels": self.input_channels}  # fmt: skip


def training_rows(
    dataset: str, paths: list[Path], input_shapes: set | None = None
) -> list[tuple[dict[str, float], float]]:
    """(features, estimated accuracy) from sweep results for ``dataset``; seeds of one design
    averaged. The accuracy is the calibrated one (the raw figure the sweep recorded, calibrated
    with the studio's current calibration, so older sweeps and newer ones agree). The designs'
    inputs (channels, height, width) are added to ``input_shapes`` when given."""
    task = SPECS[dataset].task
    by_design: dict[str, list[float]] = {}
    features: dict[str, dict[str, float]] = {}
    for path in paths:
        for row in read_results(path):
            if row.get("dataset") != dataset or "result" not in row:
                continue
            if row.get("estimator_version") != estimator_version(dataset):
                continue  # another estimator's numbers are not comparable
            settings = row.get("settings", {})
            if settings.get("kernels") is not None or settings.get("band_limit") is False:
                continue  # not the student the design implies (a bound, an ablation)
            try:
                design = Design.from_dict(row["design"])
            except DesignError:
                continue  # written by a version whose designs this one no longer builds
            key = design.design_id
            result = {"kernels": design.kernel_count, **row["result"]}
            calibrated = calibrate_result(result, task, design.signed_kernels, len(SPECS[dataset].classes))
            by_design.setdefault(key, []).append(float(calibrated["accuracy"]))
            features[key] = design_features(design, task)
            if input_shapes is not None:
                input_shapes.add(design.input_shape)
    return [(features[k], float(np.mean(v))) for k, v in by_design.items()]


def _gp(length_scales: int):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
        length_scale=np.ones(length_scales), length_scale_bounds=(1e-2, 1e3), nu=2.5
    ) + WhiteKernel(1e-4, (1e-8, 1e-1))
    return GaussianProcessRegressor(kernel=kernel, normalize_y=True, n_restarts_optimizer=2, random_state=0)


def _gbm():
    from sklearn.ensemble import GradientBoostingRegressor

    return GradientBoostingRegressor(n_estimators=300, max_depth=3, learning_rate=0.05, subsample=0.8, random_state=0)


def fit_surrogate(dataset: str, paths: list[Path] | None = None, *, cache: bool = True) -> Surrogate:
    """Fit (or refit from cached hyperparameters) the surrogate of ``dataset``."""
    from sklearn.exceptions import ConvergenceWarning

    if dataset not in SPECS:
        raise SurrogateUnavailable(f"{dataset}: unknown dataset; choose one of {', '.join(SPECS)}.")
    paths = sorted(ASSET_SWEEPS.glob("*.jsonl")) if paths is None else [Path(p) for p in paths]
    input_shapes: set = set()
    rows = training_rows(dataset, paths, input_shapes)
    if len(rows) < 8:
        raise SurrogateUnavailable(
            f"{dataset}: only {len(rows)} swept design(s) to fit a surrogate on (need ≥ 8). "
            f"Fix: run the exact estimate (--exact), or sweep this dataset once (python -m onn_core sweep --dataset "
            f"{dataset}), after which it answers at once."
        )
    with warnings.catch_warnings():
        # Bounds the optimiser touches (e.g. a noise level at its floor) are expected on small,
        # nearly noise-free sweeps; the cross-validated error, not a warning, judges the fit.
        warnings.simplefilter("ignore", ConvergenceWarning)
        return _fit(dataset, rows, input_shapes, paths, cache)


def _fit(dataset: str, rows, input_shapes: set, paths: list[Path], cache: bool) -> Surrogate:
    from sklearn.model_selection import KFold, cross_val_predict

    raw = np.array([[f[name] for name in FEATURES] for f, _ in rows], dtype=float)
    target = np.array([y for _, y in rows])
    centre, scale = raw.mean(axis=0), raw.std(axis=0)
    scale[scale == 0] = 1.0
    x = (raw - centre) / scale
    ranges = {name: (float(raw[:, i].min()), float(raw[:, i].max())) for i, name in enumerate(FEATURES)}
    digest = hashlib.sha256(json.dumps([raw.tolist(), target.tolist()]).encode()).hexdigest()[:16]
    cache_file = studio_home() / "cache" / "surrogate" / f"{dataset}-{digest}.json"
    stored = json.loads(cache_file.read_text()) if cache and cache_file.exists() else None
    folds = KFold(n_splits=min(5, len(rows)), shuffle=True, random_state=0)
    if stored is None:
        cv_mae = {}
        for name, make in (("gp", lambda: _gp(len(FEATURES))), ("gbm", _gbm)):
            predicted = cross_val_predict(make(), x, target, cv=folds)
            cv_mae[name] = float(np.mean(np.abs(predicted - target)))
        kind = min(cv_mae, key=cv_mae.get)
        stored = {"kind": kind, "cv_mae": cv_mae}
    kind = stored["kind"]
    if kind == "gp":
        model = _gp(len(FEATURES))
        if "theta" in stored:  # cached hyperparameters: no optimisation on later loads
            model.kernel = model.kernel.clone_with_theta(np.array(stored["theta"]))
            model.optimizer = None
        model.fit(x, target)
        stored["theta"] = model.kernel_.theta.tolist()
        residual = 0.0
    else:
        model = _gbm().fit(x, target)
        if "residual_rmse" not in stored:  # the cross-validated error is the trees' uncertainty
            predicted = cross_val_predict(_gbm(), x, target, cv=folds)
            stored["residual_rmse"] = float(np.sqrt(np.mean((predicted - target) ** 2)))
        residual = stored["residual_rmse"]
    # "Far": twice the 90th percentile of the swept designs' distances to their nearest neighbour.
    distances = np.linalg.norm(x[:, None, :] - x[None, :, :], axis=2)
    np.fill_diagonal(distances, np.inf)
    gap = 2 * float(np.percentile(distances.min(axis=1), 90))
    if cache:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(json.dumps(stored, indent=2))
    return Surrogate(
        dataset=dataset, kind=kind, cv_mae=stored["cv_mae"], n_points=len(rows), ranges=ranges, model=model,
        scaler=(centre, scale), residual_rmse=residual, sources=[str(p) for p in paths],
        input_sizes=sorted({(h, w) for _, h, w in input_shapes}),
        input_channels=sorted({c for c, _, _ in input_shapes}), swept=x, gap=gap,
    )  # fmt: skip


@functools.lru_cache(maxsize=16)
def _cached(dataset: str, sources: tuple[tuple[str, float], ...]) -> Surrogate:
    return fit_surrogate(dataset, [Path(p) for p, _ in sources])


def load_surrogate(dataset: str, extra: list[str | Path] = ()) -> Surrogate:
    """The surrogate for ``dataset`` from the shipped sweeps (plus ``extra`` results), fitted once
    per process and per change of the files."""
    if dataset not in SPECS:
        raise SurrogateUnavailable(f"{dataset}: unknown dataset; choose one of {', '.join(SPECS)}.")
    missing = [str(p) for p in extra if not Path(p).is_file()]
    if missing:
        raise SweepError(f"sweep results {', '.join(missing)} not found.")
    own = own_sweep_path(dataset)
    paths = sorted(ASSET_SWEEPS.glob("*.jsonl")) + ([own] if own.is_file() else []) + [Path(p) for p in extra]
    sources = tuple((str(p), p.stat().st_mtime) for p in paths)
    return _cached(dataset, sources)


def surrogate_for(dataset: str, design: Design, extra: list[str | Path] = ()) -> Surrogate:
    """The surrogate of ``dataset`` when it can answer for ``design``: fitted on designs that read
    the images in the same colours (a three-wavelength student is another model)."""
    surrogate = load_surrogate(dataset, extra)
    if surrogate.input_channels and design.input_channels not in surrogate.input_channels:
        read = " or ".join(str(c) for c in surrogate.input_channels)
        raise SurrogateUnavailable(
            f"the {dataset} surrogate was fitted on designs reading {read} colour channel(s) and this design reads "
            f"{design.input_channels}"
        )
    return surrogate


def own_sweep_path(dataset: str) -> Path:
    """Where ``sweep --dataset NAME`` keeps the designer's sweep of ``dataset``, which the
    surrogate then fits on: inside a dataset they added (so it goes when the data is replaced or
    removed), else in the studio home."""
    if SPECS[dataset].user:
        return datasets_home() / dataset / "sweep.jsonl"
    return studio_home() / "sweeps" / f"{dataset}.jsonl"


def own_sweep_spec(dataset: str, samples: int | None = None) -> dict[str, Any]:
    """The shipped sweep of the dataset's task (its ranges, filters and estimator settings), for
    ``dataset`` alone; ``samples`` designs (default: the shipped number)."""
    name = "classification.json" if SPECS[dataset].task == "classification" else "shapes-seg.json"
    spec = json.loads((ASSET_SWEEPS / "specs" / name).read_text(encoding="utf-8"))
    spec["datasets"] = [dataset]
    if samples is not None:
        if samples < 8:
            raise SweepError(f"--samples {samples}: a surrogate needs at least 8 designs.")
        spec["random"]["samples"] = samples
    return spec


def check_design_for(design: Design, dataset: str) -> None:
    """The dataset must be known (its images are resampled and converted to the design's input)."""
    if dataset not in SPECS:
        raise SurrogateUnavailable(f"{dataset}: unknown dataset; choose one of {', '.join(SPECS)}.")


# Design edits behind the Estimate page's curves: each maps a swept value to design fields.
CURVES = {  # curve → (tab title, what is varied)
    "kernel_count": ("Kernel count", "the metasurface's sides, so that 1 … 64 kernels fit"),
    "kernel_size": ("Kernel aperture", "the aperture k (the layout refits; small apertures narrow the band)"),
    "meta_atom_pitch": ("Meta-atom pitch", "the meta-atom pitch"),
}


def _curve_designs(design: Design, curve: str) -> list[tuple[float, Design]]:
    if curve == "kernel_count":
        pitch = design.sub_optic_pitch
        pairs = []
        for rows in range(1, 13):
            for cols in (rows, rows + 1):
                side_h, side_w = rows * pitch - design.kernel_spacing, cols * pitch - design.kernel_spacing
                try:
                    candidate = design.replace(metasurface_height=side_h, metasurface_width=side_w)
                except DesignError:
                    continue
                if 1 <= candidate.kernel_count <= 64:
                    pairs.append((float(candidate.kernel_count), candidate))
        unique = {}
        for value, candidate in pairs:
            unique.setdefault(value, candidate)
        return sorted(unique.items())
    if curve == "kernel_size":
        values = np.geomspace(20e-6, min(design.metasurface_height, design.metasurface_width), 24)
    elif curve == "meta_atom_pitch":
        values = np.linspace(150e-9, 600e-9, 19)
    else:
        raise DesignError("curve", curve, f"must be one of {', '.join(CURVES)}.")
    designs = []
    for value in values:
        try:
            designs.append((float(value), design.replace(**{curve: float(value)})))
        except DesignError:
            continue  # not buildable at this value (e.g. too few meta-atoms): a gap in the curve
    return designs


def surrogate_curve(surrogate: Surrogate, design: Design, curve: str) -> list[dict[str, Any]]:
    """The surrogate's answer along one design axis: rows of {value, kernels, accuracy, low, high,
    extrapolation}; designs that cannot be built (or fit more than 64 kernels) are left out."""
    rows = []
    for value, candidate in _curve_designs(design, curve):
        if not 1 <= candidate.kernel_count <= 64:
            continue
        answer = surrogate.predict(candidate)
        rows.append({"value": value, "kernels": candidate.kernel_count, "accuracy": answer.accuracy,
                     "low": answer.low, "high": answer.high, "extrapolation": answer.extrapolation})  # fmt: skip
    return rows
