"""Optical frontends: the meta-optic's PSFs act as convolution kernels on an incoherent scene.

Two realisations share one interface (``forward(images) → feature maps``, ``signed_kernels()``,
``capture_kernels()``, ``optical_macs()``):

* :class:`IdealFrontend` — free, bias-free kernels: the upper bound of what any optic could do.
* :class:`PhysicalFrontend` — kernels are the intensity PSFs of learnable meta-atom radius maps,
  computed through the optics core (meta-atom table → band-limited angular spectrum to the sensor
  → |E|² → integration onto sensor pixels → taps).

With signed kernels, each kernel K is two non-negative captures, K⁺ and K⁻, subtracted digitally:
out = I∗K⁺ − I∗K⁻. An optional sensor model (shot/read noise, ADC) acts on each capture, so the
split matters exactly when noise or quantisation sits between the optics and the subtraction.

Convolution convention (as :func:`onn_core.optics.imaging.incoherent_image`): a point at (y₀, x₀)
images to the PSF centred on (y₀, x₀); output maps have the input's size ('same').
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..budget import SubopticGrid, check_fits
from ..design import Design
from ..errors import DesignError
from ..optics.metasurface import MetaAtomTable, default_meta_atom_table
from ..optics.psf import band_limit_projection, incoherent_cutoff
from ..optics.sensor import sensor_readout
from ..optics.suboptic import suboptic_kernel_taps, suboptic_padding


@dataclass(frozen=True)
class SensorSettings:
    """Camera model applied to each capture during training and inference.

    Attributes:
        full_well: photo-electrons at full scale; a white scene through a lossless unit-sum PSF
            fills the well (the exposure is set that way).
        read_noise: RMS read noise, electrons.
        bit_depth: ADC bits (None: no quantisation).
        shot_noise: add photon shot noise.
    """

    full_well: float = 10_000.0
    read_noise: float = 5.0
    bit_depth: int | None = 8
    shot_noise: bool = True


def _convolve(images: torch.Tensor, psfs: torch.Tensor) -> torch.Tensor:
    """Incoherent imaging of (B, C, H, W) through PSFs (K, C, t, t), summed over colour: (B, K, H, W)."""
    taps = psfs.shape[-1]
    return F.conv2d(images, psfs.flip(-2, -1), padding=taps // 2)


class OpticalFrontend(nn.Module):
    """Shared behaviour: captures → optional sensor → signed subtraction → optional normalisation.

    Args:
        kernels: signed (or unsigned) kernels produced. channels: input colour channels.
        taps: kernel taps per side (odd). signed: realise signed kernels as K⁺/K⁻ pairs.
        sensor: camera model on each capture (None: ideal readout).
        normalise_intensity: divide feature maps by the frame's mean input intensity, as an
            auto-exposure would: the network becomes blind to display brightness (the error
            model's gain α). scale: input downsampling (sensor binning) of this kernel group.
    """

    def __init__(
        self,
        kernels: int,
        channels: int,
        taps: int,
        *,
        signed: bool = True,
        sensor: SensorSettings | None = None,
        normalise_intensity: bool = False,
        scale: int = 1,
    ) -> None:
        super().__init__()
        if taps % 2 != 1:
            raise DesignError("kernel_taps", taps, "must be odd so each kernel has a centre tap.")
        self.kernels, self.channels, self.taps = kernels, channels, taps
        self.signed, self.sensor = signed, sensor
        self.normalise_intensity, self.scale = normalise_intensity, scale

    @property
    def captures_per_kernel(self) -> int:
        return 2 if self.signed else 1

    def capture_kernels(self) -> torch.Tensor:
        """Non-negative kernels of every capture (K·captures_per_kernel, C, t, t), K⁺ before K⁻."""
        raise NotImplementedError

    def capture_gains(self) -> torch.Tensor | None:
        """Digital gain per capture applied before subtraction (None: 1)."""
        return None

    def signed_kernels(self) -> torch.Tensor:
        """Effective kernels (K, C, t, t) the backend sees (gains and subtraction applied)."""
        captures = self.capture_kernels()
        gains = self.capture_gains()
        if gains is not None:
            captures = captures * gains.view(-1, 1, 1, 1)
        if not self.signed:
            return captures
        return captures[: self.kernels] - captures[self.kernels :]

    def _downsample(self, images: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(images, self.scale) if self.scale > 1 else images

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.channels:
            raise DesignError(
                "input_channels", images.shape[1], f"the frontend was built for {self.channels} channel(s)."
            )
        if self.sensor is None:
            # No noise between optics and subtraction: the captures collapse exactly into one
            # convolution with the signed kernels (same function, half the work).
            return self.noiseless_readout(images, self.signed_kernels())
        images = self._downsample(images)
        captures = self._read_sensor(_convolve(images, self.capture_kernels()))
        gains = self.capture_gains()
        if gains is not None:
            captures = captures * gains.view(1, -1, 1, 1)
        features = captures[:, : self.kernels] - captures[:, self.kernels :] if self.signed else captures
        return self._exposure(images, features)

    def noiseless_readout(self, images: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
        """Feature maps of ``images`` through given signed kernels (K, C, t, t), without a sensor model."""
        images = self._downsample(images)
        return self._exposure(images, _convolve(images, kernels))

    def kernel_jacobian(self, images: torch.Tensor, signals: torch.Tensor) -> torch.Tensor:
        """Each image's gradient of Σ signal · (noise-free feature maps) w.r.t. the signed kernels.

        ``signals``: (outputs, N, K, H, W), e.g. the gradients of each model output reaching this
        frontend's feature maps. Returns (outputs, N, K, C, t, t). The readout is linear in the
        kernels, so the gradient is the signal correlated with the image's patches, whatever the
        kernels are: ∂feature[k, p]/∂K[k, c, u, v] = patch_p[c, t−1−u, t−1−v] (the PSF is flipped
        by the convolution), divided by the auto-exposure's mean intensity when it is on.
        """
        images = self._downsample(images)
        count, outputs = len(images), signals.shape[0]
        patches = F.unfold(images, self.taps, padding=self.taps // 2)  # (N, C·t², pixels)
        if self.normalise_intensity:
            patches = patches / (images.mean(dim=(1, 2, 3)) + 1e-6).view(-1, 1, 1)
        flat = signals.transpose(0, 1).reshape(count, outputs * self.kernels, -1)  # (N, outputs·K, pixels)
        jacobian = torch.bmm(flat, patches.transpose(1, 2))
        jacobian = jacobian.view(count, outputs, self.kernels, self.channels, self.taps, self.taps)
        return jacobian.flip(-2, -1).transpose(0, 1)

    def _exposure(self, images: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        if self.normalise_intensity:
            features = features / (images.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
        return features

    def _read_sensor(self, captures: torch.Tensor) -> torch.Tensor:
        settings = self.sensor
        electrons = captures * settings.full_well
        return sensor_readout(
            electrons,
            full_well=settings.full_well,
            read_noise=settings.read_noise,
            bit_depth=settings.bit_depth,
            shot_noise=settings.shot_noise,
        )

    def optical_macs(self, height: int, width: int) -> int:
        """Multiply-accumulates the optics performs per image (free: done by light)."""
        pixels = (height // self.scale) * (width // self.scale)
        return self.kernels * self.captures_per_kernel * self.channels * self.taps**2 * pixels

    def sensor_values(self, height: int, width: int) -> int:
        """Values read from the sensor per image: every capture's output pixels."""
        return self.kernels * self.captures_per_kernel * (height // self.scale) * (width // self.scale)

    def digital_macs(self, height: int, width: int) -> int:
        """Digital work of the frontend per image, counting each add, multiply or divide as one MAC:
        the K⁺ − K⁻ subtraction, capture gains, and the auto-exposure (mean of the input, one
        division per feature value)."""
        pixels = (height // self.scale) * (width // self.scale)
        work = self.kernels * pixels if self.signed else 0
        if self.capture_gains() is not None:
            work += self.kernels * self.captures_per_kernel * pixels
        if self.normalise_intensity:
            work += self.channels * pixels + self.kernels * pixels
        return work


class IdealFrontend(OpticalFrontend):
    """Free kernels. Signed kernels are unconstrained; unsigned ones are kept ≥ 0 (w²).

    K⁺ = max(K, 0) and K⁻ = max(−K, 0) are each captured through a unit-sum (lossless, passive)
    PSF and scaled back digitally by their sums, so with a sensor model the captures have
    physical signal levels.
    """

    def __init__(
        self, kernels: int, channels: int, taps: int, *, band_limit: torch.Tensor | None = None, **options
    ) -> None:
        super().__init__(kernels, channels, taps, **options)
        fan_in = channels * taps * taps
        weight = torch.randn(kernels, channels, taps, taps) * math.sqrt(2.0 / fan_in)
        self.weight = nn.Parameter(weight if self.signed else weight.abs().sqrt())
        if band_limit is not None and tuple(band_limit.shape) != (channels, taps * taps, taps * taps):
            raise DesignError("band_limit", tuple(band_limit.shape),
                              f"needs one {taps * taps}² projector per channel ({channels}).")  # fmt: skip
        # Per-channel projector onto the spatial frequencies the optics can pass (see
        # realisable_band): the kernels stay realisable by a sub-optic of the design's aperture.
        self.register_buffer("band_limit", None if band_limit is None else band_limit.float())

    def kernel_map(self, weight: torch.Tensor) -> torch.Tensor:
        """Kernels (K, C, t, t) from a weight tensor of the same shape (a pure function of it).

        Signed: K = P·W. Unsigned: K = (P½·W)², a non-negative intensity from a band-limited
        amplitude (P½ passes half the intensity cutoff, as a coherent transfer function does), so
        the kernel is a physical PSF whose spectrum stays within the cutoff.
        """
        if self.band_limit is not None:
            weight = torch.einsum("cij,kcj->kci", self.band_limit, weight.flatten(2)).view_as(weight)
        return weight if self.signed else weight**2

    def signed_kernels(self) -> torch.Tensor:
        return self.kernel_map(self.weight)

    def _parts(self) -> torch.Tensor:
        kernels = self.signed_kernels()
        return torch.cat([F.relu(kernels), F.relu(-kernels)]) if self.signed else kernels

    def capture_kernels(self) -> torch.Tensor:
        parts = self._parts()
        return parts / parts.sum(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)

    def capture_gains(self) -> torch.Tensor | None:
        if self.sensor is None:
            return None
        return self._parts().sum(dim=(1, 2, 3)).clamp_min(1e-12)


@contextlib.contextmanager
def held_kernels(model: nn.Module) -> Iterator[None]:
    """Within the block, each physical frontend of ``model`` computes its PSFs once per parameter
    version and grad mode, and every forward pass reuses them.

    Only for code that neither changes the radius maps in place without an optimiser step nor
    back-propagates twice through one forward (a training step's loss, an evaluation); outside
    the block nothing is kept.
    """
    frontends = [module for module in model.modules() if isinstance(module, PhysicalFrontend)]
    for frontend in frontends:
        frontend._held = (None, None)
    try:
        yield
    finally:
        for frontend in frontends:
            frontend._held = None


def realisable_band(design: Design, taps: int, scale: int = 1, *, amplitude: bool = False) -> torch.Tensor | None:
    """Per-channel projectors (C, t², t²) onto the kernels a sub-optic of the design can realise.

    An intensity PSF through a square aperture of side k at distance z carries no spatial
    frequency above k/(λz) per axis (:func:`~onn_core.optics.psf.incoherent_cutoff`); its
    amplitude, whose square it is, none above half that (``amplitude=True``). Returns None when
    every channel's cutoff reaches the taps' Nyquist frequency (nothing to remove).
    """
    tap_pitch = design.tap_pitch * scale
    # A monochrome input under several wavelengths is limited by the longest (lowest cutoff).
    wavelengths = design.wavelengths if design.input_channels > 1 else (max(design.wavelengths),)
    projectors, binding = [], False
    for wavelength in wavelengths:
        cutoff = incoherent_cutoff(design.kernel_size, wavelength, design.sensor_distance) * (0.5 if amplitude else 1)
        binding |= cutoff < 1 / (2 * tap_pitch) * (taps - 1) / taps
        projectors.append(band_limit_projection(taps, tap_pitch, cutoff))
    return torch.stack(projectors) if binding else None


def default_phase_pixel(design: Design) -> float:
    """Coarsest simulation pitch (metres, a whole number of meta-atoms) that loses no aperture.

    Every point of a sub-optic must be able to steer light to the kernel centre: a phase sampled
    at Δ steers up to sinθ = λ/(2Δ), so Δ ≤ λ_min / (2·NA). It is also kept ≤ half a sensor pixel.
    """
    limit = min(min(design.wavelengths) / (2 * design.numerical_aperture), design.sensor_pixel_pitch / 2)
    atoms = max(1, math.floor(limit / design.meta_atom_pitch * (1 + 1e-9)))
    return atoms * design.meta_atom_pitch


def suboptic_grid(design: Design, captures: int, phase_pixel: float | None = None, scale: int = 1) -> SubopticGrid:
    """How a physical frontend of ``design`` samples its ``captures`` sub-optics (phase pixel in
    metres; default :func:`default_phase_pixel`), computed without allocating anything."""
    pitch = float(phase_pixel or default_phase_pixel(design))
    samples = max(1, round(design.kernel_size / pitch))
    # Only the kernel window on the sensor matters: pad just enough to keep it alias-free.
    padding = suboptic_padding(samples, phase_pixel=pitch, wavelengths=design.wavelengths,
                               distance=design.sensor_distance,
                               window=design.kernel_taps * design.tap_pitch * scale)  # fmt: skip
    return SubopticGrid(samples, padding, captures, len(design.wavelengths))


class PhysicalFrontend(OpticalFrontend):
    """Kernels are PSFs of learnable meta-atom radius maps, one square sub-optic per capture.

    Per sub-optic s and wavelength λ_c (input channel c is shown at wavelength c):
    t·e^{iφ} from the meta-atom table at the radius map → band-limited angular spectrum over the
    design's sensor distance → |E|² → power on each sensor pixel of the kernel window → summed
    into ``sensor_pixels_per_tap``² taps. The kernel is the fraction of the power incident on the
    sub-optic that lands on each tap (≤ 1 in total: light outside the window is lost).

    Args:
        design: the frontend design (pitch, wavelengths, distance, sensor).
        kernels: signed (or unsigned) kernels. phase_pixel: simulation/phase-map pitch, metres,
            a multiple of the meta-atom pitch (default :func:`default_phase_pixel`); each phase
            pixel is a block of identical meta-atoms. table: meta-atom library.
        init: "lens" (a focusing lens at the sensor distance plus smooth random phase) or "random".
        perturbation: RMS of the smooth random phase added to the lens, radians (breaks the
            symmetry between sub-optics). seed: for the initial radius maps.
    """

    def __init__(
        self,
        design: Design,
        kernels: int,
        *,
        phase_pixel: float | None = None,
        table: MetaAtomTable | None = None,
        init: str = "lens",
        perturbation: float = 2.0,
        seed: int = 0,
        **options,
    ) -> None:
        options.setdefault("signed", design.signed_kernels)
        super().__init__(kernels, design.input_channels, design.kernel_taps, **options)
        self.design = design
        self.table = table or default_meta_atom_table()
        self.phase_pixel = float(phase_pixel or default_phase_pixel(design))
        ratio = self.phase_pixel / design.meta_atom_pitch
        if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
            raise DesignError(
                "phase_pixel", self.phase_pixel, "must be a whole number of meta-atom pitches.",
                f"use a multiple of {design.meta_atom_pitch * 1e9:.0f} nm.",
            )  # fmt: skip
        grid = suboptic_grid(design, kernels * self.captures_per_kernel, self.phase_pixel, self.scale)
        check_fits(grid.bytes, "kernel_size", design.kernel_size,
                   f"simulating {grid.captures} sub-optics of {grid.samples} × {grid.samples} phase pixels "
                   f"({self.phase_pixel * 1e9:.0f} nm) with wave optics",
                   "use smaller kernels (kernel_size), fewer of them, or the ideal frontend")  # fmt: skip
        self.samples = grid.samples
        if len(design.wavelengths) != self.channels:
            raise DesignError(
                "wavelengths", design.wavelengths,
                f"a physical frontend maps each of the {self.channels} input channel(s) to one wavelength.",
                "give one wavelength per input channel.",
            )  # fmt: skip
        for wavelength in design.wavelengths:
            self.table._row(wavelength)  # raises a clear error if the table lacks it
        low, high = self.table.radius_range
        self.radius_low, self.radius_span = low, high - low
        self.padding = grid.padding
        captures = kernels * self.captures_per_kernel
        generator = torch.Generator().manual_seed(seed)
        shape = (captures, self.samples, self.samples)
        if init == "lens":
            from ..optics.elements import lens_phase

            lens = lens_phase(
                (self.samples, self.samples), pitch=self.phase_pixel, wavelength=design.wavelengths[0],
                focal_length=design.sensor_distance, dtype=torch.float64,
            )  # fmt: skip
            smooth = F.interpolate(
                torch.randn(captures, 1, 8, 8, generator=generator, dtype=torch.float64),
                size=(self.samples, self.samples),
                mode="bicubic",
                align_corners=True,
            )[:, 0]
            radius = self.table.radius_for_phase(lens + perturbation * smooth, design.wavelengths[0])
        elif init == "random":
            radius = low + (high - low) * torch.rand(shape, generator=generator, dtype=torch.float64)
        else:
            raise DesignError("init", init, "must be 'lens' or 'random'.")
        fraction = ((radius - low) / max(high - low, 1e-30)).clamp(1e-3, 1 - 1e-3)
        self.radius_logit = nn.Parameter(torch.logit(fraction).float())

    def radius_map(self) -> torch.Tensor:
        """Pillar radii (captures, n, n), metres, always inside the table's fabricable range."""
        return self.radius_low + self.radius_span * torch.sigmoid(self.radius_logit)

    def capture_kernels(self) -> torch.Tensor:
        # Inside held_kernels() the PSFs of unchanged radius maps are computed once and shared
        # (with their graph) by every forward pass: a distillation step runs the model up to
        # three times, an evaluation once per batch, and each PSF costs a wave-optics simulation.
        key = (self.radius_logit._version, torch.is_grad_enabled())
        held = getattr(self, "_held", None)
        if held is not None and held[0] == key:
            return held[1]
        design = self.design
        # A group working on a binned (downsampled) image has taps `scale` times larger. Power is
        # integrated straight onto taps (an odd count, so the window is centred on the axis); a
        # tap's power is exactly the sum over its sensor pixels.
        kernels = suboptic_kernel_taps(
            self.radius_logit, table=self.table, wavelengths=design.wavelengths, phase_pixel=self.phase_pixel,
            distance=design.sensor_distance, tap_pitch=design.tap_pitch * self.scale, taps=design.kernel_taps,
            padding=self.padding, logit_range=(self.radius_low, self.radius_span),
        )  # fmt: skip
        if held is not None:
            self._held = (key, kernels)
        return kernels

    def efficiency(self) -> torch.Tensor:
        """Fraction of incident power each capture's kernel collects, (captures, C)."""
        return self.capture_kernels().sum(dim=(-2, -1))
