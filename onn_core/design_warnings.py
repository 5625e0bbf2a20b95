"""What is questionable about a buildable design, in the designer's terms: :class:`DesignWarning` s.

A :class:`~onn_core.design.Design` collects them on construction (``design.warnings``); the
Design page, ``python -m onn_core design check`` and the reports show them. Each names the
parameters involved, what is questionable at which wavelength, and what to change if it matters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .units import format_length

if TYPE_CHECKING:
    from .design import Design

Severity = Literal["info", "warning"]

# Above this many samples per side, simulating one sub-optic (2× padded, complex64) is heavy.
LARGE_GRID_SAMPLES = 8192


@dataclass(frozen=True)
class DesignWarning:
    """A questionable but buildable aspect of a design, structured for the UI.

    Attributes:
        code: stable identifier (e.g. ``"psf_undersampled"``).
        severity: "warning" (likely to hurt results) or "info" (worth knowing).
        parameters: design fields involved.
        message: what is questionable, in the designer's units.
        hint: what to change if it matters.
    """

    code: str
    severity: Severity
    parameters: tuple[str, ...]
    message: str
    hint: str

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "parameters": list(self.parameters)}



def design_warnings(design: Design) -> Iterator[DesignWarning]:
    """Every warning that applies to ``design`` (per wavelength first, then layout and simulation).

    A per-wavelength warning that holds at several wavelengths is said once: the figures of its
    gravest case (else the first listed wavelength), with the other wavelengths named."""
    merged: dict[str, list[tuple[float, DesignWarning]]] = {}
    for wavelength, warning in _per_wavelength_warnings(design):
        merged.setdefault(warning.code, []).append((wavelength, warning))
    for same in merged.values():
        if len(same) == 1:
            yield same[0][1]
            continue
        # The gravest case speaks (its "expected" note must not cover a wavelength where it is not).
        named, first = next(((w, x) for w, x in same if x.severity == "warning"), same[0])
        others = [format_length(wavelength) for wavelength, _ in same if wavelength != named]
        yield dataclasses.replace(first, message=f"{first.message} The same holds at {_and_list(others)}.")
    yield from _layout_warnings(design)


def _and_list(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _per_wavelength_warnings(design: Design) -> Iterator[tuple[float, DesignWarning]]:
    pitch = design.meta_atom_pitch
    for row in design.per_wavelength():
        wavelength = row["wavelength_m"]
        lam = format_length(wavelength)
        if row["nyquist_q"] < 2:
            resolved = design.tap_pitch >= 2 * row["airy_radius_m"]
            yield wavelength, DesignWarning(
                "psf_undersampled",
                "info" if resolved else "warning",
                ("sensor_pixel_pitch", "sensor_distance", "kernel_size"),
                f"At {lam} the sensor samples a diffraction-limited spot at Q = λ·F#/p = "
                f"{row['nyquist_q']:.2f} < 2: pixels of {format_length(design.sensor_pixel_pitch)} are larger "
                f"than λ·F#/2 = {format_length(wavelength * design.f_number / 2)}, the Nyquist pitch of the "
                f"diffraction-limited PSF (Airy radius {format_length(row['airy_radius_m'])}), so PSF detail finer "
                "than a pixel is integrated away."
                + (
                    " Kernels are defined on taps of "
                    f"{format_length(design.tap_pitch)}, well above the spot, so this is expected."
                    if resolved
                    else ""
                ),
                "Q ≥ 2 needs a smaller pixel pitch, a longer distance or a smaller kernel aperture.",
            )
        if design.tap_pitch < row["diffraction_fwhm_m"]:
            yield wavelength, DesignWarning(
                "kernel_below_diffraction_limit",
                "warning",
                ("sensor_pixels_per_tap", "kernel_size", "sensor_distance"),
                f"At {lam} one kernel tap ({format_length(design.tap_pitch)}) is smaller than the diffraction-"
                f"limited spot (FWHM {format_length(row['diffraction_fwhm_m'])}): neighbouring taps cannot be "
                "set independently.",
                "use more sensor pixels per tap, a larger kernel aperture or a shorter distance.",
            )
        if design.required_deflection_deg > row["max_deflection_deg"]:
            yield wavelength, DesignWarning(
                "phase_aliasing",
                "warning",
                ("meta_atom_pitch", "sensor_distance", "kernel_taps"),
                f"At {lam} a {format_length(pitch)} lattice can steer light by at most "
                f"{row['max_deflection_deg']:.1f}°, but reaching the kernel's edge from the aperture's edge "
                f"needs {design.required_deflection_deg:.1f}°: the phase profile would alias.",
                "reduce the meta-atom pitch, increase the sensor distance, or use fewer/smaller taps.",
            )
        if pitch < wavelength / 2:
            yield wavelength, DesignWarning(
                "evanescent_sampling",
                "info",
                ("meta_atom_pitch",),
                f"At {lam} the pitch {format_length(pitch)} is below λ/2: the highest spatial frequencies "
                "of the simulation grid are evanescent and do not reach the sensor (handled correctly, "
                "but those samples cost time without adding detail).",
                f"a pitch up to {format_length(wavelength / 2)} simulates the same propagating light.",
            )
        if pitch >= wavelength:
            yield wavelength, DesignWarning(
                "diffraction_orders",
                "warning",
                ("meta_atom_pitch",),
                f"At {lam} the lattice pitch {format_length(pitch)} is not sub-wavelength: the metasurface "
                "diffracts into higher orders, which the local-periodic meta-atom model ignores.",
                f"use a pitch below {format_length(wavelength)}.",
            )


def _layout_warnings(design: Design) -> Iterator[DesignWarning]:
    if design.feature_map_extent > design.sub_optic_pitch:
        yield DesignWarning(
            "feature_map_crosstalk",
            "warning",
            ("kernel_size", "kernel_spacing", "input_height", "input_width"),
            f"One feature map spans {format_length(design.feature_map_extent)} on the sensor but sub-optics are "
            f"only {format_length(design.sub_optic_pitch)} apart: neighbouring captures overlap.",
            "increase the kernel size or spacing, or use fewer sensor pixels per tap / a smaller input.",
        )
    unused = design.sub_optic_count - design.kernel_count * design.sub_optics_per_kernel
    if unused:
        yield DesignWarning(
            "unused_sub_optic",
            "info",
            ("metasurface_height", "metasurface_width"),
            f"{unused} sub-optic is left unused: signed kernels take sub-optics in pairs.",
            "adjust the metasurface size or kernel size for an even count, if the area matters.",
        )
    if design.meta_atoms_per_sub_optic > LARGE_GRID_SAMPLES:
        n = 2 * design.meta_atoms_per_sub_optic
        yield DesignWarning(
            "large_simulation_grid",
            "warning",
            ("kernel_size", "meta_atom_pitch"),
            f"Simulating one sub-optic at one sample per meta-atom needs a {n} × {n} padded grid "
            f"(≈{n * n * 8 / 2**30:.1f} GiB per complex64 field).",
            "reduce the kernel size or simulate on a coarser grid.",
        )
