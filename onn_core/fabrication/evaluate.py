"""How a trained model fares once fabricated: one draw, a Monte-Carlo yield, accuracy vs error size.

Each draw is a fabricated copy of the model (:func:`~.fabricated.fabricate`) with the error
model's seed set to the draw's; sensor noise during evaluation comes from the trainer's fixed
evaluation stream, so every number here is reproducible and draws differ only by the optics.
Scores are the run's headline metric (accuracy or mIoU) on its test split (or the first
``images`` of it, for quick looks).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data import Split
from ..errors import DesignError
from ..training.metrics import headline
from ..training.run import FinishedRun
from ..training.trainer import evaluate
from .error_model import ErrorModel
from .fabricated import fabricate
from .inverse_design import Metasurface

MAX_DRAWS = 10_000
MAX_FACTOR = 100.0


def _whole(name: str, value: Any, low: int, high: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise DesignError(name, value, f"must be a whole number from {low:,} to {high:,}; got {value!r}.", hint)


def check_evaluation(*, draws: Any = 1, images: Any = None, threshold: Any = None,
                     factors: Sequence[Any] | None = None) -> None:  # fmt: skip
    """Refuse a fabrication evaluation that would score nothing or something else than asked:
    draws 1 … MAX_DRAWS; images None (all) or ≥ 1; a threshold a score can reach (0–1); factors
    finite, 0 … MAX_FACTOR, at least one."""
    _whole("draws", draws, 1, MAX_DRAWS, "give the number of fabricated copies to score, e.g. 20.")
    if images is not None:
        _whole("images", images, 1, 10**9, "give how many test images to score (or leave it out for all).")
    if threshold is not None and (isinstance(threshold, bool) or not isinstance(threshold, int | float)
                                  or not math.isfinite(threshold) or not 0 <= threshold <= 1):  # fmt: skip
        raise DesignError("threshold", threshold, "is the score a fabricated copy must reach, a fraction 0–1; got "
                          f"{threshold!r}.", "e.g. 0.9 for 90 %.")  # fmt: skip
    if factors is not None:
        bad = [f for f in factors if isinstance(f, bool) or not isinstance(f, int | float) or not math.isfinite(f)
               or not 0 <= f <= MAX_FACTOR]  # fmt: skip
        if not factors or bad:
            raise DesignError("factors", list(factors), f"are error-model scale factors, numbers 0–{MAX_FACTOR:g} "
                              "(0 = perfect optics); at least one.", "e.g. 0,0.5,1,2.")  # fmt: skip


def parse_factors(text: str) -> list[float]:
    """``"0,0.5,1"`` → [0.0, 0.5, 1.0], refused in the designer's terms when a value is not a number."""
    try:
        factors = [float(value) for value in text.split(",") if value.strip()]
    except ValueError:
        raise DesignError("factors", text, "must be numbers separated by commas.", "e.g. 0,0.5,1,2.") from None
    check_evaluation(factors=factors)
    return factors


def split_head(split: Split, images: int | None) -> Split:
    """The first ``images`` of a split (all when None)."""
    if images is None or images >= len(split):
        return split
    return Split(split.images[:images], split.targets[:images])


def score(model: nn.Module, split: Split, task: str, classes: int) -> float:
    """The headline metric of ``model`` on ``split`` (sensor noise from the evaluation stream)."""
    metrics = evaluate(model, split, task, classes)
    return float(metrics[headline(task)])


@dataclass
class YieldResult:
    """Scores of ``draws`` fabricated copies of one trained model.

    Attributes:
        metric: "accuracy" or "miou". trained: the run's own test score (simulation).
        designed: score through the designed optics with no error (the realised metasurface
            when there is one; equals ``trained`` otherwise). scores: one per draw, seeds with them.
        error_model: the model (as a dict) with the first draw's seed. images: test images used.
    """

    metric: str
    trained: float
    designed: float
    scores: list[float]
    seeds: list[int]
    error_model: dict[str, Any]
    images: int
    seconds: float = 0.0
    source: str = "kernels"

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores, ddof=1)) if len(self.scores) > 1 else 0.0

    def quantile(self, q: float) -> float:
        return float(np.quantile(self.scores, q))

    def yield_at(self, threshold: float) -> float:
        """Fraction of draws scoring at least ``threshold`` (a fraction, like the scores)."""
        return float(np.mean(np.asarray(self.scores) >= threshold))

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self), "mean": self.mean, "std": self.std, "drop": self.trained - self.mean,
            "p05": self.quantile(0.05), "p50": self.quantile(0.5), "p95": self.quantile(0.95),
        }  # fmt: skip


def _source(metasurface: Metasurface | None, measured) -> str:
    if measured is not None:
        return "measured PSFs"
    return "metasurface" if metasurface is not None else "kernels"


def monte_carlo(
    run: FinishedRun,
    errors: ErrorModel,
    draws: int = 20,
    *,
    metasurface: Metasurface | None = None,
    measured: list[torch.Tensor] | None = None,
    images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    split: str = "test",
) -> YieldResult:
    """Score ``draws`` fabricated copies (seeds errors.seed, errors.seed + 1, …).

    Args:
        run: the trained run. errors: the error model. draws: Monte-Carlo draws (≥ 1).
        metasurface: radius maps (inverse design) to perturb; None uses the run's kernels, or a
            physical run's own radius maps. measured: measured PSFs per group (fixed optics:
            the draws then vary only misalignment, noise and the other random terms).
        images: evaluate on the first this many test images (None: all).
        progress: called as (draws done, draws).
        split: "test", or "val" to calibrate an error model without reading the test split.
    """
    check_evaluation(draws=draws, images=images)
    started = time.perf_counter()
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val'; got {split!r}.")
    data = run.data()
    test = split_head(getattr(data, split), images)
    task, classes = run.task, run.classes
    designed_model = fabricate(run.model, run.design, ErrorModel(), metasurface=metasurface)
    designed = score(designed_model, test, task, classes)
    own = images is None and split == "test"
    trained = float(run.metrics[run.score_name]) if own else score(run.model, test, task, classes)
    scores, seeds = [], []
    for draw in range(draws):
        seed = errors.seed + draw
        model = fabricate(run.model, run.design, errors.with_seed(seed), metasurface=metasurface, measured=measured)
        scores.append(score(model, test, task, classes))
        seeds.append(seed)
        if progress:
            progress(draw + 1, draws)
    return YieldResult(run.score_name, trained, designed, scores, seeds, errors.to_dict(), len(test),
                       time.perf_counter() - started, _source(metasurface, measured))  # fmt: skip


@dataclass
class CurvePoint:
    factor: float
    mean: float
    std: float
    scores: list[float] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)


def error_curve(
    run: FinishedRun,
    errors: ErrorModel,
    factors: Sequence[float] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0),
    draws: int = 5,
    *,
    metasurface: Metasurface | None = None,
    images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[CurvePoint]:
    """Score vs error magnitude: the error model scaled by each factor (0 = perfect optics)."""
    check_evaluation(draws=draws, images=images, factors=list(factors))
    for factor in factors:  # refuse an implausible scale before any work is done
        errors.scaled(float(factor))
    points, total, done = [], len(factors) * draws, 0
    for factor in factors:
        scaled = errors.scaled(float(factor))

        def report(draw: int, _draws: int, before: int = done) -> None:
            if progress:
                progress(before + draw, total)

        result = monte_carlo(run, scaled, draws, metasurface=metasurface, images=images, progress=report)
        done += draws
        points.append(CurvePoint(float(factor), result.mean, result.std, result.scores, scaled.describe()))
    return points


def describe_drop(result: YieldResult) -> str:
    """One line for logs and the CLI: trained → fabricated mean ± std over draws."""
    scale = 100.0
    spread = f" ± {result.std * scale:.1f}" if len(result.scores) > 1 and math.isfinite(result.std) else ""
    return (f"{result.metric} trained {result.trained * scale:.1f} %, designed optics {result.designed * scale:.1f} %, "
            f"fabricated {result.mean * scale:.1f}{spread} % over {len(result.scores)} draw(s)")  # fmt: skip


def load_captured_maps(run: FinishedRun, path: str | Path):
    """Captured feature maps (``.npz``: features, split, indices) validated against ``run`` and its data."""
    from ..errors import MeasuredDataError
    from ..models.zoo import HybridClassifier
    from .measured import read_captured_maps

    if not isinstance(run.model, HybridClassifier):
        raise MeasuredDataError(path, "captured feature maps work for single-frontend classifiers; for "
                                "segmentation, measure the PSFs instead (--measured-psfs).")  # fmt: skip
    data = run.data()
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    image_size = (run.design.input_height, run.design.input_width)
    return read_captured_maps(path, run.frontends()[0], image_size, sizes)


def captured_score(run: FinishedRun, maps) -> dict[str, Any]:
    """Accuracy of the run's backend on captured feature maps (real optics, real camera).

    ``maps`` is a :class:`~.measured.CapturedMaps` from :func:`load_captured_maps`; the labels are
    those of the captured images in the run's own split.
    """
    from ..models.zoo import BackendOnFeatures

    model = run.model
    split = getattr(run.data(), maps.split)
    targets = split.targets[maps.indices]
    with torch.no_grad():
        predicted = BackendOnFeatures(model).eval()(maps.features).argmax(dim=1)
        simulated = model(split.images[maps.indices]).argmax(dim=1)
    return {
        "metric": "accuracy", "split": maps.split, "images": len(targets),
        "captured": float((predicted == targets).float().mean()),
        "simulated": float((simulated == targets).float().mean()),
        "agreement": float((predicted == simulated).float().mean()),
    }  # fmt: skip
