"""Diffraction-limited preview of one sub-optic: its lens PSF and MTF beside the closed forms.

A sub-optic is a k × k square aperture; as an ideal lens focusing on the sensor at distance z it
has the PSF sinc²(kx/λz)·sinc²(ky/λz) and, along x, the MTF 1 − ν/ν_c with ν_c = k/(λz). The
preview computes both numerically with the optics core (lens Fourier transform of the aperture,
pixel integration onto the sensor) so the page shows the simulation *and* the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .design import Design
from .optics import analytic, intensity_psf, lens_fourier, mtf, pixel_integrate, rectangular_aperture
from .optics.grids import coordinates

# Samples across the aperture and padding factor: output pitch = λz/(PAD·k) = λF#/PAD.
_APERTURE_SAMPLES = 128
_PAD = 16


@dataclass(frozen=True)
class LensPreview:
    """Profiles along x through the centre (SI units).

    Attributes:
        x: focal-plane positions, metres. psf: simulated PSF (peak 1). psf_reference: sinc².
        pixel_x: sensor pixel centres, metres. pixel_psf: PSF integrated over each sensor pixel
            (fraction of the total energy per pixel).
        frequency: cycles/metre (≥ 0). mtf: simulated MTF. mtf_reference: 1 − ν/ν_c.
        cutoff: ν_c, cycles/metre. sensor_nyquist, tap_nyquist: 1/(2p), 1/(2·tap), cycles/metre.
        wavelength: metres.
    """

    x: np.ndarray
    psf: np.ndarray
    psf_reference: np.ndarray
    pixel_x: np.ndarray
    pixel_psf: np.ndarray
    frequency: np.ndarray
    mtf: np.ndarray
    mtf_reference: np.ndarray
    cutoff: float
    sensor_nyquist: float
    tap_nyquist: float
    wavelength: float


def lens_preview(design: Design, wavelength: float) -> LensPreview:
    """Ideal-lens PSF and MTF of one sub-optic of ``design`` at ``wavelength`` (metres)."""
    k, z = design.kernel_size, design.sensor_distance
    pitch = k / _APERTURE_SAMPLES
    n = _APERTURE_SAMPLES * 2
    aperture = rectangular_aperture((n, n), pitch=pitch, width=k, height=k, dtype=torch.float64)
    focal, out_pitch = lens_fourier(
        aperture.to(torch.complex128), wavelength=wavelength, pitch=pitch, focal_length=z, padded_size=n * _PAD // 2
    )
    psf = intensity_psf(focal)  # sums to 1
    m = psf.shape[-1]
    centre = m // 2
    x = coordinates(m, out_pitch).numpy()
    window = np.abs(x) <= 4 * wavelength * z / k
    profile = psf[centre].numpy()
    reference = analytic.rect_far_field_intensity(x, 0.0, width=k, height=k, wavelength=wavelength, focal_length=z)

    pixels = 2 * int(np.ceil(4 * wavelength * z / k / design.sensor_pixel_pitch)) + 3
    irradiance = psf / out_pitch**2
    on_sensor = pixel_integrate(
        irradiance, pitch=out_pitch, pixel_pitch=design.sensor_pixel_pitch, sensor_shape=(pixels, pixels)
    )
    transfer, frequencies = mtf(psf, pitch=out_pitch)
    frequency = frequencies.numpy()
    cutoff = k / (wavelength * z)
    keep = (frequency >= 0) & (frequency <= 1.2 * cutoff)
    return LensPreview(
        x=x[window],
        psf=profile[window] / profile[centre],
        psf_reference=reference[window],
        pixel_x=coordinates(pixels, design.sensor_pixel_pitch).numpy(),
        pixel_psf=on_sensor[pixels // 2].numpy(),
        frequency=frequency[keep],
        mtf=transfer[centre].numpy()[keep],
        mtf_reference=analytic.diffraction_limited_mtf_square(frequency[keep], cutoff),
        cutoff=cutoff,
        sensor_nyquist=1 / (2 * design.sensor_pixel_pitch),
        tap_nyquist=1 / (2 * design.tap_pitch),
        wavelength=wavelength,
    )
