r"""Free-space propagation of scalar fields.

* ``propagate(..., method="asm")`` — band-limited angular spectrum (Matsushima & Shimobaba 2009):

  .. math:: U_z = \mathcal{F}^{-1}\{\mathcal{F}\{U_0\}\, e^{i 2\pi z \sqrt{1/\lambda^2 - f_x^2 - f_y^2}}\,
            \mathrm{rect}(f_x / 2f_\ell)\,\mathrm{rect}(f_y / 2f_\ell)\},\quad
            f_\ell = \frac{1}{\lambda\sqrt{(2\Delta f\, z)^2 + 1}}

  Evanescent components (:math:`f_x^2 + f_y^2 > 1/\lambda^2`) decay as
  :math:`e^{-2\pi |z| \sqrt{f^2 - 1/\lambda^2}}` for either sign of z; they never grow.
* ``propagate(..., method="fresnel")`` — Fresnel transfer function
  :math:`e^{i k z} e^{-i\pi\lambda z (f_x^2 + f_y^2)}`, band-limited the same way.
* ``lens_fourier`` / ``fraunhofer`` — one FFT to the back focal plane / the far field, on the
  output grid of pitch :math:`\lambda f / (N\Delta x)`.

Both transfer-function methods compute a *linear* convolution: the field is zero-padded by the
lateral spread light can reach within the grid's angular range (at most N extra samples, which
with the band limit above is exactly what makes the circular FFT convolution linear), and the
result is cropped back to the input grid. Transfer functions are cached per geometry, and padding
is applied inside the FFT so no padded copy of the input is made.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Sequence

import torch

from ..errors import OpticsInputError
from ._validate import (
    check_field,
    check_finite,
    check_positive,
    requires_grad,
    wavelength_column,
)
from .grids import fourier_plane_pitch, frequency_grid

METHODS = ("asm", "fresnel")

# FFT sizes with only these prime factors are fast in pocketfft/MKL.
_FAST_PRIMES = (2, 3, 5, 7)


def next_fast_size(n: int) -> int:
    """Smallest integer ≥ n whose prime factors are all in {2, 3, 5, 7}."""
    candidate = max(1, int(n))
    while True:
        remainder = candidate
        for prime in _FAST_PRIMES:
            while remainder % prime == 0:
                remainder //= prime
        if remainder == 1:
            return candidate
        candidate += 1


def linear_convolution_padding(n: int, *, pitch: float, wavelength: float, distance: float) -> int:
    """Zero samples to append to an axis of ``n`` samples so propagation does not wrap around.

    Light on a grid of pitch Δx travels at most at the angle θ with sin θ = min(1, λ/(2Δx))
    (the grid's Nyquist frequency), so it spreads laterally by |z|·tan θ. The padding is that
    spread in samples, capped at ``n``: with the band limit, 2n samples always suffice.

    Args:
        n: samples on the axis. pitch: sample spacing, metres.
        wavelength: metres (the longest one, for several). distance: metres.
    """
    sin_theta = min(1.0, wavelength / (2.0 * pitch))
    if sin_theta >= 1.0:
        return n
    spread = abs(distance) * sin_theta / math.sqrt(1.0 - sin_theta**2)
    return min(n, math.ceil(spread / pitch))


def window_padding(n: int, *, pitch: float, wavelength: float, distance: float, window: float) -> int:
    """Zero samples to append so a centred output ``window`` (metres wide) is free of wrap-around.

    When only the centre of the output plane is needed (a PSF on a small sensor window), the
    periodic copies of the output need only stay clear of that window: with a period
    L = (n + padding)·Δx, light landing anywhere within n·Δx/2 + spread of the axis must not reach
    L − window/2, so L ≥ n·Δx/2 + spread + window/2. L is also kept ≥ 2·spread, so that the
    Matsushima–Shimobaba band limit (which tightens as L shrinks) stays at the grid's Nyquist
    angle and the field inside the window is the same as with full linear-convolution padding.
    For a wide aperture and a small window this is about half of
    :func:`linear_convolution_padding`.

    Args:
        n: samples on the axis. pitch: metres. wavelength: metres (the longest one).
        distance: metres. window: width of the centred region that must be exact, metres.
    """
    sin_theta = min(1.0, wavelength / (2.0 * pitch))
    if sin_theta >= 1.0:
        return n
    spread = abs(distance) * sin_theta / math.sqrt(1.0 - sin_theta**2)
    period = max(n * pitch / 2 + spread + window / 2, 2 * spread)
    needed = math.ceil(period / pitch) - n + 1  # one sample of margin
    return max(0, min(n, needed))


def transfer_function(
    method: str,
    padded_shape: tuple[int, int],
    *,
    pitch: float | torch.Tensor,
    wavelength: float | torch.Tensor,
    distance: float | torch.Tensor,
    band_limit: bool = True,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Transfer function H(f_y, f_x) in FFT order, shape ``padded_shape`` or (C, *padded_shape).

    Computed in float64 (the carrier phase 2πz/λ is thousands of radians) and cast to ``dtype``.
    Differentiable w.r.t. tensor-valued ``distance``/``wavelength``.

    Args:
        method: "asm" or "fresnel". padded_shape: (ny, nx) of the padded grid.
        pitch: sample spacing, metres. wavelength: metres, scalar or (C, 1, 1) tensor.
        distance: metres, any sign. band_limit: apply the Matsushima–Shimobaba limit.
    """
    ny, nx = padded_shape
    fy = frequency_grid(ny, float(pitch), device=device).reshape(-1, 1)
    fx = frequency_grid(nx, float(pitch), device=device).reshape(1, -1)
    if isinstance(pitch, torch.Tensor) and pitch.requires_grad:
        raise OpticsInputError("gradients with respect to the sample pitch are not supported.")
    wavelength = torch.as_tensor(wavelength, dtype=torch.float64, device=device)
    distance = torch.as_tensor(distance, dtype=torch.float64, device=device)
    freq_sq = fx**2 + fy**2
    if method == "asm":
        kz_sq = 1.0 / wavelength**2 - freq_sq  # (cycles/m)^2
        propagating = kz_sq > 0
        # Evaluate both branches on safe arguments so no inf/NaN reaches the gradient.
        kz = torch.sqrt(torch.where(propagating, kz_sq, torch.ones_like(kz_sq)))
        kappa = torch.sqrt(torch.where(propagating, torch.ones_like(kz_sq), -kz_sq))
        phase = 2 * math.pi * distance * kz
        decay = torch.exp(-2 * math.pi * distance.abs() * kappa)
        real = torch.where(propagating, torch.cos(phase), decay)
        imag = torch.where(propagating, torch.sin(phase), torch.zeros_like(decay))
    elif method == "fresnel":
        phase = 2 * math.pi * distance / wavelength - math.pi * wavelength * distance * freq_sq
        real, imag = torch.cos(phase), torch.sin(phase)
    else:
        raise OpticsInputError(f"method must be one of {METHODS}, got {method!r}.")
    transfer = torch.complex(real, imag)
    if band_limit:
        z_abs = float(distance.detach().abs())
        lam = wavelength.detach()
        limits = []
        for n in (ny, nx):
            delta_f = 1.0 / (n * float(pitch))
            if method == "asm":
                limit = 1.0 / (lam * math.sqrt((2 * delta_f * z_abs) ** 2 + 1.0))
            else:  # chirp of the Fresnel kernel sampled at Δf: λ|z|f ≤ 1/(2Δf)
                limit = 1.0 / (2 * delta_f * lam * max(z_abs, 1e-300))
            limits.append(limit)
        mask = (fy.abs() < limits[0]) & (fx.abs() < limits[1])
        transfer = transfer * mask
    return transfer.to(dtype)


class _TransferCache:
    """Least-recently-used cache of transfer functions, bounded in bytes, not entries."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple, build) -> torch.Tensor:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return entry
        self.misses += 1
        entry = build()
        size = entry.numel() * entry.element_size()
        if size <= self.max_bytes:
            self._entries[key] = entry
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
        return entry

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self.hits = self.misses = 0


transfer_cache = _TransferCache(int(os.environ.get("ONN_TRANSFER_CACHE_MB", "2048")) * 2**20)


def _cache_key_part(value) -> tuple | float:
    if isinstance(value, torch.Tensor):
        return tuple(value.detach().reshape(-1).tolist())
    return float(value)


def propagate(
    field: torch.Tensor,
    *,
    wavelength: float | Sequence[float] | torch.Tensor,
    pitch: float,
    distance: float | torch.Tensor,
    method: str = "asm",
    padding: int | tuple[int, int] | None = None,
    band_limit: bool = True,
    window: tuple[slice, slice] | None = None,
) -> torch.Tensor:
    """Propagate a complex field by ``distance`` and return it on the same grid.

    Args:
        field: complex tensor (..., ny, nx); leading dimensions are batched. With several
            wavelengths the third-last dimension indexes them: (..., C, ny, nx).
        wavelength: metres; a scalar, or a sequence/tensor of C values (one per dim -3 slice).
        pitch: sample spacing of the field, metres (square samples).
        distance: propagation distance, metres; negative propagates backwards. A tensor with
            ``requires_grad`` gives gradients w.r.t. the distance.
        method: "asm" (band-limited angular spectrum, exact scalar diffraction) or "fresnel"
            (paraxial transfer function).
        padding: zero samples appended per axis (int or (py, px)); default: derived from the
            geometry by :func:`linear_convolution_padding`, so the convolution is linear.
        band_limit: apply the Matsushima–Shimobaba band limit (recommended; without it the
            sampled transfer function aliases at long distances).
        window: (rows, columns) slices of the output grid: only those samples are computed and
            returned (a sensor that integrates a small window needs no more). The values are
            those of the whole field, sliced; the inverse transform then runs along x over
            every row but along y over the window's columns only.

    Returns:
        The propagated field, same shape, dtype and device as ``field`` (the window's shape if given).
    """
    check_field(field)
    check_positive("pitch", pitch)
    check_finite("distance", distance)
    if method not in METHODS:
        raise OpticsInputError(f"method must be one of {METHODS}, got {method!r}.")
    wavelengths = wavelength_column(wavelength, field)
    if isinstance(distance, int | float) and distance == 0:
        return field.clone()  # the identity, exactly

    ny, nx = field.shape[-2:]
    if padding is None:
        longest = float(wavelengths.max()) if isinstance(wavelengths, torch.Tensor) else float(wavelengths)
        z = float(distance.detach()) if isinstance(distance, torch.Tensor) else float(distance)
        pad_y = linear_convolution_padding(ny, pitch=float(pitch), wavelength=longest, distance=z)
        pad_x = linear_convolution_padding(nx, pitch=float(pitch), wavelength=longest, distance=z)
    else:
        pad_y, pad_x = (padding, padding) if isinstance(padding, int) else padding
        if pad_y < 0 or pad_x < 0:
            raise OpticsInputError(f"padding must be non-negative, got {padding}.")
    padded_shape = (next_fast_size(ny + pad_y), next_fast_size(nx + pad_x))

    make = transfer_function if requires_grad(distance, wavelength) else cached_transfer
    transfer = make(method, padded_shape, pitch=pitch, wavelength=wavelengths, distance=distance,
                    band_limit=band_limit, dtype=field.dtype, device=field.device)  # fmt: skip
    return _convolve_cropped(field, transfer, padded_shape, window)


def cached_transfer(method: str, padded_shape: tuple[int, int], **settings) -> torch.Tensor:
    """``transfer_function(method, padded_shape, **settings)`` through the bounded cache (constant
    geometry: no gradient flows to it). Settings as :func:`transfer_function`, lengths in metres."""

    def build() -> torch.Tensor:
        return transfer_function(method, padded_shape, **settings)

    def part(value):
        return _cache_key_part(value) if isinstance(value, torch.Tensor | float | int) else str(value)

    key = (method, tuple(padded_shape), *((name, part(value)) for name, value in sorted(settings.items())))
    return transfer_cache.get(key, build)


def _convolve_cropped(field: torch.Tensor, transfer: torch.Tensor, padded_shape,
                      window: tuple[slice, slice] | None = None) -> torch.Tensor:  # fmt: skip
    """Multiply the zero-padded spectrum by ``transfer``; return the top-left (ny, nx) block.

    ``fft2(..., s=...)`` pads inside the transform, so no padded copy of the input is made, and
    the product is formed in place when no gradient needs the spectrum. (Splitting into 1-D
    passes that skip the zero rows was measured slower here: a 1-D FFT along the strided y
    axis costs more than a whole ``fft2``.)
    """
    ny, nx = field.shape[-2:]
    spectrum = torch.fft.fft2(field, s=padded_shape)
    if spectrum.requires_grad or transfer.requires_grad:
        spectrum = spectrum * transfer
    else:
        spectrum.mul_(transfer)
    if window is None:
        return torch.fft.ifft2(spectrum)[..., :ny, :nx].contiguous()
    rows, columns = (_within(part, size, name) for part, size, name in zip(window, (ny, nx), ("rows", "columns"),
                                                                          strict=True))  # fmt: skip
    along_x = torch.fft.ifft(spectrum, dim=-1)[..., columns]
    return torch.fft.ifft(along_x, dim=-2)[..., rows, :].contiguous()


def _within(part: slice, size: int, name: str) -> slice:
    """A window slice checked to lie inside the unpadded grid (outside it the padded grid's wrap-around would show)."""
    start, stop, step = part.indices(size)
    if step != 1 or stop <= start or part.start is None or part.stop is None or not 0 <= part.start < part.stop <= size:
        raise OpticsInputError(f"window {name} must be a slice start:stop with 0 ≤ start < stop ≤ {size}; got {part}.")
    return slice(start, stop)


def _centred_fft2(field: torch.Tensor, padded_shape: tuple[int, int]) -> torch.Tensor:
    """Centred, zero-padded 2-D DFT: input centre (n//2) maps to output centre (m//2)."""
    ny, nx = field.shape[-2:]
    my, mx = padded_shape
    if my < ny or mx < nx:
        raise OpticsInputError(f"padded size {padded_shape} is smaller than the field {(ny, nx)}.")
    top, left = my // 2 - ny // 2, mx // 2 - nx // 2
    padded = torch.nn.functional.pad(field, (left, mx - nx - left, top, my - ny - top))
    spectrum = torch.fft.fft2(torch.fft.ifftshift(padded, dim=(-2, -1)))
    return torch.fft.fftshift(spectrum, dim=(-2, -1))


def _padded_shape(field: torch.Tensor, padded_size: int | tuple[int, int] | None) -> tuple[int, int]:
    if padded_size is None:
        return tuple(field.shape[-2:])
    if isinstance(padded_size, int):
        return (padded_size, padded_size)
    return tuple(padded_size)


def lens_fourier(
    field: torch.Tensor,
    *,
    wavelength: float,
    pitch: float,
    focal_length: float,
    padded_size: int | tuple[int, int] | None = None,
) -> tuple[torch.Tensor, float]:
    r"""Field in the back focal plane of an ideal lens, for a field in its front focal plane.

    .. math:: U_f(u, v) = \frac{1}{i\lambda f}\iint U(x, y)\,
              e^{-i 2\pi (x u + y v)/(\lambda f)}\,dx\,dy

    Energy is conserved: :math:`\sum |U_f|^2 \Delta u^2 = \sum |U|^2 \Delta x^2`.

    Args:
        field: complex (..., ny, nx), centred at (ny//2, nx//2).
        wavelength: metres (a single value: the output pitch depends on it).
        pitch: input sample spacing, metres. focal_length: metres.
        padded_size: zero-pad the input to this size first (finer output sampling).

    Returns:
        (field in the focal plane, centred at (m//2, m//2); its sample pitch in metres,
        λf/(mΔx) along each axis — taken from the padded y size; pad to a square for equal pitch).
    """
    check_field(field)
    check_positive("wavelength", wavelength)
    check_positive("pitch", pitch)
    check_positive("focal_length", focal_length)
    wavelength = float(wavelength)  # one value per call: the output pitch λf/(NΔx) depends on it
    shape = _padded_shape(field, padded_size)
    if shape[0] != shape[1] or field.shape[-1] != field.shape[-2]:
        raise OpticsInputError(
            "lens_fourier needs a square field and padded size so the output pitch is equal in x and y."
        )
    spectrum = _centred_fft2(field, shape)
    scale = pitch**2 / (wavelength * focal_length)
    out = spectrum * torch.tensor(-1j * scale, dtype=field.dtype, device=field.device)
    return out, fourier_plane_pitch(wavelength, focal_length, shape[0], pitch)


def fraunhofer(
    field: torch.Tensor,
    *,
    wavelength: float,
    pitch: float,
    distance: float,
    padded_size: int | tuple[int, int] | None = None,
) -> tuple[torch.Tensor, float]:
    r"""Far field at ``distance`` (Fraunhofer), including its quadratic phase and carrier.

    .. math:: U(u) = \frac{e^{ikz} e^{i\pi u^2/(\lambda z)}}{i\lambda z}
              \mathcal{F}\{U_0\}\!\left(\frac{u}{\lambda z}\right)

    Valid when the Fresnel number a²/(λz) ≪ 1 (a: aperture half-width). Arguments and return
    as :func:`lens_fourier`, with ``distance`` (metres) in place of the focal length.
    """
    out, out_pitch = lens_fourier(
        field, wavelength=wavelength, pitch=pitch, focal_length=distance, padded_size=padded_size
    )
    m = out.shape[-1]
    u = (torch.arange(m, dtype=torch.float64, device=field.device) - m // 2) * out_pitch
    radius_sq = u.reshape(-1, 1) ** 2 + u.reshape(1, -1) ** 2
    phase = 2 * math.pi * distance / wavelength + math.pi * radius_sq / (wavelength * distance)
    return out * torch.polar(torch.ones_like(phase), phase).to(out.dtype), out_pitch
