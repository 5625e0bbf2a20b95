"""Free-space propagation against closed forms (physics-checks.md #3–#10, #14, #15, #17, #18)."""

import math

import numpy as np
import pytest
import torch

from onn_core.errors import OpticsInputError
from onn_core.optics import analytic, propagate, rectangular_aperture
from onn_core.optics.grids import coordinates, frequency_grid
from onn_core.optics.propagation import linear_convolution_padding, transfer_cache


def gaussian_beam(n, pitch, waist, dtype=torch.complex128, device="cpu", centre=(0.0, 0.0)):
    y = coordinates(n, pitch, device=device).reshape(-1, 1) - centre[0]
    x = coordinates(n, pitch, device=device).reshape(1, -1) - centre[1]
    return torch.exp(-(x**2 + y**2) / waist**2).to(dtype)


def energy(field, pitch):
    return float((field.abs() ** 2).sum()) * pitch**2


def relative_mse(numeric, reference):
    return float(((numeric - reference) ** 2).sum() / (reference**2).sum())


@pytest.mark.parametrize("method", ["asm", "fresnel"])
@pytest.mark.parametrize("fresnel_number", [1.25, 5.0])
def test_square_aperture_near_field_matches_fresnel_integrals(method, fresnel_number):
    # Check #3: intensity behind a square aperture vs the Fresnel-integral solution.
    wavelength, pitch, n, side = 0.5e-6, 2e-6, 1024, 0.5e-3
    distance = (side / 2) ** 2 / (wavelength * fresnel_number)
    aperture = rectangular_aperture((n, n), pitch=pitch, width=side, height=side, dtype=torch.float64)
    field = propagate(
        aperture.to(torch.complex128), wavelength=wavelength, pitch=pitch, distance=distance, method=method
    )
    x = coordinates(n, pitch).numpy()
    reference = analytic.square_aperture_fresnel_field(x, x, side=side, wavelength=wavelength, distance=distance)
    error = relative_mse(field.abs().numpy() ** 2, np.abs(reference) ** 2)
    assert error < 2e-2
    assert error < 1e-3  # what we actually achieve; a regression would show here first
    # The phase agrees too once the plane-wave carrier e^{ikz} is removed.
    carrier = np.exp(-2j * np.pi * distance / wavelength)
    assert np.abs(field.numpy() * carrier - reference).max() < 0.02


def test_fresnel_number_is_exact():
    # Check #4.
    assert analytic.fresnel_number(0.5e-3, 500e-9, 0.2) == pytest.approx(2.5, rel=1e-15)


def test_band_limit_fixes_aliasing_of_plain_asm():
    # Check #5: at long distance the plain sampled transfer function aliases; the band-limited
    # one stays close to the Fresnel-integral reference.
    wavelength, pitch, n, side = 0.5e-6, 4e-6, 256, 0.2e-3
    distance = 0.2  # N_F = 0.1, far beyond the distance the plain ASM samples correctly
    aperture = rectangular_aperture((n, n), pitch=pitch, width=side, height=side, dtype=torch.float64)
    field = aperture.to(torch.complex128)
    x = coordinates(n, pitch).numpy()
    reference = (
        np.abs(analytic.square_aperture_fresnel_field(x, x, side=side, wavelength=wavelength, distance=distance)) ** 2
    )
    limited = propagate(field, wavelength=wavelength, pitch=pitch, distance=distance).abs().numpy() ** 2
    plain = propagate(field, wavelength=wavelength, pitch=pitch, distance=distance, band_limit=False).abs().numpy() ** 2
    limited_error = relative_mse(limited, reference)
    plain_error = relative_mse(plain, reference)
    assert limited_error < 2e-2
    assert plain_error > 10 * limited_error


@pytest.mark.parametrize("distance", [5e-6, -5e-6])
@pytest.mark.parametrize("band_limit", [True, False])
def test_evanescent_components_decay_and_never_grow(distance, band_limit):
    # Check #6: pitch below λ/2, so the grid holds evanescent frequencies.
    wavelength, pitch, n = 1e-6, 0.2e-6, 128
    generator = torch.Generator().manual_seed(0)
    field = torch.randn(n, n, dtype=torch.complex128, generator=generator)
    out = propagate(field, wavelength=wavelength, pitch=pitch, distance=distance, band_limit=band_limit, padding=0)
    assert torch.isfinite(out).all()
    spectrum_in = torch.fft.fft2(field).abs()
    spectrum_out = torch.fft.fft2(out).abs()
    f = frequency_grid(n, pitch)
    evanescent = (f.reshape(-1, 1) ** 2 + f.reshape(1, -1) ** 2) > 1 / wavelength**2
    assert torch.all(spectrum_out <= spectrum_in * (1 + 1e-9) + 1e-9)
    # Each evanescent component is attenuated at least by exp(-2π|z|√(f² − 1/λ²)), exactly by
    # it where the band limit keeps it.
    f_sq = f.reshape(-1, 1) ** 2 + f.reshape(1, -1) ** 2
    decay = torch.exp(-2 * math.pi * abs(distance) * torch.sqrt(torch.clamp(f_sq - 1 / wavelength**2, min=0)))
    ratio = spectrum_out[evanescent] / spectrum_in[evanescent]
    assert torch.all(ratio <= decay[evanescent] * (1 + 1e-6) + 1e-12)
    if not band_limit:
        torch.testing.assert_close(ratio, decay[evanescent], rtol=1e-6, atol=1e-12)


def test_frequency_grid_is_fftfreq_not_linspace():
    # Check #7.
    n, pitch = 100, 3e-6
    f = frequency_grid(n, pitch).numpy()
    np.testing.assert_array_equal(f, np.fft.fftfreq(n, d=pitch))
    assert f[1] - f[0] == pytest.approx(1 / (n * pitch), rel=1e-12)
    assert not np.allclose(np.sort(f), np.linspace(-1 / (2 * pitch), 1 / (2 * pitch), n))


def test_energy_is_conserved_without_apertures():
    # Check #8, float64: a beam that stays inside the window keeps its energy.
    wavelength, pitch, n = 0.633e-6, 1e-6, 512
    beam = gaussian_beam(n, pitch, waist=40e-6)
    out = propagate(beam, wavelength=wavelength, pitch=pitch, distance=2e-3)
    assert energy(out, pitch) == pytest.approx(energy(beam, pitch), rel=1e-6)
    # Periodic (unpadded, unlimited) propagation is unitary for any field when every grid
    # frequency propagates.
    generator = torch.Generator().manual_seed(1)
    noise = torch.randn(n, n, dtype=torch.complex128, generator=generator)
    out = propagate(noise, wavelength=wavelength, pitch=pitch, distance=1e-3, padding=0, band_limit=False)
    assert energy(out, pitch) == pytest.approx(energy(noise, pitch), rel=1e-10)


@pytest.mark.parametrize("method", ["asm", "fresnel"])
def test_forward_then_backward_returns_the_field(method):
    # Check #9 and the "no flips on a round trip" half of #14: an asymmetric field.
    wavelength, pitch, n = 0.532e-6, 1e-6, 256
    field = gaussian_beam(n, pitch, 12e-6, centre=(20e-6, -35e-6)) + 0.5 * gaussian_beam(
        n, pitch, 8e-6, centre=(-30e-6, 10e-6)
    )
    there = propagate(field, wavelength=wavelength, pitch=pitch, distance=300e-6, method=method)
    back = propagate(there, wavelength=wavelength, pitch=pitch, distance=-300e-6, method=method)
    torch.testing.assert_close(back, field, rtol=2e-5, atol=2e-5 * float(field.abs().max()))


def test_zero_distance_is_identity():
    # Check #10.
    field = torch.randn(64, 64, dtype=torch.complex64)
    out = propagate(field, wavelength=500e-9, pitch=1e-6, distance=0.0)
    torch.testing.assert_close(out, field, rtol=0, atol=0)
    # A vanishing distance tends to the identity times the carrier e^{ikz}.
    z = 1e-15
    out = propagate(field.to(torch.complex128), wavelength=500e-9, pitch=1e-6, distance=z)
    carrier = complex(np.exp(2j * np.pi * z / 500e-9))
    torch.testing.assert_close(out, field.to(torch.complex128) * carrier, rtol=1e-9, atol=1e-9)


def test_tilt_toward_plus_y_moves_light_toward_plus_y():
    # Check #14: a prism steering toward +y moves the beam to larger row indices.
    wavelength, pitch, n, distance = 0.5e-6, 1e-6, 256, 200e-6
    angle = math.radians(5)
    y = coordinates(n, pitch).reshape(-1, 1)
    beam = gaussian_beam(n, pitch, 15e-6) * torch.exp(1j * 2 * math.pi / wavelength * math.sin(angle) * y)
    out = propagate(beam.to(torch.complex128), wavelength=wavelength, pitch=pitch, distance=distance)
    intensity = out.abs() ** 2
    coords = coordinates(n, pitch)
    centroid_y = float((intensity.sum(1) * coords).sum() / intensity.sum())
    centroid_x = float((intensity.sum(0) * coords).sum() / intensity.sum())
    assert centroid_y == pytest.approx(distance * math.tan(angle), rel=2e-2)
    assert abs(centroid_x) < 1e-7


def test_talbot_self_imaging():
    # Check #15: a cosine grating reimages itself at the (non-paraxial) Talbot distance.
    wavelength, period, samples_per_period, periods = 0.5e-6, 4e-6, 32, 16
    pitch, n = period / samples_per_period, samples_per_period * periods
    x = coordinates(n, pitch).reshape(1, -1)
    grating = (1 + 0.5 * torch.cos(2 * math.pi * x / period)).expand(n, n).to(torch.complex128)
    z_talbot = analytic.talbot_distance(period, wavelength)
    periodic = {"padding": 0, "band_limit": False}  # an infinite grating: periodic boundaries
    at_talbot = propagate(grating, wavelength=wavelength, pitch=pitch, distance=z_talbot, **periodic).abs() ** 2
    at_half = propagate(grating, wavelength=wavelength, pitch=pitch, distance=z_talbot / 2, **periodic).abs() ** 2
    original = grating.abs() ** 2
    assert relative_mse(at_talbot.numpy(), original.numpy()) < 1e-4
    # Half way the pattern is shifted by half a period: not the original.
    assert relative_mse(at_half.numpy(), original.numpy()) > 1e-2
    # And 1% off the Talbot distance is measurably worse than at it.
    off = propagate(grating, wavelength=wavelength, pitch=pitch, distance=1.01 * z_talbot, **periodic).abs() ** 2
    assert relative_mse(off.numpy(), original.numpy()) > 10 * relative_mse(at_talbot.numpy(), original.numpy())


def test_gradients_match_finite_differences():
    # Check #17: d(loss)/d(phase) and d(loss)/d(distance), float64, central differences.
    wavelength, pitch, n = 0.6e-6, 1e-6, 64
    generator = torch.Generator().manual_seed(3)
    amplitude = gaussian_beam(n, pitch, 15e-6).real
    phase = (0.3 * torch.randn(n, n, dtype=torch.float64, generator=generator)).requires_grad_(True)
    distance = torch.tensor(50e-6, dtype=torch.float64, requires_grad=True)
    weight = torch.rand(n, n, dtype=torch.float64, generator=generator)

    def loss(phase_map, z):
        out = propagate(torch.polar(amplitude, phase_map), wavelength=wavelength, pitch=pitch, distance=z)
        return (weight * out.abs() ** 2).sum()

    value = loss(phase, distance)
    grad_phase, grad_distance = torch.autograd.grad(value, (phase, distance))
    assert torch.isfinite(grad_phase).all() and torch.isfinite(grad_distance)
    step = 1e-6
    for index in [(32, 32), (20, 40), (45, 28)]:
        bump = torch.zeros_like(phase)
        bump[index] = step
        with torch.no_grad():
            numeric = (loss(phase + bump, distance) - loss(phase - bump, distance)) / (2 * step)
        assert float(grad_phase[index].detach()) == pytest.approx(float(numeric), rel=1e-3, abs=1e-9)
    dz = 1e-9
    with torch.no_grad():
        numeric = (loss(phase, distance + dz) - loss(phase, distance - dz)) / (2 * dz)
    assert float(grad_distance) == pytest.approx(float(numeric), rel=1e-3)


def test_float32_matches_float64(device):
    # Check #18 (CPU always; CUDA when present via the device fixture).
    wavelength, pitch, n = 0.532e-6, 1e-6, 256
    aperture = rectangular_aperture((n, n), pitch=pitch, width=80e-6, height=60e-6, dtype=torch.float64)
    reference = propagate(aperture.to(torch.complex128), wavelength=wavelength, pitch=pitch, distance=1e-3)
    single = propagate(aperture.to(torch.complex64).to(device), wavelength=wavelength, pitch=pitch, distance=1e-3)
    assert single.dtype == torch.complex64
    error = float((single.cpu().to(torch.complex128) - reference).abs().max() / reference.abs().max())
    assert error < 1e-4


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cpu_and_cuda_agree():
    field = torch.randn(2, 3, 128, 128, dtype=torch.complex64)
    kwargs = {"wavelength": [450e-9, 532e-9, 635e-9], "pitch": 1e-6, "distance": 1e-3}
    cpu = propagate(field, **kwargs)
    gpu = propagate(field.cuda(), **kwargs).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-4, atol=1e-4 * float(cpu.abs().max()))


def test_batched_wavelengths_equal_separate_calls():
    wavelengths = [450e-9, 532e-9, 635e-9]
    field = torch.randn(2, 3, 64, 64, dtype=torch.complex128)
    # Same padding for both: the derived padding follows the longest wavelength of a call.
    together = propagate(field, wavelength=wavelengths, pitch=1e-6, distance=200e-6, padding=64)
    for c, wavelength in enumerate(wavelengths):
        alone = propagate(field[:, c], wavelength=wavelength, pitch=1e-6, distance=200e-6, padding=64)
        torch.testing.assert_close(together[:, c], alone)


def test_transfer_function_is_cached_per_geometry():
    transfer_cache.clear()
    field = torch.randn(64, 64, dtype=torch.complex64)
    propagate(field, wavelength=500e-9, pitch=1e-6, distance=1e-4)
    propagate(field * 2, wavelength=500e-9, pitch=1e-6, distance=1e-4)
    assert (transfer_cache.misses, transfer_cache.hits) == (1, 1)
    propagate(field, wavelength=500e-9, pitch=1e-6, distance=2e-4)
    assert transfer_cache.misses == 2


def test_padding_follows_geometry():
    # Short hops need little padding; long ones are capped at the field size.
    assert linear_convolution_padding(512, pitch=1e-6, wavelength=0.5e-6, distance=10e-6) == 3
    assert linear_convolution_padding(512, pitch=1e-6, wavelength=0.5e-6, distance=1.0) == 512
    assert linear_convolution_padding(512, pitch=0.2e-6, wavelength=0.5e-6, distance=1e-9) == 512


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"wavelength": -1e-6}, "wavelength must be positive"),
        ({"wavelength": 0.0}, "wavelength must be positive"),
        ({"wavelength": float("nan")}, "wavelength must be finite"),
        ({"pitch": 0.0}, "pitch must be positive"),
        ({"pitch": -1e-6}, "pitch must be positive"),
        ({"distance": float("inf")}, "distance must be finite"),
        ({"method": "rayleigh"}, "method must be one of"),
        ({"wavelength": [500e-9, 600e-9]}, "third-last dimension"),
        ({"wavelength": "532nm"}, "must be a number in metres"),
    ],
)
def test_invalid_arguments_are_refused_clearly(kwargs, message):
    arguments = {"wavelength": 500e-9, "pitch": 1e-6, "distance": 1e-3, **kwargs}
    with pytest.raises(OpticsInputError, match=message):
        propagate(torch.zeros(3, 16, 16, dtype=torch.complex64), **arguments)


@pytest.mark.parametrize(
    "field, message",
    [
        (torch.zeros(16, 16), "must be complex"),
        (torch.zeros(16, dtype=torch.complex64), "at least 2 dimensions"),
        (np.zeros((16, 16), dtype=np.complex64), "must be a torch.Tensor"),
    ],
)
def test_invalid_fields_are_refused_clearly(field, message):
    with pytest.raises(OpticsInputError, match=message):
        propagate(field, wavelength=500e-9, pitch=1e-6, distance=1e-3)


def test_a_window_of_the_output_is_the_whole_field_sliced_values_and_gradients():
    torch.manual_seed(0)
    field = torch.randn(2, 3, 120, 120, dtype=torch.complex128, requires_grad=True)
    settings = dict(wavelength=[450e-9, 532e-9, 635e-9], pitch=1e-6, distance=2e-4, padding=40)
    window = (slice(30, 75), slice(50, 100))
    whole = propagate(field, **settings)
    part = propagate(field, **settings, window=window)
    assert part.shape == (2, 3, 45, 50)
    torch.testing.assert_close(part, whole[..., window[0], window[1]], rtol=0, atol=1e-12)
    weights = torch.randn(part.shape, dtype=torch.float64)
    (expected,) = torch.autograd.grad((whole[..., window[0], window[1]].abs() ** 2 * weights).sum(), field)
    (found,) = torch.autograd.grad((part.abs() ** 2 * weights).sum(), field)
    torch.testing.assert_close(found, expected, rtol=0, atol=1e-10)
    for bad in ((slice(0, 0), slice(0, 5)), (slice(0, 121), slice(0, 5)), (slice(None, 5), slice(0, 5))):
        with pytest.raises(OpticsInputError, match="window"):
            propagate(field, **settings, window=bad)


def test_sub_optic_taps_from_the_window_equal_those_from_the_whole_sensor_plane():
    """The kernel reads only the samples its taps integrate; it must not change by doing so."""
    from onn_core.optics.metasurface import default_meta_atom_table
    from onn_core.optics.psf import _overlap_matrix
    from onn_core.optics.suboptic import suboptic_kernel_taps, suboptic_padding

    table = default_meta_atom_table()
    torch.manual_seed(1)
    radius = torch.rand(2, 96, 96, dtype=torch.float64) * 200e-9 + 20e-9
    geometry = dict(phase_pixel=1.172e-6, distance=3e-4, tap_pitch=8e-6, taps=5)
    taps = suboptic_kernel_taps(radius, table=table, wavelengths=[532e-9], **geometry)
    padding = suboptic_padding(96, phase_pixel=1.172e-6, wavelengths=[532e-9], distance=3e-4, window=5 * 8e-6)
    at_sensor = propagate(table.field(radius, 532e-9), wavelength=532e-9, pitch=1.172e-6, distance=3e-4,
                          padding=padding)  # fmt: skip
    irradiance = at_sensor.abs() ** 2 / (96**2 * 1.172e-6**2)
    weight = _overlap_matrix(96, 1.172e-6, 5, 8e-6, torch.float64, "cpu")
    torch.testing.assert_close(taps[:, 0], weight @ irradiance @ weight.T, rtol=1e-12, atol=1e-15)
