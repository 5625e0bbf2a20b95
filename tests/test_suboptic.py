"""The fast sub-optic kernel path (one sub-optic at a time, a hand-written backward) against the
full band-limited angular spectrum computed over the whole sensor plane with plain autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from onn_core.errors import OpticsInputError
from onn_core.optics import suboptic
from onn_core.optics.metasurface import MetaAtomTable, default_meta_atom_table
from onn_core.optics.propagation import propagate
from onn_core.optics.psf import _overlap_matrix
from onn_core.optics.suboptic import _gaussian_blur_matrix, suboptic_kernel_taps, suboptic_padding

PIXEL, DISTANCE, TAP_PITCH, TAPS, SAMPLES = 1.172e-6, 3e-4, 8e-6, 5, 96


def full_plane_taps(radius, table, wavelengths, blur_sigma=0.0):
    """Reference: the field on the whole padded sensor plane, then integrated onto taps (autograd)."""
    padding = suboptic_padding(SAMPLES, phase_pixel=PIXEL, wavelengths=wavelengths, distance=DISTANCE,
                               window=TAPS * TAP_PITCH)  # fmt: skip
    weight = _overlap_matrix(SAMPLES, PIXEL, TAPS, TAP_PITCH, radius.dtype, "cpu")
    if blur_sigma:
        weight = weight @ _gaussian_blur_matrix(SAMPLES, blur_sigma / PIXEL, radius.dtype, "cpu")
    channels = []
    for wavelength in wavelengths:
        at_sensor = propagate(table.field(radius, wavelength), wavelength=wavelength, pitch=PIXEL,
                              distance=DISTANCE, padding=padding)  # fmt: skip
        irradiance = at_sensor.abs() ** 2 / (SAMPLES**2 * PIXEL**2)
        channels.append(weight @ irradiance @ weight.T)
    return torch.stack(channels, dim=1)


def fast_taps(radius, table, wavelengths, **options):
    return suboptic_kernel_taps(radius, table=table, wavelengths=wavelengths, phase_pixel=PIXEL, distance=DISTANCE,
                                tap_pitch=TAP_PITCH, taps=TAPS, **options)  # fmt: skip


def value_and_gradient(function, radius, probe):
    radius = radius.detach().clone().requires_grad_(True)
    taps = function(radius)
    (taps * probe).sum().backward()
    return taps.detach(), radius.grad


def random_radius(count=3, seed=1, low=20e-9, span=200e-9):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, SAMPLES, SAMPLES, dtype=torch.float64, generator=generator) * span + low


def uneven_table_with_losses() -> MetaAtomTable:
    """An uneven radius grid whose transmission varies and reaches zero (a dark pillar)."""
    radii = np.sort(np.concatenate([[0.0, 240e-9], np.random.default_rng(3).uniform(1e-9, 239e-9, 60)]))
    phase = np.stack([np.linspace(0, 7.0, radii.size) + 0.3 * np.sin(radii * 4e7),
                      np.linspace(0.5, 9.0, radii.size)])  # fmt: skip
    transmission = np.stack([0.6 + 0.4 * np.cos(radii * 3e7), np.clip(np.linspace(-0.2, 1.0, radii.size), 0, 1)])
    return MetaAtomTable(radii, np.array([450e-9, 532e-9]), phase, transmission, "test: uneven, lossy")


@pytest.mark.parametrize("blur_sigma", [0.0, 3e-6])
def test_fast_taps_equal_the_full_plane_taps_and_their_gradients(blur_sigma):
    table = default_meta_atom_table()
    wavelengths = [450e-9, 532e-9, 635e-9]
    radius = random_radius()
    probe = torch.randn(3, 3, TAPS, TAPS, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    expected, expected_gradient = value_and_gradient(lambda r: full_plane_taps(r, table, wavelengths, blur_sigma),
                                                     radius, probe)  # fmt: skip
    found, found_gradient = value_and_gradient(lambda r: fast_taps(r, table, wavelengths, blur_sigma=blur_sigma),
                                               radius, probe)  # fmt: skip
    torch.testing.assert_close(found, expected, rtol=1e-9, atol=1e-15)
    assert float((found_gradient - expected_gradient).norm() / expected_gradient.norm()) < 1e-9
    assert float(expected_gradient.abs().max()) > 0


def test_fast_gradient_is_the_derivative_of_the_taps():
    """Independent of any autograd: a central difference of the fast path along a random direction."""
    table = default_meta_atom_table()
    radius = random_radius(count=2, seed=4)
    generator = torch.Generator().manual_seed(5)
    probe = torch.randn(2, 1, TAPS, TAPS, dtype=torch.float64, generator=generator)
    # A direction inside every table segment (steps of 1e-12 m never cross a 1 nm knot here).
    direction = torch.randn(radius.shape, dtype=torch.float64, generator=generator)
    radius = radius.round(decimals=9) + 0.5e-9  # mid-segment, so ±step stays in the same segment
    _, gradient = value_and_gradient(lambda r: fast_taps(r, table, [532e-9]), radius, probe)
    step = 1e-12
    plus = (fast_taps(radius + step * direction, table, [532e-9]) * probe).sum()
    minus = (fast_taps(radius - step * direction, table, [532e-9]) * probe).sum()
    numeric = float((plus - minus) / (2 * step))
    analytic = float((gradient * direction).sum())
    assert analytic == pytest.approx(numeric, rel=1e-6)


def test_uneven_lossy_tables_take_the_same_path_with_the_same_numbers(monkeypatch):
    table = uneven_table_with_losses()
    radius = random_radius(count=2, seed=6, low=0.0, span=240e-9)
    radius[0, :4, :4] = 0.0  # the first knot and the dark end of the 532 nm row
    radius[1, :4, :4] = 240e-9
    dark = table.radii[(table.transmission[1] == 0) & (np.roll(table.transmission[1], -1) > 0)][0]
    radius[0, 10:14, 10:14] = float(dark)  # a dark knot whose transmission rises into the next segment
    probe = torch.randn(2, 2, TAPS, TAPS, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    found, found_gradient = value_and_gradient(lambda r: fast_taps(r, table, [450e-9, 532e-9]), radius, probe)
    monkeypatch.setattr(suboptic, "_fused_allowed", lambda *_: False)
    expected, expected_gradient = value_and_gradient(lambda r: fast_taps(r, table, [450e-9, 532e-9]), radius, probe)
    torch.testing.assert_close(found, expected, rtol=1e-10, atol=1e-16)
    torch.testing.assert_close(found_gradient, expected_gradient, rtol=1e-8, atol=1e-9 * float(
        expected_gradient.abs().max()))  # fmt: skip


def test_float32_taps_agree_with_float64():
    table = default_meta_atom_table()
    radius = random_radius(count=2, seed=8)
    probe = torch.randn(2, 1, TAPS, TAPS, dtype=torch.float64, generator=torch.Generator().manual_seed(9))
    exact, exact_gradient = value_and_gradient(lambda r: fast_taps(r, table, [532e-9]), radius, probe)
    single, single_gradient = value_and_gradient(lambda r: fast_taps(r, table, [532e-9]), radius.float(),
                                                 probe.float())  # fmt: skip
    assert single.dtype == torch.float32 and single_gradient.dtype == torch.float32
    assert float((single.double() - exact).abs().max() / exact.abs().max()) < 1e-4
    assert float((single_gradient.double() - exact_gradient).norm() / exact_gradient.norm()) < 1e-3


def test_given_fields_and_function_transforms_use_the_composite_path_with_equal_numbers():
    table = default_meta_atom_table()
    radius = random_radius(count=2, seed=10)
    fields = table.field(radius, 532e-9).unsqueeze(1) * 0.9
    taps = fast_taps(radius, table, [532e-9], fields=fields)
    torch.testing.assert_close(taps, 0.81 * fast_taps(radius, table, [532e-9]), rtol=1e-10, atol=1e-16)
    # Under torch.func the hand-written backward has no rule: the composite path answers instead.
    jacobian = torch.func.jacrev(lambda r: fast_taps(r, table, [532e-9]).sum())(radius)
    _, gradient = value_and_gradient(
        lambda r: fast_taps(r, table, [532e-9]), radius, torch.ones(2, 1, TAPS, TAPS, dtype=torch.float64)
    )
    torch.testing.assert_close(jacobian, gradient, rtol=1e-9, atol=1e-9 * float(gradient.abs().max()))


def test_radii_outside_the_table_are_refused_in_its_terms():
    table = default_meta_atom_table()
    radius = random_radius(count=1)
    radius[0, 0, 0] = 300e-9
    with pytest.raises(OpticsInputError, match="fabricable range 0–240 nm"):
        fast_taps(radius.requires_grad_(), table, [532e-9])
    with pytest.raises(OpticsInputError, match="fabricable range"):
        fast_taps(torch.full_like(radius, float("nan")), table, [532e-9])


def test_logits_mapped_inside_equal_radii_mapped_outside():
    """Trainable maps pass logits; the radii low + span·sigmoid(l) are formed a sub-optic at a time."""
    table = default_meta_atom_table()
    logits = torch.randn(2, SAMPLES, SAMPLES, dtype=torch.float64, generator=torch.Generator().manual_seed(11)) * 3
    probe = torch.randn(2, 1, TAPS, TAPS, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    low, span = table.radius_range[0], table.radius_range[1] - table.radius_range[0]
    found, found_gradient = value_and_gradient(lambda logit: fast_taps(logit, table, [532e-9], logit_range=(low, span)),
                                               logits, probe)  # fmt: skip
    expected, expected_gradient = value_and_gradient(
        lambda logit: full_plane_taps(low + span * torch.sigmoid(logit), table, [532e-9]), logits, probe)  # fmt: skip
    torch.testing.assert_close(found, expected, rtol=1e-9, atol=1e-15)
    assert float((found_gradient - expected_gradient).norm() / expected_gradient.norm()) < 1e-9
    with pytest.raises(OpticsInputError, match="fabricable range"):
        fast_taps(torch.full_like(logits, float("nan")), table, [532e-9], logit_range=(low, span))


def test_the_lossy_gradient_is_the_derivative_of_the_taps():
    """The varying-transmission backward against a central difference (no autograd on either side)."""
    table = uneven_table_with_losses()
    generator = torch.Generator().manual_seed(13)
    radius = random_radius(count=2, seed=14, low=0.0, span=240e-9)
    # Mid-segment radii, so ±step stays inside one segment of the uneven grid.
    segment = np.clip(np.searchsorted(table.radii, radius.numpy(), side="right") - 1, 0, len(table.radii) - 2)
    radius = torch.as_tensor((table.radii[segment] + table.radii[segment + 1]) / 2)
    probe = torch.randn(2, 2, TAPS, TAPS, dtype=torch.float64, generator=generator)
    direction = torch.randn(radius.shape, dtype=torch.float64, generator=generator)
    _, gradient = value_and_gradient(lambda r: fast_taps(r, table, [450e-9, 532e-9]), radius, probe)
    step = 1e-13
    plus = (fast_taps(radius + step * direction, table, [450e-9, 532e-9]) * probe).sum()
    minus = (fast_taps(radius - step * direction, table, [450e-9, 532e-9]) * probe).sum()
    assert float((gradient * direction).sum()) == pytest.approx(float((plus - minus) / (2 * step)), rel=1e-6)


def test_what_the_fast_path_does_not_differentiate_goes_the_composite_way():
    table = default_meta_atom_table()
    radius = random_radius(count=2, seed=15)
    # Given fields carry the values: the radius map only sets the grid, and no gradient reaches it.
    fields = table.field(radius, 532e-9).unsqueeze(1)
    taps = fast_taps(radius.clone().requires_grad_(), table, [532e-9], fields=fields)
    assert not taps.requires_grad
    torch.testing.assert_close(taps, fast_taps(radius, table, [532e-9]), rtol=1e-12, atol=1e-18)
    with pytest.raises(OpticsInputError, match=r"fields must be torch\.complex128"):
        fast_taps(radius, table, [532e-9], fields=fields.to(torch.complex64))
    # A distance that needs a gradient (the fast path's is for the radii only).
    distance = torch.tensor(DISTANCE, dtype=torch.float64, requires_grad=True)
    taps = suboptic_kernel_taps(radius, table=table, wavelengths=[532e-9], phase_pixel=PIXEL, distance=distance,
                                tap_pitch=TAP_PITCH, taps=TAPS, padding=suboptic_padding(
                                    SAMPLES, phase_pixel=PIXEL, wavelengths=[532e-9], distance=DISTANCE,
                                    window=TAPS * TAP_PITCH))  # fmt: skip
    (gradient,) = torch.autograd.grad(taps.sum(), distance)
    assert torch.isfinite(gradient) and float(gradient) != 0
    # Forward-mode AD: the directional derivative equals the reverse-mode gradient's projection.
    direction = torch.randn(radius.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(16))
    with torch.autograd.forward_ad.dual_level():
        dual = torch.autograd.forward_ad.make_dual(radius, direction)
        tangent = torch.autograd.forward_ad.unpack_dual(fast_taps(dual, table, [532e-9]).sum()).tangent
    _, reverse = value_and_gradient(lambda r: fast_taps(r, table, [532e-9]), radius,
                                    torch.ones(2, 1, TAPS, TAPS, dtype=torch.float64))  # fmt: skip
    assert float(tangent) == pytest.approx(float((reverse * direction).sum()), rel=1e-9)
