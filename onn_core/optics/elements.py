"""Thin optical elements: apertures (amplitude 0..1) and phase profiles (radians).

Apertures are area-weighted: a pixel cut by the edge carries the fraction of its area inside,
which removes the staircase error that otherwise dominates comparisons with closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import OpticsInputError
from ._validate import check_positive
from .grids import coordinates, meshgrid

# Sub-samples per axis used to integrate the area of pixels cut by a curved edge.
_EDGE_SUBSAMPLES = 16


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2 or any((not isinstance(n, int)) or n < 1 for n in shape):
        raise OpticsInputError(f"shape must be two positive integers (ny, nx), got {tuple(shape)}.")
    return int(shape[0]), int(shape[1])


def circular_aperture(
    shape: Sequence[int], *, pitch: float, diameter: float, dtype=torch.float32, device=None
) -> torch.Tensor:
    """Transmission (0..1) of a centred circular aperture.

    Args:
        shape: (ny, nx) samples. pitch: sample spacing, metres. diameter: metres.

    Returns:
        Real tensor ``shape``; edge pixels hold the fraction of their area inside the circle.
    """
    ny, nx = _check_shape(shape)
    check_positive("pitch", pitch)
    check_positive("diameter", diameter)
    y, x = meshgrid((ny, nx), pitch, device=device)
    radius = diameter / 2
    r = torch.sqrt(x**2 + y**2)
    inside = (r <= radius).to(torch.float64)
    # Pixels whose square may straddle the edge get their covered area by sub-sampling.
    edge = (r - radius).abs() <= pitch * math.sqrt(0.5)
    if bool(edge.any()):
        offsets = (torch.arange(_EDGE_SUBSAMPLES, dtype=torch.float64, device=device) + 0.5) / _EDGE_SUBSAMPLES - 0.5
        sub_y = y[edge].reshape(-1, 1, 1) + offsets.reshape(1, -1, 1) * pitch
        sub_x = x[edge].reshape(-1, 1, 1) + offsets.reshape(1, 1, -1) * pitch
        covered = ((sub_x**2 + sub_y**2) <= radius**2).to(torch.float64).mean(dim=(1, 2))
        inside[edge] = covered
    return inside.to(dtype)


def _interval_overlap(centres: torch.Tensor, pitch: float, half_width: float) -> torch.Tensor:
    """Fraction of each sample cell [c - p/2, c + p/2] inside [-half_width, half_width]."""
    lower = torch.clamp(centres - pitch / 2, min=-half_width)
    upper = torch.clamp(centres + pitch / 2, max=half_width)
    return torch.clamp(upper - lower, min=0) / pitch


def rectangular_aperture(
    shape: Sequence[int], *, pitch: float, width: float, height: float, dtype=torch.float32, device=None
) -> torch.Tensor:
    """Transmission (0..1) of a centred ``width`` × ``height`` rectangle (metres), exact cell areas.

    Args:
        shape: (ny, nx) samples. pitch: sample spacing, metres.
        width: extent along x, metres. height: extent along y, metres.
    """
    ny, nx = _check_shape(shape)
    check_positive("pitch", pitch)
    check_positive("width", width)
    check_positive("height", height)
    fy = _interval_overlap(coordinates(ny, pitch, device=device), pitch, height / 2)
    fx = _interval_overlap(coordinates(nx, pitch, device=device), pitch, width / 2)
    return (fy.reshape(-1, 1) * fx.reshape(1, -1)).to(dtype)


def lens_phase(
    shape: Sequence[int],
    *,
    pitch: float,
    wavelength: float | Sequence[float],
    focal_length: float,
    dtype=torch.float32,
    device=None,
) -> torch.Tensor:
    r"""Phase (radians) of an ideal, aberration-free thin lens for normal incidence.

    .. math:: \phi(r) = -\frac{2\pi}{\lambda}\left(\sqrt{r^2 + f^2} - f\right)

    (hyperbolic, so a plane wave focuses to a diffraction-limited spot at distance f even at
    high NA; reduces to :math:`-\pi r^2/(\lambda f)` paraxially).

    Args:
        shape: (ny, nx). pitch: metres. wavelength: metres, scalar or a sequence of C values
            (then the result is (C, ny, nx)). focal_length: metres (negative: diverging lens).

    Returns:
        Unwrapped phase, computed in float64 and cast to ``dtype``.
    """
    ny, nx = _check_shape(shape)
    check_positive("pitch", pitch)
    if not isinstance(focal_length, int | float) or not math.isfinite(focal_length) or focal_length == 0:
        raise OpticsInputError(f"focal_length must be a finite, non-zero number of metres, got {focal_length!r}.")
    wavelengths = torch.as_tensor(wavelength, dtype=torch.float64, device=device)
    if not bool(torch.isfinite(wavelengths).all()) or bool((wavelengths <= 0).any()):
        raise OpticsInputError(f"wavelength must be finite and positive (metres), got {wavelength!r}.")
    y, x = meshgrid((ny, nx), pitch, device=device)
    sag = torch.sign(torch.tensor(float(focal_length))) * (
        torch.sqrt(x**2 + y**2 + focal_length**2) - abs(focal_length)
    )
    if wavelengths.dim() > 0:
        wavelengths = wavelengths.reshape(-1, 1, 1)
    return (-2 * math.pi / wavelengths * sag).to(dtype)


def linear_phase(
    shape: Sequence[int],
    *,
    pitch: float,
    wavelength: float,
    angle_y: float = 0.0,
    angle_x: float = 0.0,
    dtype=torch.float32,
    device=None,
) -> torch.Tensor:
    """Phase (radians) of a prism tilting a normal beam by ``angle_y``/``angle_x`` (radians).

    A positive angle steers light toward +y / +x (growing row / column index).

    Args:
        shape: (ny, nx). pitch: metres. wavelength: metres. angle_y, angle_x: radians.
    """
    ny, nx = _check_shape(shape)
    check_positive("pitch", pitch)
    check_positive("wavelength", wavelength)
    y, x = meshgrid((ny, nx), pitch, device=device)
    k = 2 * math.pi / wavelength
    return (k * (math.sin(angle_y) * y + math.sin(angle_x) * x)).to(dtype)
