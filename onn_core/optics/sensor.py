"""Sensor model: shot and read noise, full well, quantisation with straight-through gradients."""

from __future__ import annotations

import torch

from ..errors import OpticsInputError
from ._validate import check_real_image


class _StraightThroughRound(torch.autograd.Function):
    """round() forward, identity backward: lets training see through the ADC."""

    @staticmethod
    def forward(ctx, values):
        return torch.round(values)

    @staticmethod
    def backward(ctx, grad_output):
        return grad_output


def quantise(values: torch.Tensor, bit_depth: int) -> torch.Tensor:
    """Quantise values in [0, 1] to ``bit_depth`` bits; clipped; straight-through gradient.

    Returns values in [0, 1] on the grid k/(2^b − 1).
    """
    if not isinstance(values, torch.Tensor) or not values.is_floating_point():
        raise OpticsInputError("values must be a floating-point tensor in [0, 1].")
    if isinstance(bit_depth, bool) or not isinstance(bit_depth, int) or not 1 <= bit_depth <= 24:
        raise OpticsInputError(f"bit_depth must be an integer 1..24, got {bit_depth!r}.")
    levels = 2**bit_depth - 1
    return _StraightThroughRound.apply(torch.clamp(values, 0.0, 1.0) * levels) / levels


def sensor_readout(
    electrons: torch.Tensor,
    *,
    full_well: float,
    read_noise: float = 0.0,
    bit_depth: int | None = None,
    shot_noise: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Digitised sensor signal in [0, 1] (fraction of full scale) from mean photo-electrons.

    Noise is reparameterised (signal + √signal·n₁ + σ_read·n₂, n ~ N(0, 1)), the Gaussian limit
    of Poisson shot noise, so gradients flow through it; variance = signal + σ_read² electrons².
    Saturates at ``full_well``; ``bit_depth`` quantises with a straight-through gradient.

    Args:
        electrons: mean photo-electrons per pixel (≥ 0), real tensor (..., rows, cols).
        full_well: electrons at full scale. read_noise: RMS read noise, electrons.
        bit_depth: ADC bits, or None for an ideal (unquantised) readout.
        shot_noise: add photon shot noise. generator: for reproducible noise.
    """
    check_real_image(electrons, "electrons")
    if not full_well > 0:
        raise OpticsInputError(f"full_well must be positive (electrons), got {full_well}.")
    if read_noise < 0:
        raise OpticsInputError(f"read_noise must be ≥ 0 electrons RMS, got {read_noise}.")
    signal = torch.clamp(electrons, min=0.0)
    if shot_noise:
        noise = torch.randn(signal.shape, generator=generator, dtype=signal.dtype, device=signal.device)
        signal = signal + torch.sqrt(signal + 1e-12) * noise
    if read_noise > 0:
        noise = torch.randn(signal.shape, generator=generator, dtype=signal.dtype, device=signal.device)
        signal = signal + read_noise * noise
    fraction = torch.clamp(signal / full_well, 0.0, 1.0)
    return quantise(fraction, bit_depth) if bit_depth is not None else fraction
