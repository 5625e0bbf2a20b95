"""The meta-atom library: shipped table, user tables, interpolation."""

import math

import numpy as np
import pytest
import torch

from onn_core.errors import OpticsInputError, TableError
from onn_core.optics import default_meta_atom_table, load_meta_atom_table
from onn_core.optics.metasurface import SIN_PHASE_FITS, sin_fit_phase


def test_shipped_table_reproduces_the_published_fits():
    table = default_meta_atom_table()
    assert table.radius_range == pytest.approx((0.0, 240e-9))
    np.testing.assert_allclose(table.wavelengths, sorted(SIN_PHASE_FITS), rtol=1e-12)
    radii = torch.linspace(0, 240e-9, 97, dtype=torch.float64)
    for wavelength in SIN_PHASE_FITS:
        phase, transmission = table.response(radii, wavelength)
        np.testing.assert_allclose(phase.numpy(), sin_fit_phase(radii.numpy(), wavelength), atol=2e-4)
        assert torch.all(transmission == 1)
    # Coverage is the span of the fit over the fabricable radii (it dips below 0 at small r).
    fine = np.linspace(0, 240e-9, 24001)
    for wavelength in SIN_PHASE_FITS:
        expected = np.ptp(sin_fit_phase(fine, wavelength))
        assert table.phase_coverage(wavelength) == pytest.approx(expected, rel=1e-4)
    assert table.phase_coverage(450e-9) > 2 * math.pi > table.phase_coverage(635e-9)


def test_phase_is_differentiable_in_radius():
    table = default_meta_atom_table()
    radius = torch.tensor([100.3e-9, 150.7e-9], dtype=torch.float64, requires_grad=True)
    phase, _ = table.response(radius, 532e-9)
    phase.sum().backward()
    a, b, c = SIN_PHASE_FITS[532e-9]
    r_um = radius.detach().numpy() * 1e6
    # dφ/dr of the fit (per metre): 2π·A·(2r − B)/C·exp(...)·1e6
    analytic = 2 * math.pi * a * (2 * r_um - b) / c * np.exp((r_um**2 - b * r_um) / -c) * 1e6
    np.testing.assert_allclose(radius.grad.numpy(), analytic, rtol=1e-2)


@pytest.mark.parametrize("grid", ["even (the shipped 1 nm)", "uneven"])
def test_lookup_is_the_piecewise_linear_interpolant_on_any_grid(grid):
    """An even grid is looked up by arithmetic, an uneven one by search: both give np.interp's
    values exactly, knots and the last radius included, and the segment's slope as gradient."""
    table = default_meta_atom_table()
    if grid == "uneven":
        keep = np.unique(np.r_[0, np.arange(1, 240, 3), np.arange(200, 241), 240])
        table = type(table)(table.radii[keep], table.wavelengths, table.phase[:, keep], table.transmission[:, keep],
                            "uneven", table.parameter)  # fmt: skip
        assert table._uniform_step is None
    else:
        assert table._uniform_step == pytest.approx(1e-9)
    rng = np.random.default_rng(0)
    radii = np.r_[rng.uniform(0, 240e-9, 5000), table.radii]
    radius = torch.tensor(radii, dtype=torch.float64, requires_grad=True)
    for wavelength in SIN_PHASE_FITS:
        row = table._row(wavelength)
        phase, transmission = table.response(radius, wavelength)
        np.testing.assert_allclose(phase.detach().numpy(), np.interp(radii, table.radii, table.phase[row]), atol=1e-12)
        np.testing.assert_allclose(transmission.detach().numpy(), np.interp(radii, table.radii,
                                                                            table.transmission[row]), atol=1e-12)
    (gradient,) = torch.autograd.grad(table.response(radius[:5000], 532e-9)[0].sum(), radius)
    row = table._row(532e-9)
    segment = np.clip(np.searchsorted(table.radii, radii[:5000], side="right") - 1, 0, len(table.radii) - 2)
    slopes = np.diff(table.phase[row]) / np.diff(table.radii)
    np.testing.assert_allclose(gradient[:5000].numpy(), slopes[segment], rtol=1e-9)


def test_out_of_range_radius_and_unknown_wavelength_are_refused():
    table = default_meta_atom_table()
    with pytest.raises(OpticsInputError, match="fabricable range 0–240 nm"):
        table.response(torch.tensor([300e-9]), 532e-9)
    with pytest.raises(OpticsInputError, match=r"no data at 600\.0 nm"):
        table.response(torch.tensor([100e-9]), 600e-9)


def test_user_table_round_trip(tmp_path):
    path = tmp_path / "atoms.csv"
    path.write_text(
        "radius_m,wavelength_m,phase_rad,transmission\n"
        "50e-9,1.55e-6,0.0,0.9\n100e-9,1.55e-6,3.0,0.8\n150e-9,1.55e-6,6.0,0.7\n"
    )
    table = load_meta_atom_table(path)
    field = table.field(torch.tensor([75e-9], dtype=torch.float64), 1.55e-6)
    assert float(field.abs()) == pytest.approx(0.85)
    assert float(field.angle()) == pytest.approx(1.5)


@pytest.mark.parametrize(
    "content, message",
    [
        ("radius,phase\n1,2\n", "missing column"),
        ("radius_m,wavelength_m,phase_rad,transmission\n1e-7,5e-7,abc,1\n", "row 2: not a number"),
        ("radius_m,wavelength_m,phase_rad,transmission\n1e-7,532,0,1\n", "row 2: radius must be"),
        ("radius_m,wavelength_m,phase_rad,transmission\n1e-7,5e-7,0,1.5\n", "row 2: transmission"),
        ("radius_m,wavelength_m,phase_rad,transmission\n1e-7,5e-7,0,1\n", "≥ 2 distinct"),
        ("radius_m,wavelength_m,phase_rad,transmission\n", "no data rows"),
    ],
)
def test_malformed_tables_name_file_and_row(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TableError, match=message):
        load_meta_atom_table(path)
