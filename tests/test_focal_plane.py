"""Lens focus, far field, PSF and MTF against closed forms (physics-checks.md #1, #2, #11, #12, #16)."""

import math

import numpy as np
import pytest
import torch

from onn_core.errors import OpticsInputError
from onn_core.optics import (
    analytic,
    circular_aperture,
    fraunhofer,
    intensity_psf,
    lens_fourier,
    lens_phase,
    mtf,
    propagate,
    rectangular_aperture,
)
from onn_core.optics.grids import coordinates


def focused_circular_pupil(*, wavelength, focal_length, pitch, n, padded, diameter):
    """Back-focal-plane field of a circular pupil (float64) and its sample pitch (metres)."""
    pupil = circular_aperture((n, n), pitch=pitch, diameter=diameter, dtype=torch.float64).to(torch.complex128)
    return lens_fourier(pupil, wavelength=wavelength, pitch=pitch, focal_length=focal_length, padded_size=padded)


def test_airy_pattern_of_circular_aperture():
    # Check #1: |FT|² of a circular pupil behind an ideal lens is [2J1(v)/v]²; profile error < 1e-3 of peak.
    wavelength, focal_length, n, padded = 0.55e-6, 50e-3, 512, 4096
    pitch = 10e-6
    diameter = 500 * pitch
    focal, out_pitch = focused_circular_pupil(
        wavelength=wavelength, focal_length=focal_length, pitch=pitch, n=n, padded=padded, diameter=diameter
    )
    intensity = (focal.abs() ** 2).numpy()
    intensity /= intensity[padded // 2, padded // 2]
    r = coordinates(padded, out_pitch).numpy()
    ring = np.abs(r) < 5 * analytic.airy_first_zero(wavelength=wavelength, focal_length=focal_length, diameter=diameter)
    for profile in (intensity[padded // 2, ring], intensity[ring, padded // 2]):
        reference = analytic.airy_intensity(
            r[ring], wavelength=wavelength, focal_length=focal_length, diameter=diameter
        )
        assert np.abs(profile - reference).max() < 1e-3
    # Along the diagonal too: the pattern is round, not square.
    diagonal = np.diagonal(intensity)[ring]
    reference = analytic.airy_intensity(
        np.sqrt(2) * r[ring], wavelength=wavelength, focal_length=focal_length, diameter=diameter
    )
    assert np.abs(diagonal - reference).max() < 1e-3


def test_first_zero_and_fwhm_of_the_airy_disk():
    wavelength, focal_length, pitch, n, padded = 0.5e-6, 20e-3, 5e-6, 256, 4096
    diameter = 200 * pitch
    focal, out_pitch = focused_circular_pupil(
        wavelength=wavelength, focal_length=focal_length, pitch=pitch, n=n, padded=padded, diameter=diameter
    )
    profile = (focal.abs() ** 2)[padded // 2, padded // 2 :].numpy()
    profile /= profile[0]
    first_minimum = np.argmax(np.diff(profile) > 0) * out_pitch
    assert first_minimum == pytest.approx(1.22 * wavelength * focal_length / diameter, abs=out_pitch)
    half = np.argmax(profile < 0.5)
    fwhm = 2 * np.interp(0.5, profile[half : half - 2 : -1], [half * out_pitch, (half - 1) * out_pitch])
    assert fwhm == pytest.approx(1.029 * wavelength * focal_length / diameter, rel=1e-2)


def test_rectangular_aperture_far_field_is_sinc_squared():
    # Check #2: relative to the peak, < 1e-4.
    wavelength, distance, pitch, n, padded = 0.6e-6, 2.0, 10e-6, 512, 2048
    width, height = 256 * pitch, 128 * pitch
    aperture = rectangular_aperture((n, n), pitch=pitch, width=width, height=height, dtype=torch.float64)
    far, out_pitch = fraunhofer(
        aperture.to(torch.complex128), wavelength=wavelength, pitch=pitch, distance=distance, padded_size=padded
    )
    intensity = (far.abs() ** 2).numpy()
    peak = intensity[padded // 2, padded // 2]
    assert peak == pytest.approx((width * height / (wavelength * distance)) ** 2, rel=1e-9)  # absolute scale
    u = coordinates(padded, out_pitch).numpy()
    window = slice(padded // 2 - 40, padded // 2 + 41)
    reference = analytic.rect_far_field_intensity(
        u[window][None, :], u[window][:, None], width=width, height=height, wavelength=wavelength, focal_length=distance
    )
    assert np.abs(intensity[window, window] / peak - reference).max() < 1e-4


def test_lens_is_a_fourier_transformer():
    # Check #16: a Gaussian in the front focal plane → its analytic FT at f = u/(λf).
    wavelength, focal_length, pitch, n = 0.8e-6, 10e-3, 2e-6, 512
    waist = 30e-6
    y, x = (coordinates(n, pitch).reshape(-1, 1), coordinates(n, pitch).reshape(1, -1))
    shift = 40e-6  # an off-axis input tests the linear phase, not only the magnitude
    field = torch.exp(-((x - shift) ** 2 + y**2) / waist**2).to(torch.complex128)
    focal, out_pitch = lens_fourier(field, wavelength=wavelength, pitch=pitch, focal_length=focal_length)
    u = coordinates(n, out_pitch).numpy()
    fx, fy = u[None, :] / (wavelength * focal_length), u[:, None] / (wavelength * focal_length)
    # FT of exp(-r²/w²) is πw² exp(-π²w²f²); a shift by s multiplies by exp(-2πi f s).
    reference = (
        np.pi
        * waist**2
        * np.exp(-(np.pi**2) * waist**2 * (fx**2 + fy**2))
        * np.exp(-2j * np.pi * fx * shift)
        / (1j * wavelength * focal_length)
    )
    error = np.abs(focal.numpy() - reference).max() / np.abs(reference).max()
    assert error < 1e-3
    # Energy is conserved across the transform (Parseval with the output pitch λf/(NΔx)).
    assert float((focal.abs() ** 2).sum()) * out_pitch**2 == pytest.approx(
        float((field.abs() ** 2).sum()) * pitch**2, rel=1e-9
    )


def test_lens_phase_focuses_a_plane_wave_to_the_airy_spot():
    # The lens phase + exact ASM propagation to its focal length (Fresnel number 25, F/10)
    # gives the diffraction-limited spot where the closed form says.
    wavelength, pitch, n = 0.5e-6, 0.5e-6, 1024
    diameter, focal_length = 200e-6, 2e-3
    pupil = circular_aperture((n, n), pitch=pitch, diameter=diameter, dtype=torch.float64)
    phase = lens_phase((n, n), pitch=pitch, wavelength=wavelength, focal_length=focal_length, dtype=torch.float64)
    focus = propagate(torch.polar(pupil, phase), wavelength=wavelength, pitch=pitch, distance=focal_length)
    psf = intensity_psf(focus)
    assert int(psf.argmax()) == (n // 2) * n + n // 2  # on axis, no off-by-one
    profile = psf[n // 2].numpy() / float(psf.max())
    r = coordinates(n, pitch).numpy()
    core = np.abs(r) < 2 * analytic.airy_first_zero(wavelength=wavelength, focal_length=focal_length, diameter=diameter)
    reference = analytic.airy_intensity(r[core], wavelength=wavelength, focal_length=focal_length, diameter=diameter)
    assert np.abs(profile[core] - reference).max() < 1e-2


def test_psf_sums_to_one():
    # Check #11.
    field = torch.randn(3, 64, 64, dtype=torch.complex64)
    psf = intensity_psf(field)
    torch.testing.assert_close(psf.sum(dim=(-2, -1)), torch.ones(3), rtol=1e-5, atol=1e-5)
    with pytest.raises(OpticsInputError, match="no energy"):
        intensity_psf(torch.zeros(8, 8, dtype=torch.complex64))


def test_diffraction_limited_mtf_matches_closed_form():
    # Check #12: MTF of the Airy PSF vs (2/π)[acos ν̂ − ν̂√(1−ν̂²)], ν_c = D/(λf), < 1e-2.
    wavelength, focal_length, pitch, n, padded = 0.55e-6, 50e-3, 10e-6, 256, 1024
    diameter = 200 * pitch
    focal, out_pitch = focused_circular_pupil(
        wavelength=wavelength, focal_length=focal_length, pitch=pitch, n=n, padded=padded, diameter=diameter
    )
    transfer, frequencies = mtf(intensity_psf(focal), pitch=out_pitch)
    cutoff = diameter / (wavelength * focal_length)
    centre = padded // 2
    reference = analytic.diffraction_limited_mtf_circular(frequencies.numpy(), cutoff)
    assert np.abs(transfer[centre].numpy() - reference).max() < 1e-2
    assert np.abs(transfer[:, centre].numpy() - reference).max() < 1e-2
    beyond = np.abs(frequencies.numpy()) > 1.02 * cutoff
    assert transfer[centre].numpy()[beyond].max() < 1e-6  # nothing passes the cutoff


def test_lens_fourier_refuses_what_it_cannot_do():
    field = torch.ones(16, 16, dtype=torch.complex64)
    with pytest.raises(OpticsInputError, match="wavelength must be a scalar"):
        lens_fourier(field, wavelength=torch.tensor([5e-7, 6e-7]), pitch=1e-6, focal_length=1e-3)
    with pytest.raises(OpticsInputError, match="square"):
        lens_fourier(torch.ones(16, 8, dtype=torch.complex64), wavelength=5e-7, pitch=1e-6, focal_length=1e-3)
    with pytest.raises(OpticsInputError, match="focal_length must be positive"):
        lens_fourier(field, wavelength=5e-7, pitch=1e-6, focal_length=-1e-3)


def test_apertures_have_exact_areas():
    pitch = 1e-6
    circle = circular_aperture((256, 256), pitch=pitch, diameter=101.3e-6, dtype=torch.float64)
    assert float(circle.sum()) * pitch**2 == pytest.approx(math.pi * (101.3e-6 / 2) ** 2, rel=1e-4)
    assert float(circle.min()) >= 0 and float(circle.max()) <= 1
    rect = rectangular_aperture((64, 64), pitch=pitch, width=20.5e-6, height=7.25e-6, dtype=torch.float64)
    assert float(rect.sum()) * pitch**2 == pytest.approx(20.5e-6 * 7.25e-6, rel=1e-12)
    with pytest.raises(OpticsInputError, match="diameter must be positive"):
        circular_aperture((8, 8), pitch=pitch, diameter=0.0)
    with pytest.raises(OpticsInputError, match="shape must be two positive integers"):
        circular_aperture((8,), pitch=pitch, diameter=1e-6)


def test_lens_phase_is_hyperbolic_and_per_wavelength():
    pitch, f = 1e-6, 1e-3
    phase = lens_phase((65, 65), pitch=pitch, wavelength=[0.5e-6, 1e-6], focal_length=f, dtype=torch.float64)
    assert phase.shape == (2, 65, 65)
    r = 32 * pitch
    expected = -2 * math.pi / 0.5e-6 * (math.sqrt(r**2 + f**2) - f)
    assert float(phase[0, 32, 64]) == pytest.approx(expected, rel=1e-12)
    torch.testing.assert_close(phase[0], 2 * phase[1])
    assert float(phase[0, 32, 32]) == 0.0
    with pytest.raises(OpticsInputError, match="wavelength must be finite and positive"):
        lens_phase((8, 8), pitch=pitch, wavelength=-1.0, focal_length=f)
