"""The design object: one validated, immutable description of a hybrid ONN's optical frontend.

It flows unchanged from the app's sidebar to the estimator, the trainer, the job store and the
exporters. All lengths are SI metres. Constructing a ``Design`` validates it: a design that
cannot be built raises :class:`~onn_core.errors.DesignError` naming the parameter, its value and
the fix; a design that can be built but is questionable carries :class:`DesignWarning` s.

Geometry (the method's stage 1): sub-optics of side k sit on a symmetric grid on an h × w
metasurface with at least d between neighbouring edges, so

    n_rows = ⌊(h + d) / (k + d)⌋,  n_cols = ⌊(w + d) / (k + d)⌋.

With ``signed_kernels`` each signed kernel K = K⁺ − K⁻ uses two sub-optics (two non-negative
intensity PSFs whose captures are subtracted digitally), so n_kernels = ⌊n_rows·n_cols / 2⌋.

Each kernel is ``kernel_taps`` × ``kernel_taps`` taps on the sensor; one tap spans
``sensor_pixels_per_tap`` sensor pixels per side (the reference optics: 7 × 7 taps of 2 × 2
pixels of 5.86 µm). The input image is shown at one tap per input pixel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

from .design_warnings import DesignWarning, design_warnings
from .errors import DesignError
from .optics.formulas import airy_radius, fresnel_number, max_deflection_angle, nyquist_factor
from .units import format_length, format_value

SCHEMA = "onn-design/1"

# Plausible ranges (metres unless noted). They catch unit slips — 532 typed where 532e-9 was
# meant — with a message that says which unit the field expects.
LENGTH_RANGES: dict[str, tuple[float, float]] = {
    "metasurface_height": (1e-6, 0.5),
    "metasurface_width": (1e-6, 0.5),
    "kernel_size": (100e-9, 0.5),
    "kernel_spacing": (0.0, 0.5),
    "meta_atom_pitch": (10e-9, 100e-6),
    "sensor_distance": (1e-6, 1.0),
    "sensor_pixel_pitch": (100e-9, 1e-3),
}
WAVELENGTH_RANGE = (100e-9, 20e-6)
INT_RANGES: dict[str, tuple[int, int]] = {
    "sensor_bit_depth": (1, 16),
    "sensor_pixels_per_tap": (1, 64),
    "kernel_taps": (1, 63),
    "input_height": (1, 4096),
    "input_width": (1, 4096),
    "input_channels": (1, 16),
}
# A sub-optic narrower than this many meta-atoms cannot shape a PSF.
MIN_META_ATOMS_PER_SIDE = 8


@dataclass(frozen=True)
class SubOptic:
    """One sub-optic on the metasurface.

    Attributes:
        row, col: grid position. centre_y, centre_x: centre on the metasurface, metres
            (origin at the metasurface centre). kernel: index of the signed kernel it realises,
            or None if unused. sign: +1 (K⁺), −1 (K⁻), or 0 (unsigned kernel / unused).
    """

    row: int
    col: int
    centre_y: float
    centre_x: float
    kernel: int | None
    sign: int


@dataclass(frozen=True)
class Design:
    """A hybrid ONN frontend. Lengths in metres.

    Attributes:
        metasurface_height: h, metres.
        metasurface_width: w, metres.
        kernel_size: k, side of one sub-optic (one kernel's aperture) on the metasurface, metres.
        kernel_spacing: d, minimum edge-to-edge gap between sub-optics, metres.
        meta_atom_pitch: lattice period of the meta-atoms, metres.
        wavelengths: illumination wavelength(s), metres; one per input channel when RGB.
        sensor_distance: metasurface-to-sensor distance, metres.
        sensor_pixel_pitch: sensor pixel pitch, metres.
        sensor_bit_depth: ADC bits.
        sensor_pixels_per_tap: sensor pixels spanned by one kernel tap, per side.
        kernel_taps: kernel taps per side (odd, so the kernel has a centre tap).
        input_height, input_width: input image size, pixels (one tap per input pixel).
        input_channels: 1 (monochrome) or one per wavelength.
        signed_kernels: realise signed kernels as K⁺/K⁻ sub-optic pairs subtracted digitally.
    """

    metasurface_height: float = 4.0e-3
    metasurface_width: float = 4.0e-3
    kernel_size: float = 0.94e-3
    kernel_spacing: float = 60e-6
    meta_atom_pitch: float = 293e-9
    wavelengths: tuple[float, ...] = (532e-9,)
    sensor_distance: float = 2.4e-3
    sensor_pixel_pitch: float = 5.86e-6
    sensor_bit_depth: int = 8
    sensor_pixels_per_tap: int = 2
    kernel_taps: int = 7
    input_height: int = 28
    input_width: int = 28
    input_channels: int = 1
    signed_kernels: bool = True
    _warnings: tuple[DesignWarning, ...] = field(default=(), init=False, repr=False, compare=False)

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        for name, (low, high) in LENGTH_RANGES.items():
            self._coerce_length(name, low, high)
        self._coerce_wavelengths()
        for name, (low, high) in INT_RANGES.items():
            self._coerce_int(name, low, high)
        if not isinstance(self.signed_kernels, bool):
            raise DesignError("signed_kernels", self.signed_kernels, "must be true or false.")
        self._check_buildable()
        object.__setattr__(self, "_warnings", tuple(design_warnings(self)))

    def _coerce_length(self, name: str, low: float, high: float) -> None:
        value = getattr(self, name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DesignError(name, value, f"must be a number of metres, got {type(value).__name__} {value!r}.")
        value = float(value)
        if not math.isfinite(value):
            raise DesignError(name, value, f"must be finite, got {value}.", "enter a length in metres.")
        if value < 0 or (value == 0 and low > 0):
            raise DesignError(name, value, f"must be positive, got {format_value(value, 'm')}.")
        if not low <= value <= high:
            raise DesignError(
                name,
                value,
                f"{format_value(value, 'm')} is outside the plausible range "
                f"{format_length(low)}–{format_length(high)}.",
                "values are in metres (e.g. 2.4 mm = 0.0024).",
            )
        object.__setattr__(self, name, value)

    def _coerce_wavelengths(self) -> None:
        values = self.wavelengths
        if isinstance(values, int | float) and not isinstance(values, bool):
            values = (values,)
        if not isinstance(values, tuple | list) or len(values) == 0:
            raise DesignError("wavelengths", values, "must be a non-empty list of wavelengths in metres.")
        cleaned = []
        low, high = WAVELENGTH_RANGE
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise DesignError(
                    "wavelengths", values, f"every wavelength must be a finite number of metres, got {value!r}."
                )
            if not low <= value <= high:
                raise DesignError(
                    "wavelengths",
                    values,
                    f"{format_value(float(value), 'm')} is outside {format_length(low)}–{format_length(high)}.",
                    "wavelengths are in metres (532 nm = 5.32e-7).",
                )
            cleaned.append(float(value))
        if len(set(cleaned)) != len(cleaned):
            raise DesignError("wavelengths", values, "lists the same wavelength twice.", "remove the duplicate.")
        object.__setattr__(self, "wavelengths", tuple(cleaned))

    def _coerce_int(self, name: str, low: int, high: int) -> None:
        value = getattr(self, name)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise DesignError(name, value, f"must be a whole number, got {value!r}.")
        if not low <= value <= high:
            raise DesignError(name, value, f"must be between {low} and {high}, got {value}.")
        object.__setattr__(self, name, value)

    def _check_buildable(self) -> None:
        h, w, k, d = self.metasurface_height, self.metasurface_width, self.kernel_size, self.kernel_spacing
        for side_name, side in (("metasurface_height", h), ("metasurface_width", w)):
            if k > side:
                raise DesignError(
                    "kernel_size",
                    k,
                    f"a kernel of {format_length(k)} does not fit a metasurface {side_name.split('_')[1]} "
                    f"of {format_length(side)}.",
                    f"make the kernel at most {format_length(side)} or enlarge the metasurface.",
                )
        if self.signed_kernels and self.sub_optic_count < 2:
            raise DesignError(
                "kernel_size",
                k,
                f"only one sub-optic of {format_length(k)} (+ spacing {format_length(d)}) fits on "
                f"{format_length(h)} × {format_length(w)}, and a signed kernel needs two (K⁺ and K⁻).",
                f"shrink the kernel below {format_length(max(h, w) / 2 - d / 2)}, enlarge the metasurface, "
                "or turn off signed kernels.",
            )
        atoms = k / self.meta_atom_pitch
        if atoms < MIN_META_ATOMS_PER_SIDE:
            raise DesignError(
                "meta_atom_pitch",
                self.meta_atom_pitch,
                f"a {format_length(k)} kernel holds only {atoms:.1f} meta-atoms of pitch "
                f"{format_length(self.meta_atom_pitch)} per side; at least {MIN_META_ATOMS_PER_SIDE} are needed "
                "to shape a PSF.",
                f"use a pitch below {format_length(k / MIN_META_ATOMS_PER_SIDE)} or a larger kernel.",
            )
        if self.kernel_taps % 2 == 0:
            raise DesignError(
                "kernel_taps",
                self.kernel_taps,
                "must be odd so the kernel has a centre tap.",
                f"use {self.kernel_taps - 1} or {self.kernel_taps + 1}.",
            )
        if self.input_channels not in (1, len(self.wavelengths)):
            raise DesignError(
                "input_channels",
                self.input_channels,
                f"{self.input_channels} channels but {len(self.wavelengths)} wavelength(s): each colour channel "
                "is imaged at its own wavelength.",
                f"use 1 channel (monochrome) or list {self.input_channels} wavelengths.",
            )

    # ------------------------------------------------------------------ layout
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images the student reads (pixels)."""
        return (self.input_channels, self.input_height, self.input_width)

    @property
    def n_rows(self) -> int:
        """Sub-optic rows: ⌊(h + d)/(k + d)⌋."""
        return _fit_count(self.metasurface_height, self.kernel_size, self.kernel_spacing)

    @property
    def n_cols(self) -> int:
        """Sub-optic columns: ⌊(w + d)/(k + d)⌋."""
        return _fit_count(self.metasurface_width, self.kernel_size, self.kernel_spacing)

    @property
    def sub_optic_count(self) -> int:
        return self.n_rows * self.n_cols

    @property
    def sub_optics_per_kernel(self) -> int:
        return 2 if self.signed_kernels else 1

    @property
    def kernel_count(self) -> int:
        """Kernels the frontend realises (signed pairs count once)."""
        return self.sub_optic_count // self.sub_optics_per_kernel

    @property
    def sub_optic_pitch(self) -> float:
        """Centre-to-centre distance of neighbouring sub-optics, metres (k + d)."""
        return self.kernel_size + self.kernel_spacing

    def sub_optics(self) -> list[SubOptic]:
        """Every sub-optic with its centre (metres) and the kernel/sign it realises.

        The grid is centred on the metasurface. K⁺ and K⁻ of one kernel sit side by side in
        reading order, so they see nearly the same field angles.
        """
        pitch = self.sub_optic_pitch
        used = self.kernel_count * self.sub_optics_per_kernel
        result = []
        for index in range(self.sub_optic_count):
            row, col = divmod(index, self.n_cols)
            centre_y = (row - (self.n_rows - 1) / 2) * pitch
            centre_x = (col - (self.n_cols - 1) / 2) * pitch
            if index >= used:
                kernel, sign = None, 0
            elif self.signed_kernels:
                kernel, sign = index // 2, (1 if index % 2 == 0 else -1)
            else:
                kernel, sign = index, 0
            result.append(SubOptic(row, col, centre_y, centre_x, kernel, sign))
        return result

    # ------------------------------------------------------------------ derived optics
    @property
    def tap_pitch(self) -> float:
        """Size of one kernel tap on the sensor, metres."""
        return self.sensor_pixels_per_tap * self.sensor_pixel_pitch

    @property
    def kernel_size_pixels(self) -> int:
        """Kernel support on the sensor, in sensor pixels per side."""
        return self.kernel_taps * self.sensor_pixels_per_tap

    @property
    def kernel_support(self) -> float:
        """Kernel support on the sensor, metres per side."""
        return self.kernel_taps * self.tap_pitch

    @property
    def feature_map_extent(self) -> float:
        """Side of one sub-optic's full convolution output on the sensor, metres."""
        return (max(self.input_height, self.input_width) + self.kernel_taps - 1) * self.tap_pitch

    @property
    def f_number(self) -> float:
        """Working F-number of one sub-optic: distance / kernel size."""
        return self.sensor_distance / self.kernel_size

    @property
    def numerical_aperture(self) -> float:
        """Image-side NA of one sub-optic: sin(atan(k / 2z))."""
        return math.sin(math.atan(self.kernel_size / (2 * self.sensor_distance)))

    @property
    def meta_atoms_per_sub_optic(self) -> int:
        """Meta-atoms across one sub-optic (the simulation grid per side at one atom per sample)."""
        return round(self.kernel_size / self.meta_atom_pitch)

    def per_wavelength(self) -> list[dict[str, float]]:
        """Wavelength-dependent quantities (SI units), one dict per wavelength."""
        rows = []
        for wavelength in self.wavelengths:
            rows.append(
                {
                    "wavelength_m": wavelength,
                    "airy_radius_m": airy_radius(wavelength, self.f_number),
                    "diffraction_fwhm_m": 1.029 * wavelength * self.f_number,
                    "fresnel_number": fresnel_number(self.kernel_size / 2, wavelength, self.sensor_distance),
                    "nyquist_q": nyquist_factor(wavelength, self.f_number, self.sensor_pixel_pitch),
                    "max_deflection_deg": math.degrees(max_deflection_angle(wavelength, self.meta_atom_pitch)),
                    "cutoff_frequency_per_m": 1.0 / (wavelength * self.f_number),
                }
            )
        return rows

    @property
    def required_deflection_deg(self) -> float:
        """Steepest ray a sub-optic must bend light to: aperture edge → far edge of its kernel."""
        reach = self.kernel_size / 2 + self.kernel_support / 2
        return math.degrees(math.atan(reach / self.sensor_distance))

    # ------------------------------------------------------------------ warnings
    @property
    def warnings(self) -> tuple[DesignWarning, ...]:
        return self._warnings

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Field values (SI units), JSON-ready, with a schema tag."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        values["wavelengths"] = list(self.wavelengths)
        return {"schema": SCHEMA, "units": "SI: lengths in metres", **values}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Design:
        """Build from a dict (e.g. parsed JSON); missing fields take their defaults."""
        if not isinstance(data, dict):
            raise DesignError("design", data, f"must be a JSON object, got {type(data).__name__}.")
        data = dict(data)
        schema = data.pop("schema", SCHEMA)
        data.pop("units", None)
        if schema != SCHEMA:
            raise DesignError("schema", schema, f"unknown design schema; this version reads {SCHEMA!r}.")
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DesignError(
                unknown[0], data[unknown[0]], "is not a design field.", f"known fields: {', '.join(sorted(known))}."
            )
        if isinstance(data.get("wavelengths"), list):
            data["wavelengths"] = tuple(data["wavelengths"])
        return cls(**data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Design:
        """A design from its JSON (text, or UTF-8 bytes as uploaded), at most 1 MiB and 32 levels deep."""
        from .user_input import parse_json

        def refuse(problem: str, hint: str) -> DesignError:
            return DesignError("design", "the JSON given", problem, hint)

        return cls.from_dict(parse_json(text, refuse))

    @property
    def design_id(self) -> str:
        """Short content hash: equal designs share it (cache keys, job configs, URLs)."""
        return hashlib.sha256(self.to_json(indent=None).encode()).hexdigest()[:12]

    def replace(self, **changes: Any) -> Design:
        """A copy with some fields changed, validated again."""
        return dataclasses.replace(self, **changes)

    def report(self) -> dict[str, Any]:
        """Derived quantities and warnings, JSON-ready (SI units; keys name the unit)."""
        return {
            "design_id": self.design_id,
            "layout": {
                "n_rows": self.n_rows,
                "n_cols": self.n_cols,
                "sub_optics": self.sub_optic_count,
                "sub_optics_per_kernel": self.sub_optics_per_kernel,
                "kernels": self.kernel_count,
                "sub_optic_pitch_m": self.sub_optic_pitch,
            },
            "kernel": {
                "taps": self.kernel_taps,
                "tap_pitch_m": self.tap_pitch,
                "size_sensor_pixels": self.kernel_size_pixels,
                "support_m": self.kernel_support,
                "feature_map_extent_m": self.feature_map_extent,
            },
            "optics": {
                "f_number": self.f_number,
                "numerical_aperture": self.numerical_aperture,
                "required_deflection_deg": self.required_deflection_deg,
                "meta_atoms_per_sub_optic": self.meta_atoms_per_sub_optic,
                "per_wavelength": self.per_wavelength(),
            },
            "warnings": [w.to_dict() for w in self.warnings],
        }


def _fit_count(side: float, kernel: float, spacing: float) -> int:
    # A tiny relative tolerance keeps exact fits (e.g. 4 × 1 mm on 4 mm) from flooring down
    # through binary rounding of the decimal inputs.
    return math.floor((side + spacing) / (kernel + spacing) * (1 + 1e-12))


DEFAULT_DESIGN = Design()
