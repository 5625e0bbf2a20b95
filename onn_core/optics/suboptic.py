"""One sub-optic's kernel: a meta-atom radius map → its intensity PSF integrated onto kernel taps.

The chain (scalar, local-periodic approximation: each meta-atom acts as the infinite array of
itself, so neighbour coupling is ignored, as in the method):

    t(r)·e^{iφ(r)} per phase pixel → band-limited angular spectrum over the sensor distance
    → |E|² → (optional blur) → power on each tap of the kernel window centred on the axis.

The result is the *fraction of the power incident on the sub-optic* that lands on each tap, so
a kernel sums to its optical efficiency (≤ 1: light outside the window is lost). This is the
physics behind :class:`~onn_core.models.frontends.PhysicalFrontend` (trainable radii), inverse
design and fabrication-error simulation, kept as a pure function so all three share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import OpticsInputError
from .metasurface import MetaAtomTable
from .propagation import propagate, window_padding
from .psf import _overlap_matrix


def _gaussian_blur_matrix(n: int, sigma_samples: float, dtype, device) -> torch.Tensor:
    """(n, n) matrix of a Gaussian blur along one axis: entry (i, j) is the fraction of sample j's
    power landing on sample i (the Gaussian integrated over sample i, so a blur narrower than a
    sample is the identity and power is conserved away from the edges)."""
    position = torch.arange(n, dtype=torch.float64, device=device)
    offsets = position[:, None] - position[None, :]
    scale = sigma_samples * math.sqrt(2)
    weights = 0.5 * (torch.erf((offsets + 0.5) / scale) - torch.erf((offsets - 0.5) / scale))
    return weights.to(dtype)


def suboptic_padding(samples: int, *, phase_pixel: float, wavelengths: Sequence[float], distance: float,
                     window: float) -> int:  # fmt: skip
    """Zero padding that keeps a ``window``-wide (metres) region at the sensor free of aliasing."""
    return window_padding(samples, pitch=phase_pixel, wavelength=max(wavelengths), distance=distance, window=window)


def suboptic_kernel_taps(
    radius: torch.Tensor,
    *,
    table: MetaAtomTable,
    wavelengths: Sequence[float],
    phase_pixel: float,
    distance: float,
    tap_pitch: float,
    taps: int,
    padding: int | None = None,
    fields: torch.Tensor | None = None,
    blur_sigma: float = 0.0,
) -> torch.Tensor:
    """Kernel taps of sub-optics given their radius maps: (S, C, taps, taps), one channel per wavelength.

    Args:
        radius: pillar radii (S, n, n), metres, inside the table's range; one value per phase
            pixel (a block of identical meta-atoms).
        table: the meta-atom library (phase and transmission vs radius per wavelength).
        wavelengths: metres, one per output channel.
        phase_pixel: side of one phase pixel, metres.
        distance: metasurface-to-sensor distance, metres.
        tap_pitch: side of one kernel tap on the sensor, metres.
        taps: taps per side (odd: the window is centred on the sub-optic's axis).
        padding: zero samples per axis for the propagation (default: the window's alias-free
            padding, :func:`suboptic_padding`).
        fields: the complex transmission of every phase pixel (S, C, n, n), when it is not simply
            the table's response to ``radius`` (fabrication: the mean field of a block of
            pillars with their own radius and phase errors); ``radius`` then only sets the grid.
        blur_sigma: RMS width of a Gaussian blur of the sensor irradiance, metres (sensor
            cross-talk, defocus); 0 for none.

    Returns:
        Power fraction per tap (S, C, taps, taps) in [0, 1].
    """
    if radius.dim() != 3 or radius.shape[-1] != radius.shape[-2]:
        raise OpticsInputError(f"radius must be (sub-optics, n, n) metres; got shape {tuple(radius.shape)}.")
    if taps < 1 or taps % 2 != 1:
        raise OpticsInputError(f"taps must be odd and ≥ 1 so the window has a centre tap; got {taps}.")
    if blur_sigma < 0 or not math.isfinite(blur_sigma):
        raise OpticsInputError(f"blur_sigma must be a finite length ≥ 0 in metres; got {blur_sigma}.")
    samples = radius.shape[-1]
    if padding is None:
        padding = suboptic_padding(samples, phase_pixel=phase_pixel, wavelengths=wavelengths, distance=distance,
                                   window=taps * tap_pitch)  # fmt: skip
    weight = _overlap_matrix(samples, phase_pixel, taps, tap_pitch, radius.dtype, radius.device)
    if blur_sigma > 0:
        # Blurring then integrating over a tap = integrating with a blurred tap window.
        weight = weight @ _gaussian_blur_matrix(samples, blur_sigma / phase_pixel, radius.dtype, radius.device)
    # Only the samples some tap integrates matter (the window is ~1/10 of the sub-optic per side):
    # the field is computed there alone, and the rest of the sensor plane never is.
    used = torch.nonzero(weight.abs().sum(dim=0) > 0).flatten()
    span = slice(int(used[0]), int(used[-1]) + 1) if used.numel() else slice(0, samples)
    weight = weight[:, span]
    per_wavelength = []
    if fields is not None and tuple(fields.shape) != (radius.shape[0], len(wavelengths), samples, samples):
        raise OpticsInputError(f"fields must be (sub-optics, wavelengths, n, n) = ({radius.shape[0]}, "
                               f"{len(wavelengths)}, {samples}, {samples}); got {tuple(fields.shape)}.")  # fmt: skip
    for channel, wavelength in enumerate(wavelengths):
        field = table.field(radius, wavelength) if fields is None else fields[:, channel]
        at_sensor = propagate(field, wavelength=wavelength, pitch=phase_pixel, distance=distance, padding=padding,
                              window=(span, span))  # fmt: skip
        # Irradiance per m² as a fraction of the power incident on the sub-optic (n² unit samples).
        irradiance = (at_sensor.real**2 + at_sensor.imag**2) / (samples**2 * phase_pixel**2)
        per_wavelength.append(weight @ irradiance @ weight.T)
    return torch.stack(per_wavelength, dim=1)
