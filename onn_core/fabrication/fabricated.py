"""A trained model seen through fabricated optics.

:func:`fabricate` returns a copy of a trained student whose optical frontends are replaced by
:class:`FabricatedFrontend` s: frozen capture PSFs (buffers, not parameters) as the fab made
them, plus the capture path's errors (misalignment, brightness, sensor). The digital backend is
untouched, so the copy is exactly what post-fabrication compensation fine-tunes.

Where the fabricated captures come from, in order of preference:

1. **measured PSFs** (:mod:`.measured`), scaled to the designed captures' total power;
2. **a metasurface** (inverse design, or the radius maps of a physical-frontend run): the radius
   maps are perturbed (bias, random error, quantisation, phase noise) and simulated again, so the
   as-designed gap between realised and target kernels is part of what the backend sees;
3. **the trained kernels** themselves, for runs not inverse-designed yet: then only
   kernel-level terms apply (kernel_sigma, psf_blur, gains, misalignment, sensor).

Digital gains are calibrated on the *designed* optics (before any error), as a designer would
set them, so a fabricated sub-optic that collects less light really gives a weaker capture.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..design import Design
from ..errors import DesignError
from ..models.frontends import OpticalFrontend, PhysicalFrontend, SensorSettings
from ..optics.metasurface import MetaAtomTable, default_meta_atom_table
from ..optics.suboptic import suboptic_kernel_taps
from .error_model import ErrorModel
from .inverse_design import GroupMetasurface, Metasurface, capture_targets


class FabricatedFrontend(OpticalFrontend):
    """Fixed capture PSFs with the capture path's errors; no trainable parameters.

    Args:
        captures: non-negative capture kernels (S, C, t, t), power fraction per tap; K⁺ of every
            kernel then K⁻ of every kernel when signed.
        gains: digital gain per capture (S,), applied before the subtraction (None: 1).
        kernels, signed, scale, normalise_intensity: as the trained frontend.
        sensor: camera model on each capture (None: ideal readout).
        brightness: gain α on the scene's brightness.
        shifts: misalignment of the image for each capture (S, 2) as (y, x), in input pixels of
            this group (None: aligned). rotation: of the image about its centre, radians; positive
            turns +x (columns) toward +y (rows).
    """

    def __init__(
        self,
        captures: torch.Tensor,
        gains: torch.Tensor | None,
        *,
        kernels: int,
        signed: bool,
        scale: int = 1,
        normalise_intensity: bool = False,
        sensor: SensorSettings | None = None,
        brightness: float = 1.0,
        shifts: torch.Tensor | None = None,
        rotation: float = 0.0,
    ) -> None:
        super().__init__(kernels, captures.shape[1], captures.shape[-1], signed=signed, sensor=sensor,
                         normalise_intensity=normalise_intensity, scale=scale)  # fmt: skip
        expected = kernels * self.captures_per_kernel
        if captures.shape[0] != expected:
            raise DesignError("captures", captures.shape[0], f"{kernels} kernels need {expected} captures.")
        self.register_buffer("captures", captures.float())
        self.register_buffer("gains", None if gains is None else gains.float())
        self.register_buffer("shifts", None if shifts is None else shifts.float())
        self.brightness, self.rotation = float(brightness), float(rotation)

    def capture_kernels(self) -> torch.Tensor:
        return self.captures

    def capture_gains(self) -> torch.Tensor | None:
        return self.gains

    @property
    def misaligned(self) -> bool:
        return self.rotation != 0 or (self.shifts is not None and bool(self.shifts.abs().max() > 0))

    def _capture(self, images: torch.Tensor) -> torch.Tensor:
        """Each capture's sensor image (B, S, H, W), with its own misalignment."""
        flipped = self.captures.flip(-2, -1)
        if not self.misaligned:
            return F.conv2d(images, flipped, padding=self.taps // 2)
        batch, channels, height, width = images.shape
        count = self.captures.shape[0]
        shifts = self.shifts if self.shifts is not None else torch.zeros(count, 2, device=images.device)
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        theta = torch.zeros(count, 2, 3, dtype=images.dtype, device=images.device)
        # grid_sample reads the input at A·x + t (normalised units, x/W and y/H): moving the image
        # by +s means reading at x − s; rotating it by θ means reading at R(−θ)·x.
        theta[:, 0, 0], theta[:, 1, 1] = cos, cos
        theta[:, 0, 1], theta[:, 1, 0] = sin * height / width, -sin * width / height
        theta[:, 0, 2] = -2 * shifts[:, 1] / width
        theta[:, 1, 2] = -2 * shifts[:, 0] / height
        grid = F.affine_grid(theta, (count, channels, height, width), align_corners=False)
        stacked = images.unsqueeze(1).expand(batch, count, channels, height, width).reshape(batch * count, channels,
                                                                                              height, width)
        warped = F.grid_sample(stacked, grid.repeat(batch, 1, 1, 1), mode="bilinear", padding_mode="zeros",
                               align_corners=False)  # fmt: skip
        warped = warped.reshape(batch, count * channels, height, width)
        return F.conv2d(warped, flipped, padding=self.taps // 2, groups=count)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1] != self.channels:
            raise DesignError("input_channels", images.shape[1], f"the optics were made for {self.channels}.")
        images = self._downsample(images)
        captures = self._capture(images) * self.brightness
        if self.sensor is not None:
            captures = self._read_sensor(captures)
        if self.gains is not None:
            captures = captures * self.gains.view(1, -1, 1, 1)
        features = captures[:, : self.kernels] - captures[:, self.kernels :] if self.signed else captures
        if self.normalise_intensity:  # auto-exposure sees the scene as captured, brightness included
            features = features / (self.brightness * images.mean(dim=(1, 2, 3), keepdim=True) + 1e-6)
        return features


# ---------------------------------------------------------------------------- nominal captures
@dataclass
class DesignedCaptures:
    """A frontend's captures as designed: (S, C, t, t) PSFs and their digital gains (S,)."""

    captures: torch.Tensor
    gains: torch.Tensor | None


def designed_captures(frontend: OpticalFrontend, group: GroupMetasurface | None) -> DesignedCaptures:
    """What the fab is asked to build, per capture, before any error."""
    if group is not None:
        return DesignedCaptures(torch.as_tensor(group.realised), torch.as_tensor(group.gains))
    if isinstance(frontend, PhysicalFrontend):
        with torch.no_grad():
            return DesignedCaptures(frontend.capture_kernels().double(), None)
    parts, _ = capture_targets(frontend)
    sums = parts.sum(dim=(1, 2, 3))
    # Unit-sum (lossless) PSFs scaled back digitally: the ideal frontend's own convention.
    return DesignedCaptures(parts / sums.clamp_min(1e-30).view(-1, 1, 1, 1), sums)


def metasurface_from_physical(model: nn.Module, design: Design) -> Metasurface | None:
    """The radius maps a physical-frontend run was trained with, as a metasurface (None if ideal)."""
    frontends = [m for m in model.modules() if isinstance(m, OpticalFrontend)]
    if not frontends or not all(isinstance(f, PhysicalFrontend) for f in frontends):
        return None
    groups = []
    with torch.no_grad():
        for frontend in frontends:
            captures = frontend.capture_kernels().double()
            kernels = frontend.signed_kernels().double()
            groups.append(GroupMetasurface(
                taps=frontend.taps, scale=frontend.scale, signed=frontend.signed,
                radius_m=frontend.radius_map().double().numpy(), target=captures.numpy(), realised=captures.numpy(),
                gains=np.ones(captures.shape[0]), target_kernels=kernels.numpy(), realised_kernels=kernels.numpy(),
                attainable_correlation=np.ones(kernels.shape[0]),
            ))  # fmt: skip
    table = frontends[0].table
    return Metasurface(design, frontends[0].phase_pixel, groups, settings={"source": "physical frontend"},
                       table_source=str(table.source), table_parameter=table.parameter)  # fmt: skip


# ---------------------------------------------------------------------------- error draws
def _normal(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def _to_parameter(disc_radius: torch.Tensor, table: MetaAtomTable) -> torch.Tensor:
    """The table's pillar parameter for a drawn disc radius, clipped to the family's range."""
    low, high = table.radius_range
    values = disc_radius * 2 if table.parameter == "diameter" else disc_radius
    return values.clamp(low, high)


def _quantised(disc_radius: torch.Tensor, errors: ErrorModel) -> torch.Tensor:
    step = errors.radius_quantisation
    return torch.round(disc_radius / step) * step if step else disc_radius


def perturbed_radius(radius: np.ndarray, errors: ErrorModel, table: MetaAtomTable) -> torch.Tensor:
    """The systematic part of fabrication, per phase pixel: every pillar's *drawn* radius biased
    by ``radius_bias`` and put on the fab's radius grid, back in the table's parameter (metres).

    Errors act on the disc radius the layout draws (the shipped table's parameter is a diameter),
    then the result is clipped to the pillar family's range.
    """
    disc = table.disc_radius(torch.as_tensor(radius, dtype=torch.float64)) + errors.radius_bias
    return _to_parameter(_quantised(disc, errors), table)


def fabricated_fields(radius: np.ndarray, errors: ErrorModel, generator: torch.Generator, table: MetaAtomTable,
                      wavelengths, atoms_per_pixel: int) -> tuple[torch.Tensor, torch.Tensor | None]:  # fmt: skip
    """(systematic radius maps, complex fields (S, C, n, n) or None) of one fabrication draw.

    Random errors are drawn **per pillar**: each of a phase pixel's a×a pillars gets its own
    radius error (``radius_sigma``, on the drawn radius, then the fab's grid) and phase error
    (``phase_sigma``, the same radians at every wavelength), and the phase pixel transmits the
    mean of its pillars' fields. Independent errors thus partly average out within a pixel and the
    rest scatters light out of the kernel (|mean| < 1), as rough pillars do. Without random terms
    the fields are the table's response to the systematic radius maps (None).
    """
    systematic = perturbed_radius(radius, errors, table)
    if not (errors.radius_sigma or errors.phase_sigma):
        return systematic, None
    disc = table.disc_radius(torch.as_tensor(radius, dtype=torch.float64)) + errors.radius_bias
    pillars = atoms_per_pixel**2
    fields = torch.zeros(*systematic.shape[:1], len(wavelengths), *systematic.shape[1:], dtype=torch.complex128)
    for _ in range(pillars):  # one pillar of every block per pass: memory stays at one map
        drawn = disc + errors.radius_sigma * _normal(disc.shape, generator) if errors.radius_sigma else disc
        parameter = _to_parameter(_quantised(drawn, errors), table)
        phase = errors.phase_sigma * _normal(disc.shape, generator) if errors.phase_sigma else None
        for channel, wavelength in enumerate(wavelengths):
            field = table.field(parameter, wavelength)
            if phase is not None:
                field = field * torch.polar(torch.ones_like(phase), phase)
            fields[:, channel] += field
    return systematic, fields / pillars


def _tap_blur_matrix(taps: int, sigma_taps: float) -> torch.Tensor:
    """(t, t) matrix: a tap's power spread uniformly over the tap, blurred by a Gaussian of RMS
    width ``sigma_taps`` (in taps) and collected on taps again; light leaving the window is lost."""
    if sigma_taps < 1e-3:
        return torch.eye(taps, dtype=torch.float64)
    oversample = min(256, max(32, math.ceil(8 / sigma_taps)))  # resolve the Gaussian on the fine grid
    step = 1.0 / oversample
    fine = (torch.arange(taps * oversample, dtype=torch.float64) + 0.5) * step
    offsets = fine[:, None] - fine[None, :]
    # Power from a point at fine cell j landing in fine cell i: the Gaussian integrated over cell i.
    scale = sigma_taps * math.sqrt(2)
    blur = 0.5 * (torch.erf((offsets + step / 2) / scale) - torch.erf((offsets - step / 2) / scale))
    collect = torch.repeat_interleave(torch.eye(taps, dtype=torch.float64), oversample, dim=1)  # (t, t·o)
    return collect @ blur @ collect.T * step


def fabricated_captures(
    frontend: OpticalFrontend,
    design: Design,
    errors: ErrorModel,
    generator: torch.Generator,
    *,
    group: GroupMetasurface | None = None,
    phase_pixel: float | None = None,
    measured: torch.Tensor | None = None,
    table: MetaAtomTable | None = None,
) -> DesignedCaptures:
    """One draw of a frontend's captures as fabricated (see the module docstring for the sources)."""
    designed = designed_captures(frontend, group)
    tap_pitch = design.tap_pitch * frontend.scale
    blur_done = False
    if measured is not None:
        # A bench knows shapes and relative powers, rarely absolute ones: one scale for the whole
        # stack keeps the measured efficiency differences (K⁺/K⁻ imbalance included).
        scale = designed.captures.sum() / measured.sum().clamp_min(1e-30)
        captures = measured.double() * scale
    elif group is not None and (errors.needs_metasurface or errors.psf_blur):
        table = table or default_meta_atom_table()
        atoms = round(phase_pixel / design.meta_atom_pitch)
        radius, fields = fabricated_fields(group.radius_m, errors, generator, table, design.wavelengths, atoms)
        captures = suboptic_kernel_taps(
            radius, table=table, wavelengths=design.wavelengths, phase_pixel=phase_pixel,
            distance=design.sensor_distance, tap_pitch=tap_pitch, taps=frontend.taps, fields=fields,
            blur_sigma=errors.psf_blur,
        )  # fmt: skip
        blur_done = True
    else:
        if errors.needs_metasurface:
            raise DesignError(
                "error_model", ", ".join(errors.describe()),
                "radius and phase errors act on meta-atoms, and this run has no metasurface yet.",
                "run inverse design first (`python -m onn_core inverse-design --run DIR`), or use kernel_sigma.",
            )  # fmt: skip
        captures = designed.captures.clone()
    if errors.psf_blur and not blur_done:
        blur = _tap_blur_matrix(frontend.taps, errors.psf_blur / tap_pitch)
        captures = blur @ captures @ blur.T
    if errors.kernel_sigma:
        # Additive, as Eq. 10's δ; clipped at zero (an intensity), so dark taps gain a little
        # stray light (≈ 0.4·kernel_sigma·peak on average).
        peak = captures.flatten(1).amax(dim=1).view(-1, 1, 1, 1)
        captures = (captures + errors.kernel_sigma * peak * _normal(captures.shape, generator)).clamp_min(0)
    if errors.gain_sigma:
        factors = (1 + errors.gain_sigma * _normal((captures.shape[0],), generator)).clamp_min(0)
        captures = captures * factors.view(-1, 1, 1, 1)
    return DesignedCaptures(captures, designed.gains)


def _misalignment(frontend: OpticalFrontend, design: Design, errors: ErrorModel,
                  generator: torch.Generator) -> torch.Tensor | None:  # fmt: skip
    if not (errors.shift_y or errors.shift_x or errors.shift_sigma):
        return None
    count = frontend.kernels * frontend.captures_per_kernel
    shifts = torch.tensor([[errors.shift_y, errors.shift_x]], dtype=torch.float64).expand(count, 2)
    if errors.shift_sigma:
        shifts = shifts + errors.shift_sigma * _normal((count, 2), generator)
    # An input pixel of this group spans scale taps on the sensor.
    return shifts / (design.tap_pitch * frontend.scale)


def fabricate(
    model: nn.Module,
    design: Design,
    errors: ErrorModel | None = None,
    *,
    metasurface: Metasurface | None = None,
    measured: list[torch.Tensor] | None = None,
    table: MetaAtomTable | None = None,
) -> nn.Module:
    """A copy of ``model`` with every optical frontend replaced by one fabricated draw.

    Args:
        model: a trained student. design: its design.
        errors: the error model (its seed fixes the draw; None: no error).
        metasurface: radius maps per frontend group (inverse design); physical-frontend runs
            use their own radius maps when this is None.
        measured: measured capture PSFs per group, (S, C, t, t) each (see :mod:`.measured`).
        table: meta-atom library for re-simulating perturbed radius maps.
    """
    errors = errors or ErrorModel()
    generator = torch.Generator().manual_seed(errors.seed)
    fabricated = copy.deepcopy(model)
    frontends = [(name, m) for name, m in fabricated.named_modules() if isinstance(m, OpticalFrontend)]
    if metasurface is None:
        metasurface = metasurface_from_physical(model, design)
    if metasurface is not None and len(metasurface.groups) != len(frontends):
        raise DesignError("metasurface", len(metasurface.groups), f"has a different number of kernel groups than the "
                          f"model ({len(frontends)}); run inverse design for this run again.")  # fmt: skip
    if measured is not None and len(measured) != len(frontends):
        raise DesignError("measured", len(measured), f"PSF groups given; the model has {len(frontends)}.")
    table = table or (metasurface.table() if metasurface is not None else None)
    for index, (name, frontend) in enumerate(frontends):
        group = metasurface.groups[index] if metasurface is not None else None
        built = fabricated_captures(
            frontend, design, errors, generator, group=group,
            phase_pixel=metasurface.phase_pixel if metasurface is not None else None,
            measured=measured[index] if measured is not None else None, table=table,
        )  # fmt: skip
        replacement = FabricatedFrontend(
            built.captures, built.gains, kernels=frontend.kernels, signed=frontend.signed, scale=frontend.scale,
            normalise_intensity=frontend.normalise_intensity, sensor=camera(frontend.sensor, errors),
            brightness=errors.gain, shifts=_misalignment(frontend, design, errors, generator), rotation=errors.rotation,
        )  # fmt: skip
        _replace_module(fabricated, name, replacement)
    fabricated.eval()
    return fabricated


def camera(trained: SensorSettings | None, errors: ErrorModel) -> SensorSettings | None:
    """The camera of the fabricated system: the one the model was trained with, made worse by the
    error model's camera terms (read noise adds in quadrature, shot noise switches on, the coarser
    ADC wins, the error model's full well applies when it has camera terms)."""
    if not errors.has_sensor:
        return trained
    if trained is None:
        return SensorSettings(full_well=errors.full_well, read_noise=errors.read_noise, bit_depth=errors.bit_depth,
                              shot_noise=errors.shot_noise)  # fmt: skip
    bits = [b for b in (trained.bit_depth, errors.bit_depth) if b is not None]
    return SensorSettings(full_well=errors.full_well, read_noise=math.hypot(trained.read_noise, errors.read_noise),
                          bit_depth=min(bits) if bits else None,
                          shot_noise=trained.shot_noise or errors.shot_noise)  # fmt: skip


def _replace_module(model: nn.Module, name: str, replacement: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, replacement)
