"""Fabrication and capture errors: one seeded, composable, JSON-serialisable object in SI units.

The method's error model (its Eq. 10, reconstructed) is

    ỹ(i, j) = α·Σ_{m,n} a(i + m + β, j + n + β)·(k(m, n) + δ(m, n)) + ε(i, j):

brightness gain α, image–kernel misalignment β, kernel error δ and sensor noise ε. Here δ is
not only drawn per tap: it comes from where fabrication errs, the meta-atoms. Every term:

=====================  =========  ==================================================================
field                  unit       what it perturbs
=====================  =========  ==================================================================
radius_sigma           m          random radius error of each phase pixel's pillars (RMS)
radius_bias            m          systematic over- (+) or under-etch (−) of every pillar
radius_quantisation    m          the fab's radius grid (radii rounded to it; 0: continuous)
phase_sigma            rad        random phase error of each phase pixel (RMS; e.g. height error)
kernel_sigma           1          random error of each tap, × the capture's largest tap (Eq. 10's δ)
psf_blur               m          Gaussian blur of the sensor irradiance (RMS width): defocus, cross-talk
gain                   1          brightness gain α of the display / illumination
gain_sigma             1          random relative gain of each capture (sub-optic efficiency, sensor)
shift_y, shift_x       m          misalignment of the image against the kernels, at the sensor
shift_sigma            m          random misalignment of each capture (RMS per axis)
rotation               rad        rotation of the image against the kernels
read_noise             e⁻         RMS read noise per pixel (with full_well electrons at full scale)
shot_noise             —          photon shot noise
full_well              e⁻         electrons at full scale
bit_depth              bits       ADC resolution (None: no quantisation)
=====================  =========  ==================================================================

Radius and phase terms act on meta-atoms, so they need a metasurface (inverse design, or a run
trained with the physical frontend); the others act on kernels, images and the sensor. Draws
are reproducible from ``seed``; :meth:`ErrorModel.scaled` multiplies every error's magnitude
(accuracy-vs-error curves); :meth:`ErrorModel.combine` composes two models.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DesignError

SCHEMA = "onn-error-model/1"
MAX_FILE_BYTES = 64 * 1024

# Fields, their unit for messages, and a plausible upper bound that catches unit slips
# (5 typed where 5e-9 metres was meant).
_FIELDS: dict[str, tuple[str, float]] = {
    "radius_sigma": ("m", 1e-6),
    "radius_bias": ("m", 1e-6),
    "radius_quantisation": ("m", 1e-6),
    "phase_sigma": ("rad", 4 * math.pi),
    "kernel_sigma": ("× capture max", 10.0),
    "psf_blur": ("m", 1e-3),
    "gain": ("×", 100.0),
    "gain_sigma": ("×", 1.0),
    "shift_y": ("m", 1e-2),
    "shift_x": ("m", 1e-2),
    "shift_sigma": ("m", 1e-2),
    "rotation": ("rad", math.pi),
    "read_noise": ("e⁻", 1e6),
    "full_well": ("e⁻", 1e9),
}
_METASURFACE_TERMS = ("radius_sigma", "radius_bias", "radius_quantisation", "phase_sigma")
# Terms whose size scales with "how much error" (scaled() multiplies them; gain moves toward 1).
_MAGNITUDES = ("radius_sigma", "radius_bias", "phase_sigma", "kernel_sigma", "psf_blur", "gain_sigma", "shift_y",
               "shift_x", "shift_sigma", "rotation", "read_noise")  # fmt: skip


@dataclass(frozen=True)
class ErrorModel:
    """What fabrication and capture do to the optics; every field defaults to "no error".

    See the module docstring for each field's unit and meaning. ``seed`` fixes the random
    draws; Monte-Carlo studies vary it.
    """

    radius_sigma: float = 0.0
    radius_bias: float = 0.0
    radius_quantisation: float = 0.0
    phase_sigma: float = 0.0
    kernel_sigma: float = 0.0
    psf_blur: float = 0.0
    gain: float = 1.0
    gain_sigma: float = 0.0
    shift_y: float = 0.0
    shift_x: float = 0.0
    shift_sigma: float = 0.0
    rotation: float = 0.0
    read_noise: float = 0.0
    shot_noise: bool = False
    full_well: float = 10_000.0
    bit_depth: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name, (unit, bound) in _FIELDS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise DesignError(name, value, f"must be a finite number ({unit}).")
            signed = name in ("radius_bias", "shift_y", "shift_x", "rotation")
            if not signed and value < 0:
                raise DesignError(name, value, f"must be ≥ 0 ({unit}).")
            if abs(value) > bound:
                hint = f"it is in {unit}" + (f": 5 nm is {5e-9:g}" if unit == "m" and bound <= 1e-6 else "")
                raise DesignError(name, value, f"is implausibly large (limit {bound:g} {unit}).", hint + ".")
        if self.gain <= 0:
            raise DesignError("gain", self.gain, "must be > 0: it multiplies the scene's brightness.")
        if self.full_well <= 0:
            raise DesignError("full_well", self.full_well, "must be > 0 electrons.")
        if self.bit_depth is not None and (isinstance(self.bit_depth, bool) or not isinstance(self.bit_depth, int)
                                           or not 1 <= self.bit_depth <= 16):  # fmt: skip
            raise DesignError("bit_depth", self.bit_depth, "must be a whole number of bits 1–16, or null.")
        if not isinstance(self.shot_noise, bool):
            raise DesignError("shot_noise", self.shot_noise, "must be true or false.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise DesignError("seed", self.seed, "must be a whole number ≥ 0.")

    # ------------------------------------------------------------------ what it touches
    @property
    def needs_metasurface(self) -> bool:
        """True when a term acts on meta-atoms (radius, phase), which needs radius maps."""
        return any(getattr(self, name) != 0 for name in _METASURFACE_TERMS)

    @property
    def has_sensor(self) -> bool:
        return self.read_noise > 0 or self.shot_noise or self.bit_depth is not None

    @property
    def has_misalignment(self) -> bool:
        return bool(self.shift_y or self.shift_x or self.shift_sigma or self.rotation)

    @property
    def is_null(self) -> bool:
        return self == ErrorModel(seed=self.seed)

    # ------------------------------------------------------------------ composition
    def without_metasurface_terms(self) -> ErrorModel:
        """The same model with the meta-atom terms off (for optics that have no radius maps)."""
        return dataclasses.replace(self, **dict.fromkeys(_METASURFACE_TERMS, 0.0))

    def with_seed(self, seed: int) -> ErrorModel:
        return dataclasses.replace(self, seed=seed)

    def scaled(self, factor: float) -> ErrorModel:
        """Every error magnitude × ``factor`` (gain's deviation from 1 too); 0 is the perfect system.

        Quantisation, shot noise, full well and bit depth are properties of the process and
        camera, not magnitudes, and are kept unless ``factor`` is 0.
        """
        if not math.isfinite(factor) or factor < 0:
            raise DesignError("factor", factor, "must be a finite number ≥ 0.")
        if factor == 0:
            return ErrorModel(seed=self.seed)
        changes = {name: getattr(self, name) * factor for name in _MAGNITUDES}
        changes["gain"] = max(1e-3, 1 + (self.gain - 1) * factor)
        return dataclasses.replace(self, **changes)

    def combine(self, other: ErrorModel) -> ErrorModel:
        """Both models at once: independent random terms add in quadrature, offsets add, gains
        multiply, the coarser quantisation and the worse camera win."""
        def quadrature(name: str) -> float:
            return math.hypot(getattr(self, name), getattr(other, name))

        bits = [b for b in (self.bit_depth, other.bit_depth) if b is not None]
        return ErrorModel(
            radius_sigma=quadrature("radius_sigma"), radius_bias=self.radius_bias + other.radius_bias,
            radius_quantisation=max(self.radius_quantisation, other.radius_quantisation),
            phase_sigma=quadrature("phase_sigma"), kernel_sigma=quadrature("kernel_sigma"),
            psf_blur=quadrature("psf_blur"), gain=self.gain * other.gain, gain_sigma=quadrature("gain_sigma"),
            shift_y=self.shift_y + other.shift_y, shift_x=self.shift_x + other.shift_x,
            shift_sigma=quadrature("shift_sigma"), rotation=self.rotation + other.rotation,
            read_noise=quadrature("read_noise"), shot_noise=self.shot_noise or other.shot_noise,
            full_well=min(self.full_well, other.full_well), bit_depth=min(bits) if bits else None, seed=self.seed,
        )  # fmt: skip

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **dataclasses.asdict(self), "units": {k: u for k, (u, _) in _FIELDS.items()}}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorModel:
        if not isinstance(data, dict):
            raise DesignError("error_model", type(data).__name__, "must be a JSON object of error terms.")
        values = {k: v for k, v in data.items() if k not in ("schema", "units", "name", "description")}
        if data.get("schema", SCHEMA) != SCHEMA:
            raise DesignError("schema", data.get("schema"), f"is not an error model (expected {SCHEMA!r}).")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise DesignError("error_model", ", ".join(unknown), f"unknown term(s); known: {', '.join(sorted(known))}.")
        for name in ("bit_depth", "seed"):  # JSON numbers may arrive as 8.0
            if isinstance(values.get(name), float) and values[name].is_integer():
                values[name] = int(values[name])
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ErrorModel:
        from ..user_input import parse_json

        return cls.from_dict(parse_json(text, lambda problem, hint: DesignError("error_model", "JSON", problem, hint)))

    @classmethod
    def from_file(cls, path: str | Path) -> ErrorModel:
        from ..user_input import read_json

        return cls.from_dict(read_json(path, lambda problem, hint: DesignError("error_model", str(path), problem, hint),
                                       max_bytes=MAX_FILE_BYTES, what="error-model JSON file"))  # fmt: skip

    def describe(self) -> list[str]:
        """The non-zero terms in a designer's units, e.g. ['radius σ 5 nm', 'gain α 0.9']."""
        parts = []
        for name, (unit, _) in _FIELDS.items():
            value, default = getattr(self, name), getattr(ErrorModel(), name)
            if value == default:
                continue
            if unit == "m":
                parts.append(f"{name} {value * 1e9:.3g} nm" if abs(value) < 1e-6 else f"{name} {value * 1e6:.3g} µm")
            else:
                parts.append(f"{name} {value:.3g} {unit}")
        if self.shot_noise:
            parts.append("shot noise")
        if self.bit_depth is not None:
            parts.append(f"{self.bit_depth}-bit ADC")
        return parts


# A typical process and camera: pillar radius σ 5 nm, misalignment σ 2 µm, 2 µm PSF blur, 3 % kernel
# noise, 5 % gain spread, read noise 5 e⁻ with shot noise, an 8-bit ADC. The Fabricate page starts
# from it and ``fabricate --error-model typical`` uses it.
TYPICAL_PROCESS = ErrorModel(radius_sigma=5e-9, shift_sigma=2e-6, psf_blur=2e-6, kernel_sigma=0.03, gain_sigma=0.05,
                             read_noise=5.0, shot_noise=True, bit_depth=8)  # fmt: skip
