"""The design as a designer types it: fields in mm/µm/nm, converted to the SI design object.

This is the UI edge. The app draws one input per :data:`FORM_FIELDS` entry and calls
:func:`design_from_form`; nothing else converts units.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from onn_core.design import Design
from onn_core.errors import DesignError
from onn_core.units import MM, NM, UM


@dataclass(frozen=True)
class FormField:
    """One design input as shown: ``name`` is the Design field, ``scale`` its unit in metres."""

    name: str
    label: str
    unit: str
    scale: float  # SI value = shown value × scale (1 for unitless integers)
    minimum: float
    maximum: float
    step: float
    help: str
    group: str
    integer: bool = False


FORM_FIELDS: tuple[FormField, ...] = (
    FormField(
        "metasurface_height",
        "Metasurface height",
        "mm",
        MM,
        0.01,
        100.0,
        0.1,
        "Height h of the whole metasurface.",
        "Metasurface",
    ),
    FormField(
        "metasurface_width",
        "Metasurface width",
        "mm",
        MM,
        0.01,
        100.0,
        0.1,
        "Width w of the whole metasurface.",
        "Metasurface",
    ),
    FormField(
        "kernel_size",
        "Kernel aperture k",
        "mm",
        MM,
        0.001,
        100.0,
        0.01,
        "Side of one sub-optic: the aperture that forms one kernel's PSF.",
        "Metasurface",
    ),
    FormField(
        "kernel_spacing",
        "Edge-to-edge spacing d",
        "µm",
        UM,
        0.0,
        10000.0,
        10.0,
        "Minimum gap between neighbouring sub-optics that fabrication needs.",
        "Metasurface",
    ),
    FormField(
        "meta_atom_pitch",
        "Meta-atom pitch",
        "nm",
        NM,
        10.0,
        100000.0,
        1.0,
        "Lattice period of the pillars.",
        "Metasurface",
    ),
    FormField(
        "sensor_distance",
        "Metasurface → sensor",
        "mm",
        MM,
        0.001,
        1000.0,
        0.1,
        "Distance from the metasurface to the sensor.",
        "Sensor",
    ),
    FormField("sensor_pixel_pitch", "Pixel pitch", "µm", UM, 0.1, 1000.0, 0.01, "Sensor pixel pitch.", "Sensor"),
    FormField("sensor_bit_depth", "Bit depth", "bits", 1, 1, 16, 1, "ADC resolution.", "Sensor", True),
    FormField(
        "sensor_pixels_per_tap",
        "Pixels per kernel tap",
        "px",
        1,
        1,
        64,
        1,
        "Sensor pixels spanned by one kernel tap, per side.",
        "Sensor",
        True,
    ),
    FormField(
        "kernel_taps", "Kernel taps", "taps", 1, 1, 63, 2, "Kernel size in taps per side (odd).", "Network", True
    ),
    FormField("input_height", "Input height", "px", 1, 1, 4096, 1, "Input image height.", "Network", True),
    FormField("input_width", "Input width", "px", 1, 1, 4096, 1, "Input image width.", "Network", True),
    FormField(
        "input_channels",
        "Input channels",
        "ch",
        1,
        1,
        16,
        1,
        "1 for monochrome, or one per wavelength.",
        "Network",
        True,
    ),
)


def form_values(design: Design) -> dict[str, Any]:
    """The design in display units, keyed by field name (wavelengths as a list of nm)."""
    values: dict[str, Any] = {}
    for spec in FORM_FIELDS:
        value = getattr(design, spec.name)
        values[spec.name] = int(value) if spec.integer else round(value / spec.scale, 9)
    values["wavelengths"] = [round(w / NM, 6) for w in design.wavelengths]
    values["signed_kernels"] = design.signed_kernels
    return values


_WAVELENGTH = r"([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*(nm|µm|μm|um)?"
_WAVELENGTH_UNITS = {None: NM, "": NM, "nm": NM, "µm": 1e-6, "μm": 1e-6, "um": 1e-6}
SI_DIGITS = 12  # significant digits a form value keeps in SI: 0.06 mm is 6e-05 m, not 5.9999999999999995e-05


def to_si(value: float, scale: float) -> float:
    """A display-unit value in SI, without the float noise of the conversion (links and JSON stay short)."""
    return float(f"{float(value) * scale:.{SI_DIGITS}g}")


def parse_wavelengths_nm(text: str) -> tuple[float, ...]:
    """'635, 532, 450' (nanometres, the default unit) or '532 nm, 0.45 µm' → wavelengths in metres;
    refuses anything else clearly."""
    if not re.fullmatch(rf"\s*{_WAVELENGTH}(?:\s*[,;]?\s*{_WAVELENGTH})*\s*[,;]?\s*", text):
        if not text.strip():
            raise DesignError("wavelengths", text, "enter at least one wavelength in nm, e.g. 532 or 635, 532, 450.")
        raise DesignError("wavelengths", text, "must be numbers in nm (or with nm / µm) separated by commas, e.g. "
                          "635, 532, 450 or 0.532 µm.")  # fmt: skip
    return tuple(to_si(float(number), _WAVELENGTH_UNITS[unit]) for number, unit in re.findall(_WAVELENGTH, text))


def design_from_form(values: dict[str, Any]) -> Design:
    """Build the validated design from display-unit values (as returned by :func:`form_values`)."""
    fields: dict[str, Any] = {}
    for spec in FORM_FIELDS:
        value = values[spec.name]
        fields[spec.name] = int(value) if spec.integer else to_si(value, spec.scale)
    wavelengths = values["wavelengths"]
    fields["wavelengths"] = (
        parse_wavelengths_nm(wavelengths) if isinstance(wavelengths, str) else tuple(to_si(w, NM) for w in wavelengths)
    )
    fields["signed_kernels"] = bool(values["signed_kernels"])
    return Design(**fields)


def diagnostic_rows(design: Design) -> list[dict[str, str]]:
    """Derived quantities as (quantity, value) rows in display units, for a table."""
    from onn_core.units import format_length

    rows = [
        ("Sub-optic grid", f"{design.n_rows} × {design.n_cols} = {design.sub_optic_count}"),
        ("Kernels", f"{design.kernel_count} ({'K⁺/K⁻ pairs' if design.signed_kernels else 'non-negative'})"),
        ("Sub-optic pitch (k + d)", format_length(design.sub_optic_pitch)),
        ("Kernel", f"{design.kernel_taps} × {design.kernel_taps} taps of {format_length(design.tap_pitch)}"),
        ("Kernel on sensor", f"{design.kernel_size_pixels} px = {format_length(design.kernel_support)}"),
        ("Feature map on sensor", format_length(design.feature_map_extent)),
        ("F-number (z / k)", f"{design.f_number:.3g}"),
        ("Numerical aperture", f"{design.numerical_aperture:.3g}"),
        ("Meta-atoms per sub-optic", f"{design.meta_atoms_per_sub_optic} × {design.meta_atoms_per_sub_optic}"),
        ("Steepest deflection needed", f"{design.required_deflection_deg:.1f}°"),
    ]
    for row in design.per_wavelength():
        lam = format_length(row["wavelength_m"])
        rows += [
            (f"Airy radius @ {lam}", format_length(row["airy_radius_m"])),
            (f"Fresnel number @ {lam}", f"{row['fresnel_number']:.3g}"),
            (f"Nyquist factor Q @ {lam}", f"{row['nyquist_q']:.3g}"),
            (f"Max. deflection of the lattice @ {lam}", f"{row['max_deflection_deg']:.1f}°"),
        ]
    return [{"quantity": quantity, "value": value} for quantity, value in rows]


def compare_rows(first: Design, second: Design) -> list[dict[str, str]]:
    """The two designs' derived quantities side by side: (quantity, A, B, differs) rows."""
    a = {row["quantity"]: row["value"] for row in diagnostic_rows(first)}
    b = {row["quantity"]: row["value"] for row in diagnostic_rows(second)}
    quantities = list(a) + [q for q in b if q not in a]  # per-wavelength rows differ when the wavelengths do
    return [{"quantity": q, "A": a.get(q, "—"), "B": b.get(q, "—"), "differs": "●" if a.get(q) != b.get(q) else ""}
            for q in quantities]  # fmt: skip


FIELDS_BY_NAME = {spec.name: spec for spec in FORM_FIELDS}
# The design's fields the form draws as something other than a number input, by their labels.
OTHER_LABELS = {"wavelengths": "Wavelengths", "signed_kernels": "Signed kernels"}


def field_label(name: str) -> str:
    if name in FIELDS_BY_NAME:
        return FIELDS_BY_NAME[name].label
    return OTHER_LABELS.get(name, name.replace("_", " ").capitalize())


def _in_form_units(spec: FormField, metres: float) -> str:
    return f"{to_si(metres / spec.scale, 1):g} {spec.unit}"  # to_si(…, 1): without the division's float noise


def field_text(design: Design, name: str) -> str:
    """One design field as the form shows it: '0.7 mm', '8 bits', '532, 450 nm', 'signed'."""
    if name == "wavelengths":
        return ", ".join(f"{w / NM:g}" for w in design.wavelengths) + " nm"
    if name == "signed_kernels":
        return "signed (K⁺/K⁻)" if design.signed_kernels else "non-negative"
    spec = FIELDS_BY_NAME[name]
    value = getattr(design, name)
    return f"{value} {spec.unit}" if spec.integer else _in_form_units(spec, value)


def design_headline(design: Design) -> str:
    """The design's key figures in one line, as a designer would say them."""
    kind = "signed" if design.signed_kernels else "non-negative"
    height, width = (field_text(design, name) for name in ("metasurface_height", "metasurface_width"))
    return (f"{height.removesuffix(' mm')} × {width} metasurface, {design.kernel_count} {kind} kernels of "
            f"{design.kernel_taps} × {design.kernel_taps} taps (aperture {field_text(design, 'kernel_size')}), "
            f"{field_text(design, 'wavelengths')}, sensor at {field_text(design, 'sensor_distance')} with "
            f"{field_text(design, 'sensor_pixel_pitch')} pixels")  # fmt: skip


def field_differences(first: Design, second: Design) -> list[tuple[str, str, str]]:
    """The form fields in which two designs differ: (label, first's value, second's value), in form units."""
    names = [*FIELDS_BY_NAME, *OTHER_LABELS]
    return [(field_label(name), field_text(first, name), field_text(second, name)) for name in names
            if field_text(first, name) != field_text(second, name)]  # fmt: skip


def form_message(error: DesignError) -> str:
    """A design error in the sidebar's terms: the field's label and unit, not the API's name and metres.

    The library's messages speak to JSON and CLI users (``kernel_size: must be positive, got 0 pm``);
    a designer at the form reads "Kernel aperture k must be more than 0 mm".
    """
    from onn_core.design import INT_RANGES, LENGTH_RANGES, WAVELENGTH_RANGE

    name, problem, hint = error.parameter, error.problem, error.hint
    spec, label = FIELDS_BY_NAME.get(name), field_label(name)
    value = error.value
    if spec is not None and not spec.integer and isinstance(value, int | float):
        low, high = LENGTH_RANGES[name]
        if value <= 0 < low:
            return f"{label} must be more than 0 {spec.unit}."
        if not low <= value <= high:
            return (f"{label} of {_in_form_units(spec, value)} is outside what the studio builds: "
                    f"{_in_form_units(spec, low)} to {_in_form_units(spec, high)}.")  # fmt: skip
    if spec is not None and spec.integer and name in INT_RANGES and isinstance(value, int):
        low, high = INT_RANGES[name]
        if not low <= value <= high:
            return f"{label} must be {low} to {high} {spec.unit}; it is {value}."
    if name == "wavelengths" and "outside" in problem:
        low, high = WAVELENGTH_RANGE
        return f"Each wavelength must be {low / NM:g} nm to {high / NM:g} nm (e.g. 532 or 0.532 µm)."
    return f"{label}: {problem}" + (f" Fix: {hint}" if hint else "")
