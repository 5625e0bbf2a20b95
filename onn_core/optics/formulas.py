"""Closed-form optics of a design in plain floats (SI units): no tensors, so the design object and
the command line can use them without loading torch."""

from __future__ import annotations

import math


def fresnel_number(half_width: float, wavelength: float, distance: float) -> float:
    """N_F = a²/(λz).

    Args:
        half_width: aperture half-width (or radius) a, metres. wavelength: metres.
        distance: metres.
    """
    return half_width**2 / (wavelength * distance)


def nyquist_factor(wavelength: float, f_number: float, pixel_pitch: float) -> float:
    """Q = λ·F#/p; Q ≥ 2 samples a diffraction-limited PSF at Nyquist.

    Args:
        wavelength: metres. f_number: focal length / aperture (dimensionless). pixel_pitch: metres.
    """
    return wavelength * f_number / pixel_pitch


def airy_radius(wavelength: float, f_number: float) -> float:
    """First-zero radius of the diffraction-limited spot, 1.22·λ·F# (metres)."""
    return 1.2196698912665045 * wavelength * f_number


def max_deflection_angle(wavelength: float, pitch: float) -> float:
    """Largest angle (radians) a phase profile sampled at ``pitch`` (metres) can steer light to."""
    return math.asin(min(1.0, wavelength / (2 * pitch)))
