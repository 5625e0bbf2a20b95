"""Sampling grids.

Convention used throughout the optics core: arrays are indexed ``[..., y, x]``; the sample at
index ``n // 2`` of an axis with ``n`` samples sits at coordinate 0, and coordinates grow with the
index. This matches ``torch.fft.fftshift``, so an on-axis focus lands on pixel ``(ny // 2, nx // 2)``.
"""

from __future__ import annotations

import torch


def coordinates(n: int, pitch: float, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Sample positions (metres) of an axis of ``n`` samples spaced ``pitch`` metres.

    Args:
        n: number of samples.
        pitch: sample spacing, metres.
    """
    return (torch.arange(n, dtype=dtype, device=device) - n // 2) * pitch


def meshgrid(shape: tuple[int, int], pitch: float, *, dtype=torch.float64, device=None):
    """(y, x) coordinate grids (metres) for an array of ``shape`` = (ny, nx) at ``pitch`` metres."""
    y = coordinates(shape[0], pitch, dtype=dtype, device=device)
    x = coordinates(shape[1], pitch, dtype=dtype, device=device)
    return torch.meshgrid(y, x, indexing="ij")


def frequency_grid(n: int, pitch: float, *, dtype=torch.float64, device=None) -> torch.Tensor:
    """Spatial frequencies (cycles/metre) of an ``n``-point DFT at ``pitch`` metres, FFT order.

    The spacing is exactly 1/(n·pitch) — ``fftfreq`` — never an endpoint-inclusive linspace,
    which would put every frequency slightly off the DFT bins.
    """
    return torch.fft.fftfreq(n, d=pitch, dtype=dtype, device=device)


def fourier_plane_pitch(wavelength: float, focal_length: float, n: int, pitch: float) -> float:
    """Sample spacing (metres) in the back focal plane of a lens: λf / (n·Δx).

    Args:
        wavelength: metres. focal_length: metres. n: samples of the (padded) input axis.
        pitch: input sample spacing, metres.
    """
    return wavelength * focal_length / (n * pitch)
