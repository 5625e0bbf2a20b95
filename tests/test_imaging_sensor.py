"""Incoherent imaging (#19), sensor pixel integration (#13 context), noise and quantisation."""

import math

import pytest
import torch

from onn_core.errors import OpticsInputError
from onn_core.optics import incoherent_image, pixel_integrate, quantise, sensor_readout


def test_incoherent_image_equals_conv2d_with_correct_flip_and_centre():
    # Check #19: < 1e-5 against torch's conv2d (a correlation, so the kernel is flipped).
    generator = torch.Generator().manual_seed(0)
    scene = torch.rand(2, 30, 40, dtype=torch.float64, generator=generator)
    psf_stack = torch.rand(3, 7, 5, dtype=torch.float64, generator=generator)
    image = incoherent_image(scene, psf_stack)
    assert image.shape == (2, 3, 30, 40)
    reference = torch.nn.functional.conv2d(scene.unsqueeze(1), psf_stack.flip(-2, -1).unsqueeze(1), padding=(3, 2))
    assert float((image - reference).abs().max()) < 1e-5 * float(reference.abs().max())


def test_point_source_images_to_the_psf_centred_on_the_point():
    scene = torch.zeros(21, 21)
    scene[5, 14] = 1.0
    psf = torch.zeros(5, 5)
    psf[2, 2], psf[1, 2], psf[2, 4] = 1.0, 0.5, 0.25  # centre, one up (−y), two right (+x)
    image = incoherent_image(scene, psf)
    assert float(image[5, 14]) == pytest.approx(1.0, abs=1e-6)
    assert float(image[4, 14]) == pytest.approx(0.5, abs=1e-6)
    assert float(image[5, 16]) == pytest.approx(0.25, abs=1e-6)
    assert float(image.sum()) == pytest.approx(1.75, abs=1e-5)  # linear, not circular: nothing wraps


def test_pixel_integration_conserves_energy_for_any_pitch_ratio():
    generator = torch.Generator().manual_seed(1)
    pitch = 0.586e-6
    irradiance = torch.rand(2, 200, 200, dtype=torch.float64, generator=generator)
    for pixel_pitch in (5.86e-6, 4.1e-6, 13.3e-6):
        sensor_side = math.ceil(200 * pitch / pixel_pitch) + 2
        power = pixel_integrate(
            irradiance, pitch=pitch, pixel_pitch=pixel_pitch, sensor_shape=(sensor_side, sensor_side)
        )
        torch.testing.assert_close(power.sum(dim=(-2, -1)), irradiance.sum(dim=(-2, -1)) * pitch**2)


def test_pixel_integration_bins_aligned_grids_exactly():
    # Odd sizes share the central cell's edges (sample n//2 sits at 0 on both grids), so a
    # 3:1 ratio bins whole simulation cells: the top-left 3×3 block is the top-left pixel.
    pitch, pixel_pitch = 1e-6, 3e-6
    irradiance = torch.zeros(15, 15, dtype=torch.float64)
    irradiance[:3, :3] = 1.0
    power = pixel_integrate(irradiance, pitch=pitch, pixel_pitch=pixel_pitch, sensor_shape=(5, 5))
    assert float(power[0, 0]) == pytest.approx(9 * pitch**2, rel=1e-12)
    assert float(power.sum()) == pytest.approx(9 * pitch**2, rel=1e-12)
    # A uniform field gives every fully covered pixel the same power: irradiance × pixel area.
    uniform = pixel_integrate(
        torch.ones(15, 15, dtype=torch.float64), pitch=pitch, pixel_pitch=pixel_pitch, sensor_shape=(5, 5)
    )
    torch.testing.assert_close(uniform, torch.full((5, 5), pixel_pitch**2, dtype=torch.float64))


def test_sensor_noise_statistics_match_shot_plus_read():
    generator = torch.Generator().manual_seed(2)
    signal, read_noise, full_well = 400.0, 5.0, 10_000.0
    electrons = torch.full((400, 500), signal, dtype=torch.float64)
    readout = sensor_readout(electrons, full_well=full_well, read_noise=read_noise, generator=generator) * full_well
    assert float(readout.mean()) == pytest.approx(signal, rel=2e-3)
    assert float(readout.var()) == pytest.approx(signal + read_noise**2, rel=2e-2)


def test_saturation_and_quantisation_with_straight_through_gradient():
    values = torch.tensor([-0.2, 0.1, 0.5004, 0.99, 1.7], dtype=torch.float64, requires_grad=True)
    out = quantise(values, bit_depth=8)
    levels = 255
    expected = torch.tensor([0.0, round(0.1 * levels), round(0.5004 * levels), round(0.99 * levels), levels]) / levels
    torch.testing.assert_close(out.detach(), expected.to(torch.float64))
    out.sum().backward()
    # Identity gradient inside the range, zero where clipped.
    torch.testing.assert_close(values.grad, torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64))
    electrons = torch.full((4, 4), 2e5, dtype=torch.float64)
    assert float(sensor_readout(electrons, full_well=1e4, shot_noise=False).max()) == 1.0


def test_sensor_and_imaging_refuse_bad_input():
    with pytest.raises(OpticsInputError, match="bit_depth"):
        quantise(torch.zeros(3), bit_depth=0)
    with pytest.raises(OpticsInputError, match="full_well"):
        sensor_readout(torch.zeros(4, 4), full_well=0.0)
    with pytest.raises(OpticsInputError, match="float32 or float64"):
        incoherent_image(torch.zeros(8, 8, dtype=torch.int64), torch.ones(3, 3))
    with pytest.raises(OpticsInputError, match="psf_stack must be"):
        incoherent_image(torch.zeros(8, 8), torch.ones(1, 1, 3, 3))
