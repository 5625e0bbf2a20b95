"""Argument checks shared by the optics functions.

They run on every call, so they only look at Python scalars and tensor metadata, plus one
reduction for tensor-valued physical parameters (needed to reject NaN or a negative wavelength).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..errors import OpticsInputError

Scalar = float | int | torch.Tensor


def check_field(field: object, name: str = "field") -> torch.Tensor:
    """A complex tensor with at least two (y, x) dimensions."""
    if not isinstance(field, torch.Tensor):
        raise OpticsInputError(f"{name} must be a torch.Tensor, got {type(field).__name__}.")
    if not field.is_complex():
        raise OpticsInputError(
            f"{name} must be complex (complex64 or complex128), got {field.dtype}; "
            "build it as amplitude * torch.exp(1j * phase)."
        )
    if field.dim() < 2:
        raise OpticsInputError(f"{name} must have at least 2 dimensions (..., y, x); got {tuple(field.shape)}.")
    if field.shape[-1] < 2 or field.shape[-2] < 2:
        raise OpticsInputError(f"{name} must be at least 2x2 samples; got {tuple(field.shape[-2:])}.")
    return field


def check_real_image(image: object, name: str) -> torch.Tensor:
    """A real floating tensor with at least two (y, x) dimensions."""
    if not isinstance(image, torch.Tensor):
        raise OpticsInputError(f"{name} must be a torch.Tensor, got {type(image).__name__}.")
    if not image.is_floating_point():
        raise OpticsInputError(f"{name} must be float32 or float64, got {image.dtype}.")
    if image.dim() < 2:
        raise OpticsInputError(f"{name} must have at least 2 dimensions (..., y, x); got {tuple(image.shape)}.")
    return image


def check_positive(name: str, value: Scalar, unit: str = "m") -> Scalar:
    """A finite, strictly positive scalar (Python number or 0-d/1-element tensor)."""
    return _check_scalar(name, value, unit, allow_zero=False, allow_negative=False)


def check_finite(name: str, value: Scalar, unit: str = "m") -> Scalar:
    """A finite scalar of any sign (e.g. a propagation distance)."""
    return _check_scalar(name, value, unit, allow_zero=True, allow_negative=True)


def _check_scalar(name: str, value: Scalar, unit: str, *, allow_zero: bool, allow_negative: bool):
    if isinstance(value, bool) or not isinstance(value, int | float | torch.Tensor):
        raise OpticsInputError(f"{name} must be a number in {unit}, got {type(value).__name__}.")
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise OpticsInputError(f"{name} must be a scalar, got a tensor of shape {tuple(value.shape)}.")
        number = float(value.detach())
    else:
        number = float(value)
    if not math.isfinite(number):
        raise OpticsInputError(f"{name} must be finite, got {number} {unit}.")
    if number == 0 and not allow_zero:
        raise OpticsInputError(f"{name} must be positive, got 0 {unit}.")
    if number < 0 and not allow_negative:
        raise OpticsInputError(f"{name} must be positive, got {number} {unit}.")
    return value


def wavelength_column(wavelength: Scalar | Sequence[float], field: torch.Tensor) -> Scalar | torch.Tensor:
    """Validate a wavelength (metres): a scalar, or one value per slice of the field's dim -3.

    Returns the scalar unchanged, or a float64 tensor of shape (C, 1, 1) that broadcasts
    against ``(..., C, y, x)``.
    """
    if isinstance(wavelength, int | float | bool) or (
        isinstance(wavelength, torch.Tensor) and wavelength.numel() == 1 and wavelength.dim() == 0
    ):
        return check_positive("wavelength", wavelength)
    try:
        values = torch.as_tensor(wavelength, dtype=torch.float64, device=field.device).reshape(-1)
    except (TypeError, ValueError, RuntimeError):
        raise OpticsInputError(
            f"wavelength must be a number in metres or a sequence of them, got {wavelength!r}."
        ) from None
    if values.numel() == 0:
        raise OpticsInputError("wavelength must not be empty.")
    if field.dim() < 3 or field.shape[-3] != values.numel():
        raise OpticsInputError(
            f"{values.numel()} wavelengths need the field's third-last dimension to have "
            f"{values.numel()} entries (..., wavelength, y, x); got field shape {tuple(field.shape)}."
        )
    if not bool(torch.isfinite(values).all()) or bool((values <= 0).any()):
        raise OpticsInputError(f"every wavelength must be finite and positive (metres); got {values.tolist()}.")
    return values.reshape(-1, 1, 1)


def requires_grad(*values: object) -> bool:
    return any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)
