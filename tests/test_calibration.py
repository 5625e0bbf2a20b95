"""The estimator's calibration: monotone in the raw estimate, conformal intervals that cover."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from estimators import calibration
from estimators.calibration import Calibration, Features, Pair, conformal_offsets, fit


def _synthetic_pairs(seed: int = 0, datasets: int = 5, per_dataset: int = 16) -> list[Pair]:
    """Raw estimates that over-shoot trained accuracy more on small training sets, with noise."""
    rng = np.random.default_rng(seed)
    pairs = []
    for d in range(datasets):
        shift = rng.normal(0, 0.15)  # a dataset's own offset: what leaving it out must absorb
        for _ in range(per_dataset):
            n_train = int(rng.choice([500, 2000, 10_000]))
            raw = float(rng.uniform(0.7, 0.99))
            kernels = int(rng.choice([1, 4, 16]))
            z = math.log(raw / (1 - raw))
            trained_logit = 0.9 * z - 0.6 / math.log10(n_train) + shift + rng.normal(0, 0.15)
            features = Features(
                raw=raw,
                slope=float(rng.uniform(0, 0.03)),
                n_train=n_train,
                classes=int(rng.choice([2, 5, 10])),
                kernels=kernels,
                signed=bool(rng.random() < 0.7),
            )
            pairs.append(Pair(dataset=f"set{d}", features=features, trained=1 / (1 + math.exp(-trained_logit))))
    return pairs


def test_calibrated_figure_never_falls_when_the_raw_estimate_rises():
    base = Features(raw=0.5, slope=0.01, n_train=2000, classes=10, kernels=4, signed=True)
    for space, inputs in itertools.product(calibration.SPACES, calibration.INPUT_SETS):
        fitted = fit(_synthetic_pairs(), spaces=(space,), input_sets=(inputs,))
        assert fitted.slope >= 0
        raws = np.linspace(0.3, 0.999, 60)
        answers = [fitted.predict(Features(**{**base.__dict__, "raw": raw})) for raw in raws]
        accuracies = [a.accuracy for a in answers]
        assert all(b >= a - 1e-12 for a, b in itertools.pairwise(accuracies)), (space, inputs)
        assert all(a.low <= a.accuracy <= a.high for a in answers)


def test_monotone_even_when_the_data_say_otherwise():
    # Trained accuracy falling as the raw estimate rises: the bound keeps the slope at zero, not below.
    pairs = [Pair(f"set{i % 3}", Features(raw=r, slope=0.0, n_train=1000, classes=10, kernels=4, signed=True),
                  trained=1.6 - r) for i, r in enumerate(np.linspace(0.65, 0.95, 30))]  # fmt: skip
    for space in ("accuracy", "logit"):
        fitted = fit(pairs, spaces=(space,), input_sets=((),), ridges=(1e-6,))
        assert fitted.slope == pytest.approx(0.0, abs=1e-9)


def test_conformal_offsets_use_the_finite_sample_ranks():
    residuals = list(range(1, 20))  # n = 19: ranks ⌊20·0.1⌋ = 2 and ⌈20·0.9⌉ = 18
    assert conformal_offsets(residuals, 0.8) == (2, 18)
    assert conformal_offsets([0.5, -0.5], 0.8) == (-0.5, 0.5)  # too few for the level: the extremes
    with pytest.raises(ValueError):
        conformal_offsets([], 0.8)
    # One residual per dataset: the grouped quantiles are the plain ranks.
    assert conformal_offsets(residuals, 0.8, [f"d{i}" for i in residuals]) == (2, 18)


def test_grouped_offsets_weigh_every_dataset_the_same():
    # 19 datasets of one residual each, and one of 100 residuals near zero: as 20 equal datasets.
    residuals = [float(i) for i in range(1, 20)] + [10.0 + 1e-6 * i for i in range(100)]
    groups = [f"d{i}" for i in range(1, 20)] + ["big"] * 100
    low, high = conformal_offsets(residuals, 0.8, groups)
    # Levels 0.1·21/20 and 0.9·21/20 of twenty datasets weighing 1/20 each: the 3rd and the 19th (18).
    assert (low, high) == (3.0, 18.0)
    plain_low, plain_high = conformal_offsets(residuals, 0.8)
    assert plain_high - plain_low < high - low  # the pairs' ranks let the big dataset narrow it


def test_interval_covers_about_its_level_on_datasets_left_out():
    pairs = _synthetic_pairs(seed=1, datasets=8, per_dataset=20)
    covered = []
    for held_out in {p.dataset for p in pairs}:
        fitted = fit([p for p in pairs if p.dataset != held_out])
        for p in pairs:
            if p.dataset == held_out:
                answer = fitted.predict(p.features)
                covered.append(answer.low <= p.trained <= answer.high)
    assert np.mean(covered) >= 0.8  # with 7 fitting datasets the level's correction makes it conservative


def test_fit_needs_two_datasets_and_round_trips_as_json(tmp_path):
    pairs = _synthetic_pairs(datasets=2)
    with pytest.raises(ValueError, match="two datasets"):
        fit([p for p in pairs if p.dataset == "set0"])
    fitted = fit(pairs)
    path = tmp_path / "calibration.json"
    fitted.save(path)
    again = Calibration.from_dict(__import__("json").loads(path.read_text()))
    probe = pairs[0].features
    assert again.predict(probe) == fitted.predict(probe)


def test_segmentation_stays_raw_and_says_why():
    result = {"accuracy": 0.5, "low": 0.45, "high": 0.55, "kernels": 8, "learning_curve": [], "full_train_size": 2000}
    answer = calibration.calibrate_result(result, "segmentation", True, 2)
    assert answer["calibrated"] is False and answer["accuracy"] == 0.5 and answer["raw_accuracy"] == 0.5
    assert "segmentation" in answer["calibration"]


def test_shipped_calibration_is_validated_and_its_interval_holds_the_trained_result():
    shipped = calibration.shipped()
    assert shipped is not None, "assets/estimator_calibration.json missing: run bench/estimator_calibration.py"
    assert shipped.validation["datasets"] >= 5
    result = {"accuracy": 0.994, "low": 0.99, "high": 0.997, "kernels": 16, "full_train_size": 1213,
              "learning_curve": [[375, 0.97], [750, 0.985], [1500, 0.99], [3000, 0.992]]}  # fmt: skip
    answer = calibration.calibrate_result(result, "classification", True, 10)
    assert answer["calibrated"] is True and answer["raw_accuracy"] == 0.994
    assert answer["low"] <= answer["accuracy"] <= answer["high"]
    # Issue 23's 8×8 digits: raw 99.4 %, trained 97.7 %, outside the raw range; inside this one.
    assert answer["raw_high"] < 0.977 or answer["raw_low"] > 0.977
    assert answer["low"] <= 0.977 <= answer["high"]
    assert "datasets it was not fitted on" in answer["calibration"]
