"""The design object: layout formula, derived quantities, validation and warnings."""

import json
import math

import pytest

from onn_core.design import Design, DesignWarning
from onn_core.design_link import from_link, to_link
from onn_core.errors import DesignError


def test_default_design_matches_the_reference_optics():
    design = Design()
    assert (design.n_rows, design.n_cols, design.sub_optic_count, design.kernel_count) == (4, 4, 16, 8)
    assert design.kernel_size_pixels == 14
    assert design.tap_pitch == pytest.approx(11.72e-6)
    assert design.numerical_aperture == pytest.approx(math.sin(math.atan(0.47 / 2.4)))
    (row,) = design.per_wavelength()
    assert row["fresnel_number"] == pytest.approx(0.47e-3**2 / (532e-9 * 2.4e-3))
    assert row["nyquist_q"] == pytest.approx(532e-9 * 2.4 / 0.94 / 5.86e-6)
    assert row["airy_radius_m"] == pytest.approx(1.2197 * 532e-9 * 2.4 / 0.94, rel=1e-4)
    assert [w.severity for w in design.warnings] == ["info"]  # Q < 2 is expected for tap-defined kernels


@pytest.mark.parametrize(
    "h, w, k, d, rows, cols",
    [
        (4e-3, 4e-3, 1e-3, 0.0, 4, 4),  # exact fit must not floor down through rounding
        (4e-3, 2e-3, 0.94e-3, 60e-6, 4, 2),
        (3.9e-3, 4e-3, 0.94e-3, 60e-6, 3, 4),
        (3.94e-3, 3.94e-3, 0.94e-3, 60e-6, 4, 4),
        (10e-3, 1e-3, 0.3e-3, 0.2e-3, 20, 2),
    ],
)
def test_layout_formula(h, w, k, d, rows, cols):
    design = Design(metasurface_height=h, metasurface_width=w, kernel_size=k, kernel_spacing=d)
    assert (design.n_rows, design.n_cols) == (rows, cols)
    assert rows == math.floor((h + d) / (k + d) + 1e-9)
    assert design.kernel_count == rows * cols // 2


def test_sub_optics_are_centred_paired_and_spaced():
    design = Design(metasurface_height=3e-3, metasurface_width=3e-3, kernel_size=0.9e-3, kernel_spacing=0.1e-3)
    optics = design.sub_optics()
    assert len(optics) == 9 and design.kernel_count == 4
    assert sum(o.centre_x for o in optics) == pytest.approx(0, abs=1e-15)
    assert [(o.kernel, o.sign) for o in optics[:3]] == [(0, 1), (0, -1), (1, 1)]
    assert optics[-1].kernel is None
    gap = optics[1].centre_x - optics[0].centre_x - design.kernel_size
    assert gap == pytest.approx(design.kernel_spacing)
    extent = max(o.centre_x for o in optics) + design.kernel_size / 2
    assert extent <= design.metasurface_width / 2 + 1e-15
    assert any(w.code == "unused_sub_optic" for w in design.warnings)
    unsigned = design.replace(signed_kernels=False)
    assert unsigned.kernel_count == 9 and all(o.sign == 0 for o in unsigned.sub_optics())


def test_json_round_trip_hash_and_immutability():
    design = Design(wavelengths=(635e-9, 532e-9, 450e-9), input_channels=3)
    text = design.to_json()
    data = json.loads(text)
    assert data["schema"] == "onn-design/1" and data["wavelengths"] == [635e-9, 532e-9, 450e-9]
    again = Design.from_json(text)
    assert again == design and hash(again) == hash(design) and again.design_id == design.design_id
    assert len({design, again, Design()}) == 2
    with pytest.raises(AttributeError):
        design.kernel_size = 1e-3
    assert Design.from_dict({"kernel_taps": 5}).kernel_taps == 5  # missing fields take defaults
    assert Design.from_dict({"wavelengths": [5.32e-7], "input_height": 28.0}).input_height == 28


@pytest.mark.parametrize(
    "changes, parameter, fragment",
    [
        ({"kernel_size": 5e-3}, "kernel_size", "does not fit a metasurface height of 4 mm"),
        ({"metasurface_height": 1.2e-3, "metasurface_width": 1.2e-3}, "kernel_size", "a signed kernel needs two"),
        ({"wavelengths": (532,)}, "wavelengths", "532 m is outside"),
        ({"wavelengths": ()}, "wavelengths", "non-empty"),
        ({"wavelengths": (532e-9, 532e-9)}, "wavelengths", "same wavelength twice"),
        ({"sensor_distance": 2.4}, "sensor_distance", "2.4 m is outside"),
        ({"sensor_distance": -1e-3}, "sensor_distance", "must be positive"),
        ({"sensor_distance": float("nan")}, "sensor_distance", "must be finite"),
        ({"meta_atom_pitch": 0.0}, "meta_atom_pitch", "must be positive"),
        ({"meta_atom_pitch": 80e-6, "kernel_size": 0.5e-3}, "meta_atom_pitch", "6.2 meta-atoms"),
        ({"kernel_taps": 6}, "kernel_taps", "must be odd"),
        ({"kernel_taps": 7.5}, "kernel_taps", "whole number"),
        ({"sensor_bit_depth": 0}, "sensor_bit_depth", "between 1 and 16"),
        ({"input_channels": 3}, "input_channels", "3 channels but 1 wavelength"),
        ({"kernel_size": "1mm"}, "kernel_size", "must be a number of metres"),
        ({"signed_kernels": "yes"}, "signed_kernels", "true or false"),
    ],
)
def test_invalid_designs_name_parameter_value_and_fix(changes, parameter, fragment):
    with pytest.raises(DesignError) as info:
        Design(**changes)
    assert info.value.parameter == parameter
    assert fragment in str(info.value)
    assert str(info.value).startswith(parameter)


def test_fix_hints_are_actionable():
    with pytest.raises(DesignError) as info:
        Design(kernel_size=5e-3)
    assert "make the kernel at most 4 mm" in info.value.hint
    with pytest.raises(DesignError) as info:
        Design(wavelengths=(532,))
    assert "metres" in info.value.hint


def test_unknown_fields_and_bad_json_are_refused():
    with pytest.raises(DesignError, match="kernal_size: is not a design field"):
        Design.from_dict({"kernal_size": 1e-3})
    with pytest.raises(DesignError, match="not valid JSON"):
        Design.from_json("{kernel_size: 1}")
    with pytest.raises(DesignError, match="unknown design schema"):
        Design.from_dict({"schema": "other/9"})


def codes(design: Design) -> dict[str, DesignWarning]:
    return {w.code: w for w in design.warnings}


def test_questionable_designs_warn_with_structure():
    # Coarse lattice at blue: not sub-wavelength, and too coarse to steer to the kernel edge.
    coarse = codes(Design(meta_atom_pitch=1.5e-6, wavelengths=(450e-9,), sensor_distance=0.3e-3))
    assert coarse["diffraction_orders"].severity == "warning"
    assert coarse["phase_aliasing"].severity == "warning"
    assert "meta_atom_pitch" in coarse["phase_aliasing"].parameters
    # Fine lattice: evanescent samples, information only.
    assert codes(Design(meta_atom_pitch=200e-9, wavelengths=(635e-9,)))["evanescent_sampling"].severity == "info"
    # A long focal distance makes the spot wider than a tap.
    blurred = codes(
        Design(
            sensor_distance=0.5,
            kernel_size=0.2e-3,
            sensor_pixels_per_tap=1,
            metasurface_height=1e-3,
            metasurface_width=1e-3,
        )
    )
    assert blurred["kernel_below_diffraction_limit"].severity == "warning"
    # Big taps on a large input: feature maps of neighbouring sub-optics overlap.
    crowded = codes(Design(sensor_pixels_per_tap=6, input_height=64, input_width=64))
    assert "feature_map_crosstalk" in crowded
    # Q < 2 with taps below twice the spot becomes a real warning.
    undersampled = codes(
        Design(
            sensor_pixels_per_tap=1,
            sensor_pixel_pitch=3e-6,
            kernel_size=0.3e-3,
            metasurface_height=1e-3,
            metasurface_width=1e-3,
        )
    )
    assert undersampled["psf_undersampled"].severity == "warning"
    for warning in crowded.values():
        assert warning.message and warning.hint and warning.to_dict()["parameters"]


@pytest.mark.parametrize("pixel_pitch", [1e-6, 2e-6, 3.45e-6, 5.86e-6, 10e-6])
def test_the_sampling_diagnostic_says_only_what_is_true_once_across_wavelengths(pixel_pitch):
    from onn_core.units import format_length

    design = Design(wavelengths=(635e-9, 532e-9, 450e-9), input_channels=3, sensor_pixel_pitch=pixel_pitch)
    codes = [w.code for w in design.warnings]
    assert len(codes) == len(set(codes))  # one warning per finding, however many wavelengths share it
    under = [row["wavelength_m"] for row in design.per_wavelength() if row["nyquist_q"] < 2]
    found = [w for w in design.warnings if w.code == "psf_undersampled"]
    assert len(found) == (1 if under else 0)
    if under:
        [named] = [w for w in under if found[0].message.startswith(f"At {format_length(w)} ")]
        message, nyquist_pitch = found[0].message, named * design.f_number / 2
        assert pixel_pitch > nyquist_pitch  # "pixels … are larger than λ·F#/2": true of the wavelength named
        assert f"pixels of {format_length(pixel_pitch)} are larger than λ·F#/2 = {format_length(nyquist_pitch)}" in (
            message)  # fmt: skip
        if len(under) > 1:
            rest = [format_length(w) for w in under if w != named]
            assert message.endswith(f"The same holds at {', '.join(rest[:-1]) + ' and ' if rest[:-1] else ''}"
                                    f"{rest[-1]}.")  # fmt: skip
        assert found[0].severity == ("info" if "well above the spot" in message else "warning")
        if "well above the spot" in message:
            assert all(design.tap_pitch >= 2 * row["airy_radius_m"] for row in design.per_wavelength())


def test_a_design_link_round_trips_and_refuses_damage():
    from onn_core.errors import DesignError

    design = Design(metasurface_width=8e-3, wavelengths=(635e-9, 532e-9, 450e-9), input_channels=3)
    assert from_link(to_link(design)) == design
    assert to_link(Design()) == "" and from_link("") == Design()
    with pytest.raises(DesignError, match="not a design link"):
        from_link("not*base64")
    import base64

    impossible = base64.urlsafe_b64encode(b'{"kernel_size":0.009}').decode()  # 9 mm kernels on 4 mm
    with pytest.raises(DesignError, match="kernel_size"):
        from_link(impossible)


@pytest.mark.parametrize(
    ("text", "metres"),
    [("635, 532, 450", (635e-9, 532e-9, 450e-9)), ("532nm", (532e-9,)), ("532 nm, 0.45 µm", (532e-9, 450e-9)),
     ("635 532 450", (635e-9, 532e-9, 450e-9)), ("0.532um", (532e-9,)), ("532; 450", (532e-9, 450e-9))],
)  # fmt: skip
def test_wavelengths_are_typed_with_or_without_units(text, metres):
    from studio.design_form import parse_wavelengths_nm

    assert parse_wavelengths_nm(text) == metres  # exactly: no float noise from the unit conversion


@pytest.mark.parametrize("text", ["", "green", "532 nm nm", "5x", "532 mm"])
def test_wavelengths_that_are_not_lengths_are_refused_saying_how_to_write_them(text):
    from studio.design_form import parse_wavelengths_nm

    with pytest.raises(DesignError, match="nm"):
        parse_wavelengths_nm(text)


def test_the_form_round_trips_the_default_design_exactly_so_its_link_is_empty():
    from onn_core.design_link import to_link
    from studio.design_form import design_from_form, form_values

    design = design_from_form(form_values(Design()))
    assert design == Design() and to_link(design) == ""
    wide = Design(metasurface_width=8e-3, kernel_spacing=6e-5)
    assert design_from_form(form_values(wide)).to_dict() == wide.to_dict()
