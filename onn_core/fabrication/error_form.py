"""The error model in a designer's units (nm, µm, mrad, %, e⁻) ⇄ :class:`ErrorModel` (SI).

Conversions happen here, at the UI edge, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .error_model import ErrorModel


@dataclass(frozen=True)
class ErrorField:
    name: str  # ErrorModel field
    label: str
    unit: str
    factor: float  # SI value = form value × factor
    step: float
    group: str
    help: str


ERROR_FIELDS: tuple[ErrorField, ...] = (
    ErrorField("radius_sigma", "Pillar radius error σ", "nm", 1e-9, 1.0, "Meta-atoms",
               "Random, per pillar; needs a metasurface."),
    ErrorField("radius_bias", "Pillar radius bias", "nm", 1e-9, 1.0, "Meta-atoms",
               "Over-etch (−) or under-etch (+) of every pillar."),
    ErrorField("radius_quantisation", "Radius grid of the fab", "nm", 1e-9, 1.0, "Meta-atoms", "0: continuous."),
    ErrorField("phase_sigma", "Phase error σ", "rad", 1.0, 0.05, "Meta-atoms", "Random, per pillar."),
    ErrorField("kernel_sigma", "Kernel error δ", "% of peak", 1e-2, 1.0, "Kernels",
               "Eq. 10's δ: random error of each tap, relative to the capture's largest tap."),
    ErrorField("psf_blur", "PSF blur σ", "µm", 1e-6, 0.5, "Kernels", "Defocus, sensor cross-talk."),
    ErrorField("gain_sigma", "Capture gain σ", "%", 1e-2, 1.0, "Kernels", "Random efficiency of each sub-optic."),
    ErrorField("gain", "Brightness gain α", "×", 1.0, 0.05, "Capture", "The display's brightness vs training."),
    ErrorField("shift_x", "Misalignment x", "µm", 1e-6, 0.5, "Capture", "Image against kernels, at the sensor."),
    ErrorField("shift_y", "Misalignment y", "µm", 1e-6, 0.5, "Capture", "Image against kernels, at the sensor."),
    ErrorField("shift_sigma", "Misalignment σ per capture", "µm", 1e-6, 0.5, "Capture",
               "Random shift of each capture: K⁺ and K⁻ no longer line up."),
    ErrorField("rotation", "Rotation", "mrad", 1e-3, 1.0, "Capture", "Image against kernels."),
    ErrorField("read_noise", "Read noise", "e⁻", 1.0, 1.0, "Camera", "RMS, per pixel."),
    ErrorField("full_well", "Full well", "e⁻", 1.0, 1000.0, "Camera", "Electrons at full scale."),
)  # fmt: skip


def form_from_error_model(errors: ErrorModel) -> dict[str, Any]:
    values: dict[str, Any] = {field.name: getattr(errors, field.name) / field.factor for field in ERROR_FIELDS}
    values.update(shot_noise=errors.shot_noise, bit_depth=errors.bit_depth or 0, seed=errors.seed)
    return values


def error_model_from_form(values: dict[str, Any]) -> ErrorModel:
    """An ErrorModel from form values in display units; raises DesignError on bad values."""
    settings: dict[str, Any] = {field.name: float(values[field.name]) * field.factor for field in ERROR_FIELDS}
    bits = int(values.get("bit_depth") or 0)
    settings.update(shot_noise=bool(values.get("shot_noise", False)), bit_depth=bits or None,
                    seed=int(values.get("seed", 0)))  # fmt: skip
    return ErrorModel(**settings)
