"""One sub-optic's kernel: a meta-atom radius map → its intensity PSF integrated onto kernel taps.

The chain (scalar, local-periodic approximation: each meta-atom acts as the infinite array of
itself, so neighbour coupling is ignored, as in the method):

    t(r)·e^{iφ(r)} per phase pixel → band-limited angular spectrum over the sensor distance
    → |E|² → (optional blur) → power on each tap of the kernel window centred on the axis.

The result is the *fraction of the power incident on the sub-optic* that lands on each tap, so
a kernel sums to its optical efficiency (≤ 1: light outside the window is lost). This is the
physics behind :class:`~onn_core.models.frontends.PhysicalFrontend` (trainable radii), inverse
design and fabrication-error simulation, kept as a pure function so all three share it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.autograd import forward_ad

from ..errors import OpticsInputError
from .metasurface import MetaAtomTable, gather_segments
from .propagation import cached_transfer, next_fast_size, propagate, window_padding
from .psf import _overlap_matrix


def _gaussian_blur_matrix(n: int, sigma_samples: float, dtype, device) -> torch.Tensor:
    """(n, n) matrix of a Gaussian blur along one axis: entry (i, j) is the fraction of sample j's
    power landing on sample i (the Gaussian integrated over sample i, so a blur narrower than a
    sample is the identity and power is conserved away from the edges)."""
    position = torch.arange(n, dtype=torch.float64, device=device)
    offsets = position[:, None] - position[None, :]
    scale = sigma_samples * math.sqrt(2)
    weights = 0.5 * (torch.erf((offsets + 0.5) / scale) - torch.erf((offsets - 0.5) / scale))
    return weights.to(dtype)


def suboptic_padding(samples: int, *, phase_pixel: float, wavelengths: Sequence[float], distance: float,
                     window: float) -> int:  # fmt: skip
    """Zero padding that keeps a ``window``-wide (metres) region at the sensor free of aliasing."""
    return window_padding(samples, pitch=phase_pixel, wavelength=max(wavelengths), distance=distance, window=window)


def suboptic_kernel_taps(
    radius: torch.Tensor,
    *,
    table: MetaAtomTable,
    wavelengths: Sequence[float],
    phase_pixel: float,
    distance: float,
    tap_pitch: float,
    taps: int,
    padding: int | None = None,
    fields: torch.Tensor | None = None,
    blur_sigma: float = 0.0,
    logit_range: tuple[float, float] | None = None,
) -> torch.Tensor:
    """Kernel taps of sub-optics given their radius maps: (S, C, taps, taps), one channel per wavelength.

    Args:
        radius: pillar radii (S, n, n), metres, inside the table's range; one value per phase
            pixel (a block of identical meta-atoms).
        table: the meta-atom library (phase and transmission vs radius per wavelength).
        wavelengths: metres, one per output channel.
        phase_pixel: side of one phase pixel, metres.
        distance: metasurface-to-sensor distance, metres.
        tap_pitch: side of one kernel tap on the sensor, metres.
        taps: taps per side (odd: the window is centred on the sub-optic's axis).
        padding: zero samples per axis for the propagation (default: the window's alias-free
            padding, :func:`suboptic_padding`).
        fields: the complex transmission of every phase pixel (S, C, n, n), when it is not simply
            the table's response to ``radius`` (fabrication: the mean field of a block of
            pillars with their own radius and phase errors); ``radius`` then only sets the grid.
        blur_sigma: RMS width of a Gaussian blur of the sensor irradiance, metres (sensor
            cross-talk, defocus); 0 for none.
        logit_range: (low, span), metres: ``radius`` then holds logits l, and the radii are
            low + span·sigmoid(l) (how trainable radius maps stay fabricable). Mapped here, a
            sub-optic at a time, so the stack of radii is never formed for the gradient.

    Returns:
        Power fraction per tap (S, C, taps, taps) in [0, 1].
    """
    if not radius.is_floating_point():
        raise OpticsInputError("radius must be a floating-point tensor (metres, or logits with logit_range).")
    if radius.dim() != 3 or radius.shape[-1] != radius.shape[-2]:
        raise OpticsInputError(f"radius must be (sub-optics, n, n) metres; got shape {tuple(radius.shape)}.")
    if taps < 1 or taps % 2 != 1:
        raise OpticsInputError(f"taps must be odd and ≥ 1 so the window has a centre tap; got {taps}.")
    if blur_sigma < 0 or not math.isfinite(blur_sigma):
        raise OpticsInputError(f"blur_sigma must be a finite length ≥ 0 in metres; got {blur_sigma}.")
    samples = radius.shape[-1]
    if padding is None:
        padding = suboptic_padding(samples, phase_pixel=phase_pixel, wavelengths=wavelengths, distance=distance,
                                   window=taps * tap_pitch)  # fmt: skip
    weight = _overlap_matrix(samples, phase_pixel, taps, tap_pitch, radius.dtype, radius.device)
    if blur_sigma > 0:
        # Blurring then integrating over a tap = integrating with a blurred tap window.
        weight = weight @ _gaussian_blur_matrix(samples, blur_sigma / phase_pixel, radius.dtype, radius.device)
    # Only the samples some tap integrates matter (the window is ~1/10 of the sub-optic per side):
    # the field is computed there alone, and the rest of the sensor plane never is.
    used = torch.nonzero(weight.abs().sum(dim=0) > 0).flatten()
    span = slice(int(used[0]), int(used[-1]) + 1) if used.numel() else slice(0, samples)
    weight = weight[:, span]
    if fields is not None:
        expected = (radius.shape[0], len(wavelengths), samples, samples)
        if tuple(fields.shape) != expected:
            raise OpticsInputError(f"fields must be (sub-optics, wavelengths, n, n) = {expected}; "
                                   f"got {tuple(fields.shape)}.")  # fmt: skip
        if fields.dtype != _complex_of(radius.dtype):
            raise OpticsInputError(f"fields must be {_complex_of(radius.dtype)} to match the {radius.dtype} radius "
                                   f"map; got {fields.dtype}.")  # fmt: skip
    if _fused_allowed(radius, fields, distance, wavelengths):
        plan = _TapPlan(table, tuple(float(w) for w in wavelengths), phase_pixel, float(distance), samples,
                        next_fast_size(samples + padding), weight, span, logit_range)  # fmt: skip
        # Given fields carry the values; the radius map then only sets the grid and gets no gradient.
        values = radius if fields is None else radius.detach()
        return _WindowedTaps.apply(values, fields, plan, torch.is_grad_enabled() and values.requires_grad)
    if logit_range is not None:
        radius = logit_range[0] + logit_range[1] * torch.sigmoid(radius)
    return _composite_kernel_taps(radius, fields, table, wavelengths, phase_pixel, distance, padding, weight, span)


def _composite_kernel_taps(radius, fields, table, wavelengths, phase_pixel, distance, padding, weight, span):
    """The same taps through plain autograd (function transforms, fields that need a gradient)."""
    samples = radius.shape[-1]
    per_wavelength = []
    for channel, wavelength in enumerate(wavelengths):
        field = table.field(radius, wavelength) if fields is None else fields[:, channel]
        at_sensor = propagate(field, wavelength=wavelength, pitch=phase_pixel, distance=distance, padding=padding,
                              window=(span, span))  # fmt: skip
        # Irradiance per m² as a fraction of the power incident on the sub-optic (n² unit samples).
        irradiance = (at_sensor.real**2 + at_sensor.imag**2) / (samples**2 * phase_pixel**2)
        per_wavelength.append(weight @ irradiance @ weight.T)
    return torch.stack(per_wavelength, dim=1)


def _complex_of(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _fused_allowed(radius: torch.Tensor, fields: torch.Tensor | None, distance, wavelengths) -> bool:
    # The hand-written backward is first-order, for the radii only, with no vmap/jvp rule: under
    # torch.func transforms or forward-mode AD, or when a gradient must reach given fields, the
    # distance or the wavelengths, the composite path runs instead.
    if fields is not None and fields.requires_grad:
        return False
    if any(isinstance(value, torch.Tensor) and value.requires_grad for value in (distance, *wavelengths)):
        return False
    if forward_ad.unpack_dual(radius).tangent is not None:
        return False
    return not torch._C._are_functorch_transforms_active()


@dataclass(frozen=True, eq=False)
class _TapPlan:
    """What :class:`_WindowedTaps` needs besides the radii: geometry (metres) and the tap weights."""

    table: MetaAtomTable
    wavelengths: tuple[float, ...]
    phase_pixel: float  # metres
    distance: float  # metres
    samples: int  # phase pixels per side of a sub-optic
    padded: int  # FFT size per side
    weight: torch.Tensor  # (taps, window) overlap lengths, metres (blur folded in)
    window: slice  # the sensor samples some tap integrates (rows and columns)
    logit_range: tuple[float, float] | None  # (low, span), metres, when the input holds logits

    def transfer(self, channel: int, dtype: torch.dtype, device) -> torch.Tensor:
        return cached_transfer("asm", (self.padded, self.padded), pitch=self.phase_pixel,
                               wavelength=self.wavelengths[channel], distance=self.distance, band_limit=True,
                               dtype=dtype, device=device)  # fmt: skip

    @property
    def irradiance_scale(self) -> float:
        """|E|² → irradiance as a fraction of the power incident on the sub-optic, per m²."""
        return 1.0 / (self.samples**2 * self.phase_pixel**2)


class _WindowedTaps(torch.autograd.Function):
    """Kernel taps of every sub-optic, ``_CHUNK`` sub-optics at a time, with a hand-written backward:
    the same arithmetic as the composite path, without its full-stack intermediates.

    Why: a training step's PSFs are ~16 fields of ~800² phase pixels, and the composite path made
    a dozen passes over the whole stack (100 MB each) through memory. A chunk's arrays stay in
    cache, the padded FFT input is a reused zero buffer (no padding copy), the inverse runs only
    where the tap window is, and the backward is the adjoint of exactly these steps:

        forward   z = t(r)·e^{iφ(r)} → Z = FFT₂(pad z)·H → E = IDFT_y(IDFT_x(Z)[:, w])[w, :]
                  → K = W·(|E|²·s)·Wᵀ
        backward  Ē = 2s·E·(Wᵀ·K̄·W) → Z̄ = FFT_x(place_w(FFT_y(place_w Ē)))·H̄
                  → z̄ = IFFT₂(Z̄)[:n, :n]·P²/P² → r̄ = Im(z̄·e^{-iφ})·t·φ'(r) + Re(z̄·e^{-iφ})·t'(r)

    (PyTorch's convention for complex gradients: ∂L/∂x + i·∂L/∂y for z = x + iy. The 1/P of each
    inverse DFT's adjoint and the P² of fft2's adjoint cancel.)
    """

    @staticmethod
    def forward(ctx, radius: torch.Tensor, fields: torch.Tensor | None, plan: _TapPlan, keep: bool) -> torch.Tensor:
        sub_optics, n, size, window = radius.shape[0], plan.samples, plan.padded, plan.window
        channels, taps, width = len(plan.wavelengths), plan.weight.shape[0], window.stop - window.start
        complex_dtype = _complex_of(radius.dtype)
        lookups = None
        if fields is None:
            lookups = [_Lookup(plan, wavelength, radius) for wavelength in plan.wavelengths]
        padded = torch.zeros(_CHUNK, size, size, dtype=complex_dtype, device=radius.device)
        windows = torch.empty(sub_optics, channels, width, width, dtype=complex_dtype, device=radius.device)
        kernels = torch.empty(sub_optics, channels, taps, taps, dtype=radius.dtype, device=radius.device)
        keep = keep and fields is None  # decided outside: inside forward(), grad mode is always off
        # One tensor per sub-optic and wavelength, kept as made: a single stack would be a fresh
        # ~80 MB block whose every page faults in on first touch (measured: 35 ms of a 0.2 s pass).
        kept: list[torch.Tensor | None] = []  # per channel and chunk: z, and dφ/d(input) where it suffices
        for channel in range(channels):
            transfer = plan.transfer(channel, complex_dtype, radius.device)
            for chunk in _chunks(sub_optics):
                if lookups is not None:
                    made, phase_derivative = lookups[channel].field(chunk, derivative=keep)
                else:
                    made, phase_derivative = fields[chunk, channel], None
                padded[: chunk.stop - chunk.start, :n, :n] = made
                if keep:  # z is only read back with dφ/d(input); a varying transmission is recomputed
                    kept += [made if phase_derivative is not None else None, phase_derivative]
                spectrum = torch.fft.fft2(padded[: chunk.stop - chunk.start])
                spectrum.mul_(transfer)
                along_x = torch.fft.ifft(spectrum, dim=-1)[..., window]
                field = torch.fft.ifft(along_x, dim=-2)[..., window, :]
                windows[chunk, channel] = field
                irradiance = (field.real.square() + field.imag.square()) * plan.irradiance_scale
                kernels[chunk, channel] = plan.weight @ irradiance @ plan.weight.T
        if keep:
            ctx.save_for_backward(radius, windows, *kept)
        ctx.plan, ctx.lookups = plan, lookups
        return kernels

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_kernels: torch.Tensor):
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        radius, windows, *kept = ctx.saved_tensors
        plan, lookups = ctx.plan, ctx.lookups
        sub_optics, channels, n = radius.shape[0], len(plan.wavelengths), plan.samples
        saved = zip(kept[0::2], kept[1::2], strict=True)  # (z, dφ/d(input)) in the forward's order
        size, window = plan.padded, plan.window
        width = window.stop - window.start
        # Zero buffers whose zero parts stay zero: only the window's rows/columns are ever written.
        rows_placed = torch.zeros(_CHUNK, size, width, dtype=windows.dtype, device=radius.device)
        columns_placed = torch.zeros(_CHUNK, size, size, dtype=windows.dtype, device=radius.device)
        grad_radius = torch.empty_like(radius)
        weight = plan.weight.to(grad_kernels.dtype)
        for channel in range(channels):
            transfer_conj = plan.transfer(channel, windows.dtype, radius.device).conj().resolve_conj()
            for chunk in _chunks(sub_optics):
                count = chunk.stop - chunk.start
                grad_irradiance = weight.T @ grad_kernels[chunk, channel] @ weight
                grad_window = windows[chunk, channel] * (grad_irradiance * (2 * plan.irradiance_scale))
                rows_placed[:count, window, :] = grad_window
                columns_placed[:count, :, window] = torch.fft.fft(rows_placed[:count], dim=-2)
                spectrum = torch.fft.fft(columns_placed[:count], dim=-1)
                spectrum.mul_(transfer_conj)
                grad_aperture = torch.fft.ifft2(spectrum)[..., :n, :n]
                aperture, phase_derivative = next(saved)
                if phase_derivative is not None:
                    # Constant transmission: Im(z*·z̄) = t·Im(e^{-iφ}·z̄) is the phase's whole gradient.
                    gradient = torch.mul(aperture.conj(), grad_aperture).imag.mul_(phase_derivative)
                else:
                    gradient = lookups[channel].input_gradient(chunk, grad_aperture)
                if channel == 0:
                    grad_radius[chunk] = gradient
                else:
                    grad_radius[chunk] += gradient
        return grad_radius, None, None, None


_CHUNK = 1  # sub-optics per pass: measured fastest (1: 282 ms a step, 2: 325, 4: 425, 8: 546), in cache


def _chunks(count: int) -> list[slice]:
    return [slice(start, min(start + _CHUNK, count)) for start in range(0, count, _CHUNK)]


class _Lookup:
    """One wavelength's meta-atom response at every radius of a stack, a chunk of sub-optics at a
    time (the same formula as :meth:`MetaAtomTable.response`)."""

    def __init__(self, plan: _TapPlan, wavelength: float, values: torch.Tensor) -> None:
        self.table, self.logit_range = plan.table, plan.logit_range
        self.values = values.detach()  # radii, or logits of them
        self.columns = self.table.segment_columns(self.table._row(wavelength), values.dtype, values.device)
        self.constant_transmission = bool((self.columns.transmission_step == 0).all())
        self.unit_transmission = self.constant_transmission and bool((self.columns.transmission == 1).all())

    def _locate(self, chunk: slice, *, check: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(segment, fraction) of the chunk's radii, and sigmoid(logits) when the input holds logits."""
        squashed = None
        if self.logit_range is None:
            radius = self.values[chunk]
        else:
            squashed = torch.sigmoid(self.values[chunk])
            radius = squashed.mul(self.logit_range[1]).add_(self.logit_range[0])
        if check:
            self.table.check_in_range(radius)  # per chunk: a NaN or a stray radius is refused, in cache
        return (*self.table._locate_unchecked(radius), squashed)

    def _phase_and_transmission(self, segment: torch.Tensor, fraction: torch.Tensor):
        columns = self.columns
        phase = torch.addcmul(gather_segments(columns.phase, segment), gather_segments(columns.phase_step, segment),
                              fraction)  # fmt: skip
        if self.unit_transmission:
            return phase, None
        transmission = torch.addcmul(gather_segments(columns.transmission, segment),
                                     gather_segments(columns.transmission_step, segment), fraction)  # fmt: skip
        return phase, transmission

    def field(self, chunk: slice, *, derivative: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """t·e^{iφ} of the chunk's sub-optics (complex, like the radius's precision), and, when
        ``derivative`` and the transmission is constant, dφ/d(input) for the backward pass (made
        here from the segment already found, instead of finding it again there)."""
        segment, fraction, squashed = self._locate(chunk, check=True)
        phase, transmission = self._phase_and_transmission(segment, fraction)
        unit = torch.complex(torch.cos(phase), torch.sin(phase))
        made = unit if transmission is None else unit * transmission
        if not (derivative and self.constant_transmission):
            return made, None
        return made, self._chain(gather_segments(self.columns.phase_slope, segment), squashed)

    def _chain(self, gradient: torch.Tensor, squashed: torch.Tensor | None) -> torch.Tensor:
        """A gradient w.r.t. radii → w.r.t. the input (logits: dr/dl = span·σ(l)·(1 − σ(l))), in place."""
        if squashed is not None:
            gradient.mul_(torch.addcmul(squashed, squashed, squashed, value=-1)).mul_(self.logit_range[1])
        return gradient

    def input_gradient(self, chunk: slice, grad_aperture: torch.Tensor) -> torch.Tensor:
        """The gradient w.r.t. the chunk's radii (or logits) from z̄ when the transmission varies
        with radius: r̄ = Im(e^{-iφ}·z̄)·t·φ'(r) + Re(e^{-iφ}·z̄)·t'(r)."""
        segment, fraction, squashed = self._locate(chunk, check=False)  # checked by the forward pass
        phase, transmission = self._phase_and_transmission(segment, fraction)  # varying, so never None
        rotated = torch.complex(torch.cos(phase), -torch.sin(phase)) * grad_aperture
        gradient = (rotated.imag * transmission * gather_segments(self.columns.phase_slope, segment)
                    + rotated.real * gather_segments(self.columns.transmission_slope, segment))  # fmt: skip
        return self._chain(gradient, squashed)
