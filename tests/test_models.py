"""Models: frontends against the optics core and each other, costs against closed forms."""

import math

import pytest
import torch

from onn_core.design import Design
from onn_core.errors import DesignError
from onn_core.models import (
    EnergyModel,
    FrontendOptions,
    IdealFrontend,
    PhysicalFrontend,
    SensorSettings,
    build_student,
    build_teacher,
    count_cost,
    energy_per_image,
)
from onn_core.models.frontends import _convolve
from onn_core.optics import default_meta_atom_table, incoherent_image

# A small frontend that simulates quickly: 60 µm sub-optics, 2×2 of them (2 signed kernels).
SMALL = Design(
    metasurface_height=130e-6,
    metasurface_width=130e-6,
    kernel_size=60e-6,
    kernel_spacing=10e-6,
    sensor_distance=150e-6,
    sensor_pixel_pitch=2e-6,
    sensor_pixels_per_tap=2,
    kernel_taps=5,
    input_height=12,
    input_width=12,
)


def test_frontend_convolution_is_incoherent_imaging():
    torch.manual_seed(0)
    scene = torch.rand(2, 1, 15, 13, dtype=torch.float64)
    psfs = torch.rand(3, 1, 5, 5, dtype=torch.float64)
    expected = incoherent_image(scene[:, 0], psfs[:, 0])
    torch.testing.assert_close(_convolve(scene, psfs), expected, rtol=1e-10, atol=1e-10)


def test_split_captures_equal_the_signed_kernel_without_noise():
    torch.manual_seed(1)
    images = torch.rand(4, 1, 16, 16)
    fast = IdealFrontend(6, 1, 7)
    noiseless = SensorSettings(read_noise=0.0, bit_depth=None, shot_noise=False)
    split = IdealFrontend(6, 1, 7, sensor=noiseless)
    split.load_state_dict(fast.state_dict())
    torch.testing.assert_close(split(images), fast(images), rtol=1e-5, atol=1e-5)
    captures = split.capture_kernels()
    assert captures.shape == (12, 1, 7, 7) and bool((captures >= 0).all())
    torch.testing.assert_close(captures.sum(dim=(1, 2, 3)), torch.ones(12))  # lossless unit-sum PSFs


def test_sensor_noise_perturbs_and_quantises_captures():
    torch.manual_seed(2)
    images = torch.rand(2, 1, 16, 16)
    noisy = IdealFrontend(4, 1, 5, sensor=SensorSettings(full_well=1000.0, read_noise=3.0, bit_depth=6))
    clean = IdealFrontend(4, 1, 5)
    clean.load_state_dict(noisy.state_dict())
    with torch.no_grad():
        difference = (noisy(images) - clean(images)).abs()
    assert 0 < float(difference.mean()) < 0.2 * float(clean(images).detach().abs().mean())


def test_normalise_intensity_makes_features_blind_to_display_gain():
    frontend = IdealFrontend(3, 1, 5, normalise_intensity=True)
    images = torch.rand(2, 1, 10, 10)
    torch.testing.assert_close(frontend(0.3 * images), frontend(images), rtol=1e-4, atol=1e-5)


def test_unsigned_kernels_stay_non_negative():
    design = SMALL.replace(signed_kernels=False)
    frontend = IdealFrontend(design.kernel_count, 1, 5, signed=False)
    assert bool((frontend.signed_kernels() >= 0).all())


def test_radius_for_phase_inverts_the_table():
    table = default_meta_atom_table()
    target = torch.linspace(-10, 10, 301, dtype=torch.float64)
    radius = table.radius_for_phase(target, 532e-9)
    phase, _ = table.response(radius, 532e-9)
    error = torch.remainder(phase - target + math.pi, 2 * math.pi) - math.pi
    assert float(error.abs().max()) < 0.05  # radians: 1 nm radius steps and 4096 phase bins


def test_physical_frontend_psfs_are_physical_and_trainable():
    frontend = PhysicalFrontend(SMALL, SMALL.kernel_count)
    assert frontend.phase_pixel == pytest.approx(round(frontend.phase_pixel / 293e-9) * 293e-9)
    kernels = frontend.capture_kernels()
    assert kernels.shape == (2 * SMALL.kernel_count, 1, 5, 5)
    assert bool((kernels >= 0).all())
    efficiency = kernels.detach().sum(dim=(1, 2, 3))
    assert bool((efficiency <= 1 + 1e-5).all())
    assert float(efficiency.min()) > 0.3  # the lens initialisation focuses into the kernel window
    low, high = default_meta_atom_table().radius_range
    radius = frontend.radius_map().detach()
    assert float(radius.min()) >= low and float(radius.max()) <= high
    images = torch.rand(2, 1, 12, 12)
    frontend(images).square().mean().backward()
    assert frontend.radius_logit.grad is not None and float(frontend.radius_logit.grad.abs().sum()) > 0


def test_physical_kernel_of_a_lens_is_centred_and_symmetric():
    with torch.no_grad():
        kernel = PhysicalFrontend(SMALL, 1, perturbation=0.0).capture_kernels()[0, 0]
    centre = kernel.shape[-1] // 2
    assert int(kernel.argmax()) == centre * kernel.shape[-1] + centre
    # Mirror symmetric up to the half-sample offset of an even simulation grid.
    torch.testing.assert_close(kernel, kernel.flip(-1), rtol=0.1, atol=2e-3)
    torch.testing.assert_close(kernel, kernel.transpose(-2, -1), rtol=1e-3, atol=1e-5)


def test_physical_frontend_needs_one_wavelength_per_channel():
    with pytest.raises(DesignError, match=r"wavelengths"):
        PhysicalFrontend(SMALL.replace(input_channels=3), 1)


def test_lenet_cost_matches_the_closed_form():
    cost = count_cost(build_teacher("lenet", 1, (28, 28), 10), (1, 28, 28))
    conv1 = 6 * 28 * 28 * 25
    conv2 = 16 * 10 * 10 * 6 * 25
    fully_connected = 400 * 120 + 120 * 84 + 84 * 10
    assert cost["digital_macs"] == conv1 + conv2 + fully_connected
    assert cost["parameters"] == (6 * 25 + 6) + (16 * 150 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)


def test_compressed_meta_cost_splits_optical_and_digital_work():
    design = Design()
    cost = count_cost(build_student("compressed-meta", design, 10), (1, 28, 28))
    kernels = design.kernel_count
    assert kernels == 8
    assert cost["optical_macs"] == 2 * kernels * 49 * 28 * 28  # K⁺ and K⁻ captures
    subtraction = kernels * 28 * 28
    assert cost["digital_macs"] == subtraction + kernels * 14 * 14 * 128 + 128 * 10
    assert cost["optical_parameters"] == kernels * 49


def test_energy_per_image_is_the_digital_macs_and_every_sensor_conversion_by_hand():
    design = Design(sensor_bit_depth=10, sensor_pixels_per_tap=3)
    cost = count_cost(build_student("compressed-meta", design, 10), (1, 28, 28))
    kernels = design.kernel_count
    assert cost["sensor_values"] == 2 * kernels * 28 * 28  # K⁺ and K⁻ captures, every output pixel
    model = EnergyModel(mac_energy=2e-12, conversion_step_energy=0.5e-12)
    energy = energy_per_image(cost, design, model)
    conversions = 2 * kernels * 28 * 28 * 3 * 3  # each value spans 3 × 3 sensor pixels
    assert energy["sensor_conversions"] == conversions
    assert energy["sensor_j"] == pytest.approx(conversions * 0.5e-12 * 2**10)
    assert energy["digital_j"] == pytest.approx(cost["digital_macs"] * 2e-12)
    assert energy["total_j"] == pytest.approx(energy["sensor_j"] + energy["digital_j"])
    fewer_bits = energy_per_image(cost, design.replace(sensor_bit_depth=6), model)
    assert fewer_bits["sensor_j"] == pytest.approx(energy["sensor_j"] / 16)  # 2^10 / 2^6 steps
    with pytest.raises(ValueError, match="mac_energy"):
        EnergyModel(mac_energy=-1.0)


def test_an_electronic_teacher_reads_no_sensor():
    assert count_cost(build_teacher("lenet", 1, (28, 28), 10), (1, 28, 28))["sensor_values"] == 0


def test_segmentation_student_uses_the_method_groups_or_splits_fewer_kernels_1_2_4():
    few = build_student("segmentation-meta", Design(input_height=64, input_width=64), 1)
    assert [group.kernels for group in few.groups] == [1, 2, 5]  # the default design fits 8
    with pytest.raises(DesignError, match=r"at least 3 kernels"):
        build_student("segmentation-meta", Design(input_height=64, input_width=64), 1, kernels=2)
    design = Design(metasurface_height=12e-3, metasurface_width=12e-3, kernel_taps=3, input_height=32, input_width=32)
    model = build_student("segmentation-meta", design, 1)
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 1, 32, 32)
    cost = count_cost(model, (1, 32, 32))
    assert cost["optical_macs"] == 2 * 9 * (8 * 32 * 32 + 16 * 16 * 16 + 32 * 8 * 8)


@pytest.mark.parametrize(("name", "shape"), [("lenet", (1, 28, 28)), ("alexnet", (3, 32, 32)), ("unet", (1, 32, 32))])
def test_teachers_produce_the_right_output_shape(name, shape):
    model = build_teacher(name, shape[0], shape[1:], 10)
    output = model(torch.rand(2, *shape))
    assert output.shape == ((2, 10) if name != "unet" else (2, 1, *shape[1:]))


def test_physical_student_builds_from_the_options():
    model = build_student("compressed-meta", SMALL, 10, FrontendOptions(kind="physical"))
    assert isinstance(model.frontend, PhysicalFrontend)
    assert model(torch.rand(2, 1, 12, 12)).shape == (2, 10)


def test_physical_rgb_frontend_maps_each_channel_to_its_wavelength():
    rgb = SMALL.replace(wavelengths=(450e-9, 532e-9, 635e-9), input_channels=3)
    frontend = PhysicalFrontend(rgb, 1, perturbation=0.0)
    with torch.no_grad():
        kernels = frontend.capture_kernels()
    assert kernels.shape == (2, 3, 5, 5)
    # One metasurface, three colours: the lens designed for the first wavelength (450 nm) is
    # defocused for the others, so its peak tap holds less of their light.
    peaks = kernels[0].amax(dim=(-2, -1))
    assert float(peaks[0]) > float(peaks[1]) > float(peaks[2])
    red_only = torch.zeros(1, 3, 12, 12)
    red_only[0, 2, 6, 6] = 1.0
    with torch.no_grad():
        response = _convolve(red_only, kernels)
    torch.testing.assert_close(response[0, 0, 4:9, 4:9], kernels[0, 2], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("design", [SMALL, Design()], ids=["small", "default"])
def test_window_padding_leaves_the_kernel_window_exact(design):
    """Against a reference padded to 3× the field, the window-only padding errs < 1e-3 of the peak."""
    frontend = PhysicalFrontend(design, 2, seed=1)
    assert frontend.padding < frontend.samples  # cheaper than padding the whole field
    with torch.no_grad():
        window_only = frontend.capture_kernels()
        frontend.padding = 2 * frontend.samples
        reference = frontend.capture_kernels()
    peak = float(reference.max())
    assert float((window_only - reference).abs().max()) < 1e-3 * peak
