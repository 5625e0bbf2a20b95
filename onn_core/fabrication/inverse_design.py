"""Inverse design: meta-atom radius maps whose PSFs realise trained kernels.

For each trained kernel K the targets are its non-negative captures, K⁺ = max(K, 0) and
K⁻ = max(−K, 0) (or K itself when unsigned), one per wavelength channel. Each capture gets its
own sub-optic; its radius map is optimised so the tap-integrated intensity PSF at the sensor
(:func:`~onn_core.optics.suboptic.suboptic_kernel_taps`: meta-atom table → band-limited angular
spectrum → |E|² → taps) matches the target after L2 normalisation per capture and wavelength, as
the method does (Adam, ≈ 500 iterations, radii kept in the fabricable range by a sigmoid).

Two choices the method leaves open, made here:

* **Start**: a multi-focus hologram. The phase of Σ_taps √T_tap·(a lens focusing on that tap,
  with a random phase) already puts each tap's share of the light on it, so Adam starts close
  (signed-kernel correlation ≈ 0.96 on the default design before the first step) instead of
  from a plain lens.
* **Efficiency**: normalising the PSF hides how much light reaches the kernel window, so the
  loss adds ``efficiency_weight``·(1 − efficiency): light thrown away is signal lost to noise.

A capture's overall scale is free in the optics (only its shape is designed), so each capture
gets a digital gain, the least-squares fit of the realised capture to its target; the realised
signed kernel is g⁺·R⁺ − g⁻·R⁻. Fidelity is reported per kernel as the correlation and the
normalised error ‖realised − target‖/‖target‖ on the tap grid, next to the best correlation the
aperture allows (the target projected onto the incoherent band limit, see
:func:`~onn_core.models.frontends.realisable_band`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..design import Design
from ..errors import DesignError, OpticsInputError
from ..models.frontends import IdealFrontend, OpticalFrontend, PhysicalFrontend, default_phase_pixel, realisable_band
from ..optics.grids import coordinates
from ..optics.metasurface import MetaAtomTable, default_meta_atom_table
from ..optics.suboptic import suboptic_kernel_taps, suboptic_padding
from ..run_files import atomic_write, json_text
from ..user_input import load_npz, read_json

METASURFACE_NPZ = "metasurface.npz"
METASURFACE_JSON = "metasurface.json"
SCHEMA = "onn-metasurface/1"
MAX_METASURFACE_JSON_BYTES = 64 * 2**20  # the description with its optimisation history
_GROUP_ARRAYS = ("radius_m", "target", "realised", "gains", "target_kernels", "realised_kernels",
                 "attainable_correlation")  # fmt: skip
ProgressCallback = Callable[[int, int, float], None]  # (iteration, iterations, loss)


@dataclass(frozen=True)
class InverseDesignSettings:
    """How to optimise the radius maps.

    Attributes:
        iterations: Adam steps at most (the method reports ≈ 500).
        learning_rate: Adam step on the radius logit (radius = r_min + span·sigmoid(logit)).
        efficiency_weight: weight of (1 − fraction of the light on the kernel window).
        patience: stop when the loss has not improved by 0.1 % for this many steps (None: never).
        phase_pixel: simulation/phase-map pitch, metres (None: the coarsest that loses no aperture,
            :func:`~onn_core.models.frontends.default_phase_pixel`).
        seed: random phases of the multi-focus start.
    """

    iterations: int = 500
    learning_rate: float = 0.05
    efficiency_weight: float = 0.1
    patience: int | None = 25
    phase_pixel: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) or self.iterations < 0:
            raise DesignError("iterations", self.iterations, "must be a whole number ≥ 0.")
        for name in ("learning_rate", "efficiency_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise DesignError(name, value, "must be a finite number ≥ 0.")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise DesignError("patience", self.patience, "must be a whole number ≥ 1, or None to never stop early.")


@dataclass
class GroupMetasurface:
    """The sub-optics of one frontend (one kernel group), in the frontend's capture order.

    Arrays (numpy, float64): ``radius_m`` (captures, n, n) metres; ``target`` and ``realised``
    (captures, C, taps, taps), power fraction per tap for ``realised``; ``gains`` (captures,)
    digital gain per capture; ``target_kernels`` and ``realised_kernels`` (K, C, taps, taps).
    Captures are K⁺ of every kernel, then K⁻ of every kernel (signed), or the kernels (unsigned).
    """

    taps: int
    scale: int
    signed: bool
    radius_m: np.ndarray
    target: np.ndarray
    realised: np.ndarray
    gains: np.ndarray
    target_kernels: np.ndarray
    realised_kernels: np.ndarray
    attainable_correlation: np.ndarray

    @property
    def kernels(self) -> int:
        return self.target_kernels.shape[0]

    def fidelity(self) -> list[dict[str, float]]:
        """Per kernel: correlation, normalised error, best attainable correlation, efficiencies."""
        rows = []
        captures = self.realised.sum(axis=(1, 2, 3))
        for k in range(self.kernels):
            target, realised = self.target_kernels[k].ravel(), self.realised_kernels[k].ravel()
            row = {
                "kernel": k,
                "correlation": kernel_correlation(realised, target),
                "normalised_error": float(np.linalg.norm(realised - target) / max(np.linalg.norm(target), 1e-30)),
                "attainable_correlation": float(self.attainable_correlation[k]),
                "efficiency": float(captures[k]),
            }
            if self.signed:
                row["efficiency_minus"] = float(captures[self.kernels + k])
            rows.append(row)
        return rows


@dataclass
class Metasurface:
    """Radius maps for every sub-optic of a trained model, and how well they realise its kernels.

    Attributes:
        design: the frontend design. phase_pixel: phase-map pitch, metres (a whole number of
            meta-atoms). groups: one per frontend of the model. settings: how it was optimised.
        history: loss per iteration. seconds: optimisation wall time. table_source: meta-atom table.
    """

    design: Design
    phase_pixel: float
    groups: list[GroupMetasurface]
    settings: dict[str, Any] = field(default_factory=dict)
    history: list[float] = field(default_factory=list)
    seconds: float = 0.0
    table_source: str = ""
    table_parameter: str = "radius"

    def table(self) -> MetaAtomTable:
        """The meta-atom table the radius maps were designed with (the shipped one unless another
        was given and can still be read)."""
        default = default_meta_atom_table()
        if not self.table_source or self.table_source == str(default.source):
            return default
        from ..optics.metasurface import load_meta_atom_table

        if not Path(self.table_source).is_file():
            raise OpticsInputError(f"the metasurface was designed with the meta-atom table {self.table_source}, "
                                   "which is no longer there; restore it or run inverse design again.")  # fmt: skip
        return load_meta_atom_table(self.table_source)

    def disc_radius(self) -> np.ndarray:
        """Drawn pillar radii (S, n, n), metres, in layout order (the table's parameter may be a
        diameter: see :mod:`onn_core.optics.metasurface`)."""
        radius = self.layout_radius()
        return radius / 2 if self.table_parameter == "diameter" else radius

    @property
    def atoms_per_phase_pixel(self) -> int:
        return round(self.phase_pixel / self.design.meta_atom_pitch)

    def fidelity(self) -> list[dict[str, Any]]:
        return [{"group": g, **row} for g, group in enumerate(self.groups) for row in group.fidelity()]

    def summary(self) -> dict[str, Any]:
        rows = self.fidelity()
        correlations = [row["correlation"] for row in rows]
        return {
            "kernels": len(rows),
            "sub_optics": sum(group.radius_m.shape[0] for group in self.groups),
            "phase_pixel_m": self.phase_pixel,
            "samples_per_side": int(self.groups[0].radius_m.shape[-1]),
            "min_correlation": float(min(correlations)),
            "mean_correlation": float(np.mean(correlations)),
            "max_normalised_error": float(max(row["normalised_error"] for row in rows)),
            "mean_efficiency": float(np.mean([group.realised.sum(axis=(1, 2, 3)).mean() for group in self.groups])),
            "iterations": len(self.history),
            "final_loss": self.history[-1] if self.history else None,
            "seconds": self.seconds,
        }

    def layout_radius(self) -> np.ndarray:
        """Radius maps (S, n, n), metres, in the order of ``design.sub_optics()``.

        Sub-optics are assigned kernel by kernel, group after group; a signed kernel's K⁺ and K⁻
        sit side by side (the design's reading order), so this interleaves the capture order.
        """
        maps = []
        for group in self.groups:
            if group.signed:
                plus, minus = group.radius_m[: group.kernels], group.radius_m[group.kernels :]
                maps.extend(item for k in range(group.kernels) for item in (plus[k], minus[k]))
            else:
                maps.extend(group.radius_m)
        return np.stack(maps)

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> tuple[Path, Path]:
        """Write ``metasurface.npz`` (arrays) and ``metasurface.json`` (design, settings, fidelity)."""
        folder = Path(folder)
        arrays = {}
        for g, group in enumerate(self.groups):
            for name in _GROUP_ARRAYS:
                arrays[f"group{g}_{name}"] = getattr(group, name)
        meta = {
            "schema": SCHEMA,
            "design": self.design.to_dict(),
            "phase_pixel_m": self.phase_pixel,
            "groups": [{"taps": g.taps, "scale": g.scale, "signed": g.signed} for g in self.groups],
            "settings": self.settings,
            "history": self.history,
            "seconds": self.seconds,
            "table_source": self.table_source,
            "table_parameter": self.table_parameter,
            "summary": self.summary(),
            "fidelity": self.fidelity(),
        }
        npz_path, json_path = folder / METASURFACE_NPZ, folder / METASURFACE_JSON
        atomic_write(npz_path, lambda handle: np.savez_compressed(handle, **arrays))
        atomic_write(json_path, lambda handle: handle.write(json_text(meta).encode()))
        return npz_path, json_path

    @classmethod
    def load(cls, folder: str | Path) -> Metasurface:
        folder = Path(folder)
        json_path, npz_path = folder / METASURFACE_JSON, folder / METASURFACE_NPZ
        if not json_path.is_file() or not npz_path.is_file():
            raise OpticsInputError(
                f"{folder} has no metasurface yet ({METASURFACE_JSON} and {METASURFACE_NPZ}). "
                f"Fix: run `python -m onn_core inverse-design --run {folder}`."
            )
        def refuse(problem: str, hint: str) -> OpticsInputError:
            return OpticsInputError(f"{folder}'s metasurface files are unreadable: {problem} Fix: run inverse design "
                                    "again.")  # fmt: skip

        try:
            meta = read_json(json_path, refuse, max_bytes=MAX_METASURFACE_JSON_BYTES)
            if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
                raise ValueError(f"schema {meta.get('schema') if isinstance(meta, dict) else meta!r}, "
                                 f"expected {SCHEMA!r}")  # fmt: skip
            arrays = load_npz(npz_path, refuse)
            groups = [
                GroupMetasurface(taps=info["taps"], scale=info["scale"], signed=info["signed"],
                                 **{name: arrays[f"group{g}_{name}"] for name in _GROUP_ARRAYS})
                for g, info in enumerate(meta["groups"])
            ]  # fmt: skip
            design = Design.from_dict(meta["design"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            if isinstance(exc, OpticsInputError):
                raise
            message = f"{folder}'s metasurface files are unreadable ({exc}); run inverse design again."
            raise OpticsInputError(message) from None
        return cls(design, meta["phase_pixel_m"], groups, meta.get("settings", {}), meta.get("history", []),
                   meta.get("seconds", 0.0), meta.get("table_source", ""),
                   meta.get("table_parameter", "radius"))  # fmt: skip


def kernel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two kernels (what every "correlation" in the studio means)."""
    a, b = a - a.mean(), b - b.mean()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float((a * b).sum() / denominator) if denominator > 0 else 0.0


# ---------------------------------------------------------------------------- targets
def capture_targets(frontend: OpticalFrontend) -> tuple[torch.Tensor, torch.Tensor]:
    """(captures (S, C, t, t) ≥ 0, signed kernels (K, C, t, t)) a trained frontend asks the optics for.

    Captures are the raw parts K⁺ = max(K, 0), K⁻ = max(−K, 0) (not normalised), so a capture's
    least-squares digital gain maps the realised PSF back onto the kernel's own scale.
    """
    with torch.no_grad():
        kernels = frontend.signed_kernels().double()
    if frontend.signed:
        return torch.cat([kernels.clamp_min(0), (-kernels).clamp_min(0)]), kernels
    return kernels.clamp_min(0), kernels


def multifocus_phase(
    target: torch.Tensor, *, samples: int, phase_pixel: float, tap_pitch: float, wavelength: float,
    distance: float, generator: torch.Generator,
) -> torch.Tensor:  # fmt: skip
    """Phase maps (S, n, n), radians, focusing √T of each tap onto the tap's centre.

    Args:
        target: non-negative tap targets (S, t, t). samples: n phase pixels per side.
        phase_pixel, tap_pitch, distance, wavelength: metres.
    """
    captures, taps = target.shape[0], target.shape[-1]
    x = coordinates(samples, phase_pixel, dtype=torch.float64)
    centres = coordinates(taps, tap_pitch, dtype=torch.float64)
    wavenumber = 2 * math.pi / wavelength
    # Path length from each phase pixel to each tap centre, per axis, combined below: (t, n) each.
    dx2 = (x[None, :] - centres[:, None]) ** 2
    phases = []
    for s in range(captures):
        amplitude = target[s].clamp_min(0).sqrt()
        random_phase = torch.rand(taps, taps, generator=generator, dtype=torch.float64) * 2 * math.pi
        field = torch.zeros(samples, samples, dtype=torch.complex128)
        for i, j in zip(*torch.nonzero(amplitude > 0, as_tuple=True), strict=True):
            path = torch.sqrt(dx2[i][:, None] + dx2[j][None, :] + distance**2) - distance
            field += amplitude[i, j] * torch.polar(torch.ones_like(path), random_phase[i, j] - wavenumber * path)
        dark = not bool(amplitude.any())  # an all-zero capture (e.g. K⁻ of a positive kernel): any phase
        phases.append(torch.zeros(samples, samples, dtype=torch.float64) if dark else torch.angle(field))
    return torch.stack(phases)


# ---------------------------------------------------------------------------- optimisation
def _normalised(values: torch.Tensor) -> torch.Tensor:
    norm = values.flatten(2).norm(dim=2).clamp_min(1e-30)
    return values / norm[..., None, None]


def _least_squares_gains(realised: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (realised * target).sum(dim=(1, 2, 3)) / (realised * realised).sum(dim=(1, 2, 3)).clamp_min(1e-30)


def _signed(captures: torch.Tensor, signed: bool) -> torch.Tensor:
    if not signed:
        return captures
    half = captures.shape[0] // 2
    return captures[:half] - captures[half:]


def design_group(
    frontend: OpticalFrontend,
    design: Design,
    settings: InverseDesignSettings,
    *,
    table: MetaAtomTable,
    phase_pixel: float,
    progress: Callable[[int, float], None] | None = None,
) -> tuple[GroupMetasurface, list[float]]:
    """Optimise one frontend's sub-optics; returns the group and its loss history."""
    taps, scale = frontend.taps, frontend.scale
    tap_pitch = design.tap_pitch * scale
    target, kernels = capture_targets(frontend)
    samples = max(1, round(design.kernel_size / phase_pixel))
    padding = suboptic_padding(samples, phase_pixel=phase_pixel, wavelengths=design.wavelengths,
                               distance=design.sensor_distance, window=taps * tap_pitch)  # fmt: skip
    low, high = table.radius_range
    if isinstance(frontend, PhysicalFrontend):
        radius = frontend.radius_map().detach().double()  # already a metasurface: refine it
    else:
        generator = torch.Generator().manual_seed(settings.seed)
        phase = multifocus_phase(
            target[:, 0], samples=samples, phase_pixel=phase_pixel, tap_pitch=tap_pitch,
            wavelength=design.wavelengths[0], distance=design.sensor_distance, generator=generator,
        )  # fmt: skip
        radius = table.radius_for_phase(phase, design.wavelengths[0])
    fraction = ((radius - low) / max(high - low, 1e-30)).clamp(1e-4, 1 - 1e-4)
    logit = torch.logit(fraction).requires_grad_(True)
    optimiser = torch.optim.Adam([logit], lr=settings.learning_rate)
    wanted = _normalised(target)
    active = target.flatten(2).sum(dim=2) > 0  # (S, C): a channel with no target light is not fitted

    def simulate(values: torch.Tensor) -> torch.Tensor:
        return suboptic_kernel_taps(
            values, table=table, wavelengths=design.wavelengths, phase_pixel=phase_pixel,
            distance=design.sensor_distance, tap_pitch=tap_pitch, taps=taps, padding=padding,
            logit_range=(low, high - low),
        )  # fmt: skip

    history: list[float] = []
    best_loss, best_logit, stale = math.inf, logit.detach().clone(), 0
    for iteration in range(settings.iterations):
        realised = simulate(logit)
        mismatch = ((_normalised(realised) - wanted) ** 2).sum(dim=(2, 3))
        efficiency = realised.sum(dim=(2, 3))
        loss = (mismatch * active).sum() / active.sum().clamp_min(1) + settings.efficiency_weight * (
            (1 - efficiency) * active).sum() / active.sum().clamp_min(1)  # fmt: skip
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        value = float(loss.detach())
        history.append(value)
        if value < best_loss * (1 - 1e-3):
            best_loss, stale = value, 0
        else:
            stale += 1
        if value <= best_loss:
            best_logit = logit.detach().clone()
        optimiser.step()
        if progress:
            progress(iteration + 1, value)
        if settings.patience is not None and stale >= settings.patience:
            break
    with torch.no_grad():
        realised = simulate(best_logit)
        gains = _least_squares_gains(realised, target)
        realised_kernels = _signed(realised * gains.view(-1, 1, 1, 1), frontend.signed)
        radius = low + (high - low) * torch.sigmoid(best_logit)
    band = realisable_band(design, taps, scale, amplitude=not frontend.signed)
    attainable = _attainable_correlation(kernels, band)
    group = GroupMetasurface(
        taps=taps, scale=scale, signed=frontend.signed, radius_m=radius.numpy(), target=target.numpy(),
        realised=realised.numpy(), gains=gains.numpy(), target_kernels=kernels.numpy(),
        realised_kernels=realised_kernels.numpy(), attainable_correlation=attainable,
    )  # fmt: skip
    return group, history


def _attainable_correlation(kernels: torch.Tensor, band: torch.Tensor | None) -> np.ndarray:
    """Correlation of each kernel with its projection onto the band the aperture passes (1: no limit)."""
    if band is None:
        return np.ones(kernels.shape[0])
    projected = torch.einsum("cij,kcj->kci", band.double(), kernels.flatten(2)).view_as(kernels)
    return np.array([kernel_correlation(p.numpy().ravel(), k.numpy().ravel()) for p, k in zip(projected, kernels,
                                                                                      strict=True)])


def inverse_design(
    model: torch.nn.Module,
    design: Design,
    settings: InverseDesignSettings | None = None,
    *,
    table: MetaAtomTable | None = None,
    progress: ProgressCallback | None = None,
) -> Metasurface:
    """Radius maps realising every optical kernel of a trained ``model`` built for ``design``.

    Args:
        model: a trained student (its :class:`OpticalFrontend` modules give the targets).
        design: the design it was trained for (pitch, wavelengths, distance, sensor).
        settings: optimiser settings. table: meta-atom library (default: SiN pillars, 750 nm).
        progress: called as (iteration, total iterations over all groups, loss).
    """
    settings = settings or InverseDesignSettings()
    table = table or default_meta_atom_table()
    frontends = [module for module in model.modules() if isinstance(module, OpticalFrontend)]
    if not frontends:
        raise DesignError("model", type(model).__name__, "has no optical frontend to realise.")
    if not all(isinstance(f, IdealFrontend | PhysicalFrontend) for f in frontends):
        raise DesignError("model", type(model).__name__, "has a frontend that is not trainable optics.")
    if len(design.wavelengths) != frontends[0].channels:
        raise DesignError(
            "wavelengths", design.wavelengths,
            f"the model reads {frontends[0].channels} channel(s); the metasurface needs one wavelength per channel.",
        )  # fmt: skip
    for wavelength in design.wavelengths:
        table._row(wavelength)  # a clear error when the table lacks this wavelength
    physical = [f for f in frontends if isinstance(f, PhysicalFrontend)]
    if physical and settings.phase_pixel and abs(settings.phase_pixel - physical[0].phase_pixel) > 1e-12:
        raise DesignError("phase_pixel", settings.phase_pixel,
                          f"this run's optics were trained at {physical[0].phase_pixel * 1e9:.0f} nm phase pixels; "
                          "its radius maps are refined at that pitch.", "leave phase_pixel unset.")  # fmt: skip
    phase_pixel = float(settings.phase_pixel or (physical[0].phase_pixel if physical else default_phase_pixel(design)))
    ratio = phase_pixel / design.meta_atom_pitch
    if abs(ratio - round(ratio)) > 1e-6 or round(ratio) < 1:
        raise DesignError("phase_pixel", phase_pixel, "must be a whole number of meta-atom pitches.",
                          f"use a multiple of {design.meta_atom_pitch * 1e9:.0f} nm.")  # fmt: skip
    used = sum(f.kernels * f.captures_per_kernel for f in frontends)
    if used > design.sub_optic_count:
        raise DesignError("kernel_count", used, f"the model needs {used} sub-optics; the design has "
                          f"{design.sub_optic_count}.")  # fmt: skip
    total = settings.iterations * len(frontends)
    started = time.perf_counter()
    groups, history = [], []
    for index, frontend in enumerate(frontends):
        offset = index * settings.iterations

        def report(iteration: int, loss: float, offset: int = offset) -> None:
            if progress:
                progress(offset + iteration, total, loss)

        group, losses = design_group(frontend, design, settings, table=table, phase_pixel=phase_pixel,
                                     progress=report)  # fmt: skip
        groups.append(group)
        history.extend(losses)
    return Metasurface(
        design, phase_pixel, groups, settings=asdict(settings), history=history,
        seconds=time.perf_counter() - started, table_source=str(table.source), table_parameter=table.parameter,
    )  # fmt: skip


def realised_psf_image(
    radius: np.ndarray, design: Design, phase_pixel: float, *, wavelength: float, window_taps: int,
    scale: int = 1, table: MetaAtomTable | None = None,
) -> tuple[np.ndarray, float]:  # fmt: skip
    """The sensor irradiance of one sub-optic over its kernel window at the simulation pitch.

    For display (PSF images with physical axes): returns (irradiance (m, m) as a fraction of the
    incident power per m², sample pitch in metres).
    """
    table = table or default_meta_atom_table()
    window = window_taps * design.tap_pitch * scale
    samples = radius.shape[-1]
    padding = suboptic_padding(samples, phase_pixel=phase_pixel, wavelengths=(wavelength,),
                               distance=design.sensor_distance, window=window)  # fmt: skip
    from ..optics.propagation import propagate

    field = table.field(torch.as_tensor(radius, dtype=torch.float64)[None], wavelength)
    at_sensor = propagate(field, wavelength=wavelength, pitch=phase_pixel, distance=design.sensor_distance,
                          padding=padding)[0]  # fmt: skip
    irradiance = (at_sensor.abs() ** 2) / (samples**2 * phase_pixel**2)
    keep = min(samples, math.ceil(window / phase_pixel))
    start = (samples - keep) // 2
    crop = irradiance[start : start + keep, start : start + keep]
    return crop.numpy(), phase_pixel
