"""Closed-form references: the answers the numerical optics must reproduce.

Used by the tests (physics is verified against these, never only against itself) and by the app
to draw the diffraction limit beside simulated curves. NumPy/SciPy, SI units.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .formulas import fresnel_number


def airy_intensity(r, *, wavelength: float, focal_length: float, diameter: float):
    """Normalised Airy pattern [2 J1(v)/v]², v = πDr/(λf); 1 on axis.

    Args:
        r: radial distance(s) in the focal plane, metres. wavelength, focal_length, diameter: metres.
    """
    v = np.pi * diameter * np.asarray(r, dtype=np.float64) / (wavelength * focal_length)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.where(v == 0, 1.0, 2 * special.j1(v) / np.where(v == 0, 1.0, v))
    return ratio**2


def airy_first_zero(*, wavelength: float, focal_length: float, diameter: float) -> float:
    """Radius of the first dark ring, 1.2197 λf/D (metres)."""
    return special.jn_zeros(1, 1)[0] / np.pi * wavelength * focal_length / diameter


def rect_far_field_intensity(x, y, *, width: float, height: float, wavelength: float, focal_length: float):
    """Normalised far field of a width × height rectangle: sinc²(ax/λf)·sinc²(by/λf); 1 on axis."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (
        np.sinc(width * x / (wavelength * focal_length)) ** 2 * np.sinc(height * y / (wavelength * focal_length)) ** 2
    )


def square_aperture_fresnel_field(x, y, *, side: float, wavelength: float, distance: float):
    """Fresnel-diffracted field of a unit-amplitude square aperture (side L), carrier removed.

    U(x, y) = (1/2i) [C(a₂)−C(a₁) + i(S(a₂)−S(a₁))]_x · [same]_y, with
    a₁,₂ = √(2N_F)(∓1 − 2x/L), N_F = (L/2)²/(λz). Returns the complex field (|U| → 1 deep
    inside the geometric shadow boundary).
    """

    def axis_factor(u):
        n_f = fresnel_number(side / 2, wavelength, distance)
        scale = np.sqrt(2 * n_f)
        s1, c1 = special.fresnel(scale * (-1 - 2 * np.asarray(u, dtype=np.float64) / side))
        s2, c2 = special.fresnel(scale * (1 - 2 * np.asarray(u, dtype=np.float64) / side))
        return ((c2 - c1) + 1j * (s2 - s1)) / np.sqrt(2j)

    return axis_factor(y)[..., :, None] * axis_factor(x)[..., None, :]


def diffraction_limited_mtf_circular(frequency, cutoff: float):
    """Incoherent MTF of an aberration-free circular pupil: (2/π)[acos ν̂ − ν̂√(1−ν̂²)].

    Args:
        frequency: spatial frequencies, cycles/metre. cutoff: ν_c = D/(λf), cycles/metre.
    """
    nu = np.clip(np.abs(np.asarray(frequency, dtype=np.float64)) / cutoff, 0.0, 1.0)
    return (2 / np.pi) * (np.arccos(nu) - nu * np.sqrt(1 - nu**2))


def diffraction_limited_mtf_square(frequency, cutoff: float):
    """Incoherent MTF of a square pupil along one of its sides: 1 − |ν|/ν_c (ν_c = L/(λf))."""
    return np.clip(1 - np.abs(np.asarray(frequency, dtype=np.float64)) / cutoff, 0.0, 1.0)


def talbot_distance(period: float, wavelength: float) -> float:
    """Non-paraxial Talbot self-imaging distance λ / (1 − √(1 − λ²/a²)) (metres)."""
    return wavelength / (1 - np.sqrt(1 - (wavelength / period) ** 2))
