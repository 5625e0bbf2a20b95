"""Intensity PSFs, their transfer functions, and integration onto sensor pixels."""

from __future__ import annotations

import torch

from ..errors import OpticsInputError
from ._validate import check_field, check_positive, check_real_image
from .formulas import airy_radius, max_deflection_angle, nyquist_factor  # noqa: F401 (their home was here)
from .grids import coordinates


def intensity_psf(field: torch.Tensor, *, normalise: bool = True) -> torch.Tensor:
    """Incoherent intensity PSF |E|² of a coherent point-source response ``field``.

    With ``normalise`` each PSF sums to 1 over its last two axes (so a sensor grid built by
    :func:`pixel_integrate` also sums to 1 when it covers the PSF).
    """
    check_field(field)
    intensity = field.real**2 + field.imag**2
    return normalise_psf(intensity) if normalise else intensity


def normalise_psf(psf: torch.Tensor) -> torch.Tensor:
    """Scale each PSF (last two axes) to unit sum; an all-zero PSF raises."""
    check_real_image(psf, "psf")
    total = psf.sum(dim=(-2, -1), keepdim=True)
    if bool((total <= 0).any()):
        raise OpticsInputError("a PSF has no energy (sum ≤ 0): the aperture is closed or the field is empty.")
    return psf / total


def _overlap_matrix(n_in: int, pitch_in: float, n_out: int, pitch_out: float, dtype, device) -> torch.Tensor:
    """(n_out, n_in) lengths (metres) of overlap between output and input cells, both centred."""
    centres_in = coordinates(n_in, pitch_in, device=device)
    centres_out = coordinates(n_out, pitch_out, device=device)
    lower = torch.maximum(centres_out[:, None] - pitch_out / 2, centres_in[None, :] - pitch_in / 2)
    upper = torch.minimum(centres_out[:, None] + pitch_out / 2, centres_in[None, :] + pitch_in / 2)
    return torch.clamp(upper - lower, min=0).to(dtype)


def pixel_integrate(
    irradiance: torch.Tensor, *, pitch: float, pixel_pitch: float, sensor_shape: tuple[int, int]
) -> torch.Tensor:
    """Integrate irradiance sampled at ``pitch`` over the area of each sensor pixel.

    Output pixel (i, j) = ∫∫ I dA over that pixel, both grids centred on the optical axis; any
    pitch ratio (not only integers) is handled by exact cell-overlap areas. Energy is conserved:
    the output sums to Σ I·pitch² whenever the sensor covers the simulated region.

    Args:
        irradiance: real (..., ny, nx), e.g. W/m². pitch: simulation sample spacing, metres.
        pixel_pitch: sensor pixel pitch, metres. sensor_shape: (rows, cols) of sensor pixels.

    Returns:
        Real (..., rows, cols): power per pixel (irradiance unit × m²).
    """
    check_real_image(irradiance, "irradiance")
    check_positive("pitch", pitch)
    check_positive("pixel_pitch", pixel_pitch)
    rows, cols = sensor_shape
    ny, nx = irradiance.shape[-2:]
    weight_y = _overlap_matrix(ny, pitch, rows, pixel_pitch, irradiance.dtype, irradiance.device)
    weight_x = _overlap_matrix(nx, pitch, cols, pixel_pitch, irradiance.dtype, irradiance.device)
    return weight_y @ irradiance @ weight_x.T


def optical_transfer_function(psf: torch.Tensor, *, pitch: float) -> tuple[torch.Tensor, torch.Tensor]:
    """OTF of an intensity PSF, normalised to 1 at zero frequency, centred (fftshift order).

    Args:
        psf: real (..., n, n), centred at (n//2, n//2). pitch: PSF sample spacing, metres.

    Returns:
        (complex OTF (..., n, n); frequency axis in cycles/metre, centred, length n).
    """
    check_real_image(psf, "psf")
    check_positive("pitch", pitch)
    n = psf.shape[-1]
    if psf.shape[-2] != n:
        raise OpticsInputError("the PSF must be square to share one frequency axis.")
    spectrum = torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(psf, dim=(-2, -1))), dim=(-2, -1))
    dc = spectrum[..., n // 2, n // 2].unsqueeze(-1).unsqueeze(-1)
    frequencies = torch.fft.fftshift(torch.fft.fftfreq(n, d=pitch, dtype=torch.float64))
    return spectrum / dc, frequencies


def mtf(psf: torch.Tensor, *, pitch: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Modulation transfer function |OTF|, centred; returns (mtf, frequencies in cycles/metre)."""
    otf, frequencies = optical_transfer_function(psf, pitch=pitch)
    return otf.abs(), frequencies


def incoherent_cutoff(aperture: float, wavelength: float, distance: float) -> float:
    """Highest spatial frequency, cycles/metre on the sensor, that an intensity PSF can carry.

    The OTF is the pupil's autocorrelation scaled by λz, so a square aperture of side D at
    distance z passes |f_x|, |f_y| ≤ D/(λz) and nothing above, whatever phase it carries
    (Goodman, Introduction to Fourier Optics, §6.3). With F# = z/D this is 1/(λ·F#).

    Args:
        aperture: side of the (square) sub-optic aperture, metres. wavelength: metres.
        distance: aperture-to-sensor distance, metres.
    """
    for name, value in (("aperture", aperture), ("wavelength", wavelength), ("distance", distance)):
        check_positive(name, value)
    return aperture / (wavelength * distance)


def band_limit_projection(taps: int, tap_pitch: float, cutoff: float, dtype=torch.float64) -> torch.Tensor:
    """Orthogonal projector (taps², taps²) onto kernels whose spectrum lies within ``cutoff``.

    A kernel sampled on ``taps`` × ``taps`` taps of pitch ``tap_pitch`` has DFT frequencies
    m/(taps·tap_pitch); the projector keeps those with |f_x|, |f_y| ≤ cutoff (the square
    aperture's OTF support, :func:`incoherent_cutoff`) and removes the rest. It is separable,
    symmetric and idempotent, and the identity when the cutoff reaches the taps' Nyquist
    frequency 1/(2·tap_pitch). Apply as ``(P @ kernel.flatten()).view(taps, taps)``.

    Args:
        taps: kernel taps per side (odd). tap_pitch: metres. cutoff: cycles/metre.
    """
    if isinstance(taps, bool) or not isinstance(taps, int) or taps < 1 or taps % 2 == 0:
        raise OpticsInputError(f"taps must be an odd whole number ≥ 1, got {taps!r}.")
    check_positive("tap_pitch", tap_pitch)
    check_positive("cutoff", cutoff)
    frequencies = torch.fft.fftfreq(taps, d=tap_pitch, dtype=torch.float64)
    keep = (frequencies.abs() <= cutoff * (1 + 1e-12)).to(torch.complex128)
    dft = torch.fft.fft(torch.eye(taps, dtype=torch.complex128), dim=0)  # rows: frequencies
    one_axis = (dft.conj().T @ torch.diag(keep) @ dft).real / taps
    return torch.kron(one_axis, one_axis).to(dtype)
