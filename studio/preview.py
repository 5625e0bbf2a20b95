"""Previews of one sub-optic: its lens PSF and MTF beside the closed forms, and a kernel realised.

A sub-optic is a k × k square aperture; as an ideal lens focusing on the sensor at distance z it
has the PSF sinc²(kx/λz)·sinc²(ky/λz) and, along x, the MTF 1 − ν/ν_c with ν_c = k/(λz). The
preview computes both numerically with the optics core (lens Fourier transform of the aperture,
pixel integration onto the sensor) so the page shows the simulation *and* the reference.

:func:`kernel_preview` realises a chosen non-negative kernel (one capture) on the design's
metasurface the way inverse design starts: a multi-focus hologram phase, the meta-atom radii that
give it, and the tap-integrated PSF they produce — target against realised, with the phase and
radius maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from onn_core.design import Design
from onn_core.errors import DesignError
from onn_core.optics import analytic, intensity_psf, lens_fourier, mtf, pixel_integrate, rectangular_aperture
from onn_core.optics.grids import coordinates
from onn_core.units import format_length

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


# Kernels a designer can try before any training (non-negative: one capture, as a K⁺ half).
PREVIEW_KERNELS = {
    "centre tap (a lens)": "lens",
    "Gaussian blur (σ = 1 tap)": "gaussian",
    "horizontal edge (upper half)": "edge",
    "diagonal line": "diagonal",
    "off-axis tap (corner)": "corner",
}


def preview_kernel(name: str, taps: int) -> np.ndarray:
    """A non-negative ``taps`` × ``taps`` kernel from :data:`PREVIEW_KERNELS`' values, unit sum."""
    y, x = np.mgrid[:taps, :taps] - taps // 2
    shapes = {
        "lens": (x == 0) & (y == 0),
        "gaussian": np.exp(-(x**2 + y**2) / 2.0),
        "edge": (y < 0) * np.exp(-(x**2) / (2.0 * max(taps / 4, 1) ** 2)),
        "diagonal": np.abs(x - y) == 0,
        "corner": (x == taps // 2) & (y == -(taps // 2)),
    }
    if name not in shapes:
        raise DesignError("kernel", name, f"is not a preview kernel; choose one of {', '.join(shapes)}.")
    kernel = shapes[name].astype(float)
    return kernel / kernel.sum()


MAX_PREVIEW_SAMPLES = 1600  # phase pixels per side of one sub-optic; the default design has 802


@dataclass(frozen=True)
class KernelPreview:
    """A kernel realised by one sub-optic (SI units).

    Attributes:
        target: the kernel (t, t), unit sum. realised: power fraction per tap (t, t) of the light
            on the sub-optic. correlation: of realised with target. efficiency: realised.sum().
        tap_pitch, phase_pixel, wavelength: metres. samples: phase pixels per side.
        phase: radians in [−π, π), radius: the meta-atom parameter (metres), both over the
            central ``crop`` × ``crop`` phase pixels at full resolution (display; no aliasing).
        parameter: what ``radius`` holds ("diameter" for the shipped SiN table, or "radius").
    """

    target: np.ndarray
    realised: np.ndarray
    correlation: float
    efficiency: float
    tap_pitch: float
    phase_pixel: float
    wavelength: float
    samples: int
    phase: np.ndarray
    radius: np.ndarray
    parameter: str


def kernel_preview(design: Design, kernel: np.ndarray, wavelength: float, *, crop: int = 160) -> KernelPreview:
    """Realise a non-negative ``kernel`` (t, t) with one sub-optic of ``design`` at ``wavelength`` (metres).

    The multi-focus hologram start of inverse design (no optimisation: about a second for the
    default design); the Fabricate page's inverse design refines it.
    """
    from onn_core.fabrication.inverse_design import kernel_correlation, multifocus_phase
    from onn_core.models.frontends import default_phase_pixel
    from onn_core.optics.metasurface import default_meta_atom_table
    from onn_core.optics.suboptic import suboptic_kernel_taps

    taps = design.kernel_taps
    if kernel.shape != (taps, taps) or (kernel < 0).any() or not kernel.any():
        raise DesignError("kernel", kernel.shape, f"must be a non-negative, non-zero {taps} × {taps} array.")
    table = default_meta_atom_table()
    phase_pixel = default_phase_pixel(design)
    samples = max(1, round(design.kernel_size / phase_pixel))
    if samples > MAX_PREVIEW_SAMPLES:  # the hologram sums one lens field per tap over samples²: seconds grow fast
        raise DesignError(
            "kernel_size", design.kernel_size,
            f"one sub-optic is {samples} × {samples} phase pixels of {format_length(phase_pixel)}; the interactive "
            f"preview stops at {MAX_PREVIEW_SAMPLES}² (about two seconds).",
            "preview a smaller kernel aperture, or train a run and inverse-design it as a background job (Fabricate).",
        )  # fmt: skip
    target = torch.as_tensor(kernel / kernel.sum(), dtype=torch.float64)[None]
    phase = multifocus_phase(target, samples=samples, phase_pixel=phase_pixel, tap_pitch=design.tap_pitch,
                             wavelength=wavelength, distance=design.sensor_distance,
                             generator=torch.Generator().manual_seed(0))  # fmt: skip
    radius = table.radius_for_phase(phase, wavelength)
    realised = suboptic_kernel_taps(radius, table=table, wavelengths=(wavelength,), phase_pixel=phase_pixel,
                                    distance=design.sensor_distance, tap_pitch=design.tap_pitch, taps=taps)  # fmt: skip
    realised = realised[0, 0].numpy()
    wanted = target[0].numpy()
    correlation = kernel_correlation(realised, wanted)
    keep = min(crop, samples)
    start = (samples - keep) // 2
    window = slice(start, start + keep)
    return KernelPreview(
        target=wanted, realised=realised, correlation=correlation, efficiency=float(realised.sum()),
        tap_pitch=design.tap_pitch, phase_pixel=phase_pixel, wavelength=wavelength, samples=samples,
        phase=phase[0, window, window].numpy(), radius=radius[0, window, window].numpy(),
        parameter=table.parameter.removesuffix("_m"),
    )  # fmt: skip
