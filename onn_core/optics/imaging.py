"""Incoherent imaging: sensor intensity = scene intensity ⊛ intensity PSF (linear convolution)."""

from __future__ import annotations

import torch

from ..errors import OpticsInputError
from ._validate import check_real_image
from .propagation import next_fast_size


def incoherent_image(scene: torch.Tensor, psf_stack: torch.Tensor) -> torch.Tensor:
    """Image of an incoherent ``scene`` through each PSF of ``psf_stack``, on the scene's grid.

    out_k(y, x) = Σ_{m,n} scene(y − m, x − n) · psf_k(m + cy, n + cx), with (cy, cx) =
    (h//2, w//2) the PSF's centre sample: a point at (y₀, x₀) images to the PSF centred on
    (y₀, x₀). Zero-padded FFT convolution, so nothing wraps around the edges.

    Args:
        scene: real (..., H, W) intensity, sampled on the sensor grid.
        psf_stack: real (K, h, w) or (h, w) intensity PSFs on the same grid.

    Returns:
        Real (..., K, H, W) (or (..., H, W) for a single 2-D PSF).
    """
    check_real_image(scene, "scene")
    check_real_image(psf_stack, "psf_stack")
    single = psf_stack.dim() == 2
    if psf_stack.dim() not in (2, 3):
        raise OpticsInputError(f"psf_stack must be (K, h, w) or (h, w), got {tuple(psf_stack.shape)}.")
    if single:
        psf_stack = psf_stack.unsqueeze(0)
    dtype = torch.promote_types(scene.dtype, psf_stack.dtype)
    scene = scene.to(dtype).unsqueeze(-3)  # (..., 1, H, W)
    psf_stack = psf_stack.to(dtype)
    height, width = scene.shape[-2:]
    kh, kw = psf_stack.shape[-2:]
    shape = (next_fast_size(height + kh - 1), next_fast_size(width + kw - 1))
    product = torch.fft.rfft2(scene, s=shape) * torch.fft.rfft2(psf_stack, s=shape)
    full = torch.fft.irfft2(product, s=shape)
    top, left = kh // 2, kw // 2
    image = full[..., top : top + height, left : left + width]
    return image.squeeze(-3) if single else image
