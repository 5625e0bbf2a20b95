"""The NTK-regression estimator: closed forms, agreement with autograd, and designer-facing errors."""

import math

import numpy as np
import pytest
import torch

from estimators.ntk_regression import (
    EstimateSettings,
    capture_noise_std,
    classifier_ntk,
    estimate,
    extrapolate_learning_curve,
    ridge_regression_select,
)
from onn_core.data import load_dataset
from onn_core.design import Design
from onn_core.errors import DesignError
from onn_core.models import FrontendOptions, SensorSettings, build_student
from onn_core.models.frontends import realisable_band
from onn_core.optics.psf import band_limit_projection, incoherent_cutoff
from onn_core.training.ntk import ntk_exact

# 12 × 12 inputs, 5 × 5 taps, 4 kernels on a 150 µm square: small enough to differentiate exactly.
SMALL = Design(
    kernel_size=40e-6, kernel_spacing=10e-6, metasurface_height=0.15e-3, metasurface_width=0.15e-3,
    input_height=12, input_width=12, kernel_taps=5,
)  # fmt: skip
DIGITS = Design(
    kernel_size=40e-6, kernel_spacing=10e-6, metasurface_height=0.15e-3, metasurface_width=0.15e-3,
    input_height=8, input_width=8, kernel_taps=3,
)  # fmt: skip
QUICK = EstimateSettings(train_size=300, val_size=100, test_size=150, inits=2)


def test_incoherent_cutoff_is_one_over_lambda_f_number():
    aperture, wavelength, distance = 0.94e-3, 532e-9, 2.4e-3
    f_number = distance / aperture
    assert incoherent_cutoff(aperture, wavelength, distance) == pytest.approx(1 / (wavelength * f_number))


def test_band_limit_projection_is_an_orthogonal_projector_that_keeps_only_the_passband():
    taps, pitch = 9, 10e-6
    frequencies = np.fft.fftfreq(taps, d=pitch)
    cutoff = 2.5 / (taps * pitch)  # keeps |m| ≤ 2 of the DFT bins m/(t·p)
    projector = band_limit_projection(taps, pitch, cutoff)
    assert torch.allclose(projector, projector.T, atol=1e-12)
    assert torch.allclose(projector @ projector, projector, atol=1e-12)
    # Rank = kept bins per axis squared.
    kept = int(np.sum(np.abs(frequencies) <= cutoff))
    assert kept == 5 and round(float(projector.trace())) == kept**2
    grid = torch.arange(taps, dtype=torch.float64)
    low = torch.cos(2 * math.pi * 2 * grid / taps)[:, None] * torch.ones(taps, dtype=torch.float64)
    high = torch.cos(2 * math.pi * 4 * grid / taps)[:, None] * torch.cos(2 * math.pi * grid / taps)
    assert torch.allclose((projector @ low.flatten()).view(taps, taps), low, atol=1e-12)
    assert torch.allclose(projector @ high.flatten(), torch.zeros(taps * taps, dtype=torch.float64), atol=1e-12)


def test_band_limit_is_identity_at_nyquist_and_the_mean_at_dc_only():
    taps, pitch = 7, 11.72e-6
    identity = band_limit_projection(taps, pitch, 1 / (2 * pitch))
    assert torch.allclose(identity, torch.eye(taps * taps, dtype=torch.float64), atol=1e-12)
    dc_only = band_limit_projection(taps, pitch, 0.5 / (taps * pitch))
    kernel = torch.randn(taps * taps, dtype=torch.float64)
    assert torch.allclose(dc_only @ kernel, kernel.mean().expand(taps * taps), atol=1e-12)


def test_default_design_passes_every_tap_frequency_and_a_tiny_aperture_does_not():
    assert realisable_band(Design(), 7) is None  # cutoff 737 cycles/mm ≫ tap Nyquist 42.7
    projector = realisable_band(SMALL, 5)
    assert projector is not None and projector.shape == (1, 25, 25)
    model = build_student("compressed-meta", SMALL, 10, FrontendOptions(band_limit=True))
    kernels = model.frontend.signed_kernels().detach().double()
    spectrum = torch.fft.fft2(kernels).abs()
    frequencies = torch.fft.fftfreq(5, d=SMALL.tap_pitch, dtype=torch.float64).abs()
    cutoff = incoherent_cutoff(SMALL.kernel_size, SMALL.wavelengths[0], SMALL.sensor_distance)
    outside = (frequencies[:, None] > cutoff) | (frequencies[None, :] > cutoff)
    assert outside.any()
    assert float(spectrum[..., outside].max()) < 1e-5 * float(spectrum.max())
    # Unsigned kernels are squared band-limited amplitudes: non-negative, and within the cutoff.
    unsigned = build_student("compressed-meta", SMALL.replace(signed_kernels=False), 10,
                             FrontendOptions(band_limit=True))  # fmt: skip
    psfs = unsigned.frontend.signed_kernels().detach().double()
    assert float(psfs.min()) >= 0
    spectrum = torch.fft.fft2(psfs).abs()
    assert float(spectrum[..., outside].max()) < 1e-5 * float(spectrum.max())


@pytest.mark.parametrize("band_limit", [False, True])
@pytest.mark.parametrize("signed", [True, False])
def test_structured_classifier_ntk_equals_the_autograd_ntk(band_limit, signed):
    torch.manual_seed(0)
    design = SMALL.replace(signed_kernels=signed)
    model = build_student("compressed-meta", design, 10, FrontendOptions(band_limit=band_limit)).double()
    images = torch.rand(7, 1, 12, 12, dtype=torch.float64)
    reference = ntk_exact(model, images).detach()
    structured = classifier_ntk(model, images[:3], images)
    assert torch.allclose(structured, reference[:3], rtol=1e-10, atol=1e-10 * float(reference.abs().max()))


def test_ridge_selection_matches_the_closed_form_solve():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    kernel = features @ features.T
    targets = torch.randn(40, 2, generator=generator, dtype=torch.float64)
    recorded = {}

    def keep(name):
        def score(predictions):
            recorded[name] = predictions
            return 0.0

        return score

    relative, _, _ = ridge_regression_select(kernel[:30, :30], targets[:30], kernel[30:, :30], kernel[30:, :30],
                                             keep("val"), keep("test"), grid=(0.5,))  # fmt: skip
    ridge = relative * float(kernel[:30, :30].diagonal().mean())
    expected = kernel[30:, :30] @ torch.linalg.solve(kernel[:30, :30] + ridge * torch.eye(30), targets[:30])
    assert torch.allclose(recorded["test"], expected, atol=1e-9)


def test_learning_curve_extrapolation_recovers_an_exact_power_law():
    def accuracy(n):
        return 1 - (0.05 + 2.0 * n**-0.5)

    sizes = [250, 500, 1000, 2000]
    assert extrapolate_learning_curve(sizes, [accuracy(n) for n in sizes], 32000) == pytest.approx(
        accuracy(32000), abs=2e-3
    )
    # No improvement with more data: nothing to extrapolate.
    assert extrapolate_learning_curve(sizes, [0.9, 0.9, 0.9, 0.9], 32000) == 0.9


def test_capture_noise_combines_shot_read_and_quantisation():
    sensor = SensorSettings(full_well=10_000, read_noise=5.0, bit_depth=8)
    expected = math.sqrt((0.2 * 10_000 + 25) / 1e8 + 1 / (12 * 255**2))
    assert capture_noise_std(Design(), 0.2, sensor) == pytest.approx(expected)


def test_estimate_is_reproducible_and_reports_its_spread():
    first = estimate(DIGITS, "digits", QUICK)
    again = estimate(DIGITS, "digits", QUICK)
    assert first.per_init == again.per_init
    assert first.metric == "accuracy" and first.kernels == DIGITS.kernel_count
    assert 0.5 < first.raw_accuracy < 1.0  # ten digit classes, far above chance with 4 kernels
    assert first.raw_low <= first.subset_accuracy <= first.raw_accuracy <= first.raw_high
    assert first.calibrated and first.low <= first.accuracy <= first.high  # trained accuracy, its interval
    assert first.sizes == {"train": 300, "val": 100, "test": 150}
    assert [n for n, _ in first.learning_curve] == [37, 75, 150, 300]
    assert first.learning_curve[-1][1] == pytest.approx(first.subset_accuracy)
    assert first.full_train_size == 1293  # sklearn's 1 797 digits: 80 % train, of which 90 %


def test_more_kernels_estimate_at_least_as_well_on_digits():
    sizes = {"train_size": 400, "val_size": 100, "test_size": 300, "inits": 2}
    one = estimate(DIGITS, "digits", EstimateSettings(**sizes, kernels=1))
    many = estimate(DIGITS, "digits", EstimateSettings(**sizes, kernels=16))
    assert many.raw_accuracy > one.raw_accuracy
    assert many.accuracy > one.accuracy  # and after calibration


def test_estimate_refuses_a_design_that_does_not_fit_the_data():
    grey = load_dataset("digits", image_size=(DIGITS.input_height, DIGITS.input_width))
    with pytest.raises(DesignError, match=r"channel.*load_for_design"):  # data given: it must already match
        estimate(DIGITS.replace(wavelengths=(450e-9, 532e-9, 635e-9), input_channels=3), "digits", QUICK, data=grey)
    with pytest.raises(DesignError, match="at least 3 kernels"):
        estimate(Design(input_height=64, input_width=64), "shapes-seg", EstimateSettings(kernels=2))
    with pytest.raises(DesignError, match="train_size"):
        EstimateSettings(train_size=3)


class _Built(Exception):
    """Stops an estimate once its student is built: only the choice of student is under test."""


@pytest.mark.parametrize(
    ("dataset", "design"),
    [("digits", DIGITS), ("cifar10", Design(wavelengths=(450e-9, 532e-9, 635e-9), input_channels=3, input_height=32,
                                            input_width=32)),
     ("shapes-seg", Design(input_height=64, input_width=64))],
)  # fmt: skip
def test_a_design_is_estimated_as_the_student_it_is_trained_as(dataset, design, tmp_path, monkeypatch):
    import estimators.ntk_regression as regression
    from onn_core.data import load_dataset
    from onn_core.training import TrainConfig
    from onn_core.training.trainer import build_model
    from tests.test_data import write_cifar

    root = None
    if dataset == "cifar10":
        write_cifar(tmp_path / "cifar-10-batches-py", per_batch=24)
        root = str(tmp_path)
    data = load_dataset(dataset, root=root, image_size=(design.input_height, design.input_width))
    estimated = []

    def spy(name, *args, **kwargs):
        estimated.append(name)
        raise _Built

    monkeypatch.setattr(regression, "build_student", spy)
    with pytest.raises(_Built):
        estimate(design, dataset, EstimateSettings(train_size=20, val_size=10, test_size=10, inits=1), data=data)
    _, trained = build_model(design, TrainConfig(dataset=dataset, data_root=root), data)
    assert estimated == [trained]
    assert trained == {"digits": "compressed-meta", "cifar10": "polychromatic-meta",
                       "shapes-seg": "segmentation-meta"}[dataset]  # fmt: skip
