"""Meta-atom library: meta-atom radius → transmitted phase and amplitude, per wavelength.

A metasurface is modelled in the local-periodic approximation: each pillar imparts the phase
and transmission it would have in an infinite periodic array of identical pillars (neighbour
coupling ignored — one of the named causes of the simulation-to-fabrication gap).

The default library is the silicon-nitride pillar family of the reference method (height 750 nm,
lattice 293 nm, radius 0–240 nm). Its published fits give the phase, in units of 2π, for r in µm:

    φ(r) = −A·(exp((r² − B·r)/(−C)) − 1),   (A, B, C) per colour below.

They are tabulated on a 1 nm grid in ``assets/meta_atoms/sin_750nm.csv`` (columns
``diameter_m, wavelength_m, phase_rad, transmission``; transmission is not published and taken as 1).
Users may load their own table in the same format, with ``radius_m`` or ``diameter_m`` first.

**Radius or diameter.** The method calls the pillar parameter a radius, 0–240 nm, on a 293 nm
lattice. A disc of radius 240 nm is 480 nm wide and cannot sit in a 293 nm cell (neighbours would
fuse above a radius of 146.5 nm), so the only buildable reading is a *diameter* of 0–240 nm
(≥ 53 nm between pillars). The shipped table therefore declares its parameter a diameter. In the
code the parameter keeps the method's name, r ("radius maps"), since only the phase fit uses its
value; :meth:`MetaAtomTable.disc_radius` turns it into the radius a layout draws (GDSII export).
"""

from __future__ import annotations

import csv
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from ..errors import OpticsInputError, TableError
from ..paths import asset_path

ASSET_DIR = asset_path("meta_atoms")
DEFAULT_TABLE_PATH = ASSET_DIR / "sin_750nm.csv"
TABLE_COLUMNS = ("radius_m", "wavelength_m", "phase_rad", "transmission")
PARAMETER_COLUMNS = {"radius_m": "radius", "diameter_m": "diameter"}  # the table's first column, either

# (A, B [µm], C [µm²]) of φ(r)/2π = −A·(exp((r² − B r)/(−C)) − 1), r in µm.
SIN_PHASE_FITS: dict[float, tuple[float, float, float]] = {
    635e-9: (5.03593, 0.0244, 0.28081),
    532e-9: (2.28293, 0.03756, 0.07134),
    450e-9: (1.87336, 0.0474, 0.03191),
}
SIN_RADIUS_RANGE = (0.0, 240e-9)  # metres, the fabricable range of the pillar family's parameter r
SIN_LATTICE_PITCH = 293e-9  # metres
SIN_PILLAR_HEIGHT = 750e-9  # metres


def sin_fit_phase(radius: np.ndarray, wavelength: float) -> np.ndarray:
    """Phase (radians) of the silicon-nitride fit at one of its wavelengths (635/532/450 nm).

    Args:
        radius: pillar radius, metres. wavelength: metres, one of the fitted wavelengths.
    """
    key = min(SIN_PHASE_FITS, key=lambda lam: abs(lam - wavelength))
    if abs(key - wavelength) > 1e-12:
        raise OpticsInputError(f"no silicon-nitride fit at {wavelength * 1e9:.1f} nm (fits: 450, 532, 635 nm).")
    amplitude, linear, width = SIN_PHASE_FITS[key]
    r_um = np.asarray(radius, dtype=np.float64) * 1e6
    return 2 * math.pi * (-amplitude * (np.exp((r_um**2 - linear * r_um) / (-width)) - 1))


class SegmentColumns(NamedTuple):
    """A wavelength's response per table segment i = [r_i, r_{i+1}], each a contiguous (R − 1,)
    tensor (a 1-D gather per column is several times faster than one row gather of all of them):
    value at r_i, rise over the segment, and slope per metre, of the phase (rad) and transmission."""

    phase: torch.Tensor
    phase_step: torch.Tensor
    phase_slope: torch.Tensor
    transmission: torch.Tensor
    transmission_step: torch.Tensor
    transmission_slope: torch.Tensor


@dataclass(frozen=True)
class MetaAtomTable:
    """Tabulated meta-atom response on a shared radius grid.

    Attributes:
        radii: (R,) increasing pillar radii, metres.
        wavelengths: (W,) increasing wavelengths, metres.
        phase: (W, R) transmitted phase, radians (unwrapped along radius).
        transmission: (W, R) amplitude transmission, 0..1.
        source: where the table came from (file path or description).
        parameter: what ``radii`` measure on the pillar: "radius" or "diameter" (see the module).
    """

    radii: np.ndarray
    wavelengths: np.ndarray
    phase: np.ndarray
    transmission: np.ndarray
    source: str
    parameter: str = "radius"

    def disc_radius(self, values):
        """The drawn radius (metres) of pillars with parameter ``values`` (metres; array or tensor)."""
        return values / 2 if self.parameter == "diameter" else values

    @property
    def radius_range(self) -> tuple[float, float]:
        """(min, max) tabulated radius, metres: the fabricable range."""
        return float(self.radii[0]), float(self.radii[-1])

    def phase_coverage(self, wavelength: float) -> float:
        """Span of phase (radians) reachable at ``wavelength`` (metres); < 2π limits designs."""
        row = self._row(wavelength)
        return float(self.phase[row].max() - self.phase[row].min())

    def _row(self, wavelength: float) -> int:
        index = int(np.argmin(np.abs(self.wavelengths - wavelength)))
        if abs(self.wavelengths[index] - wavelength) > 0.5e-9:
            available = ", ".join(f"{w * 1e9:.1f} nm" for w in self.wavelengths)
            raise OpticsInputError(
                f"the meta-atom table ({self.source}) has no data at {wavelength * 1e9:.1f} nm; "
                f"it covers {available}. Use one of those wavelengths or load a table that covers yours."
            )
        return index

    def response(self, radius: torch.Tensor, wavelength: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Phase (radians) and transmission of pillars of ``radius`` (metres) at ``wavelength``.

        Piecewise-linear in radius, so it is differentiable almost everywhere (for inverse
        design). Radii outside the table raise: clamp them to :attr:`radius_range` first.
        """
        row = self._row(wavelength)
        segment, fraction = self.locate(radius)
        columns = self.segment_columns(row, radius.dtype, radius.device)
        phase = gather_segments(columns.phase, segment) + gather_segments(columns.phase_step, segment) * fraction
        transmission = gather_segments(columns.transmission, segment) + gather_segments(
            columns.transmission_step, segment) * fraction  # fmt: skip
        return phase, transmission

    def locate(self, radius: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(segment, fraction) of each radius (metres): the table interval [r_i, r_{i+1}] holding it
        (an index for :func:`gather_segments`) and how far along it the radius lies, 0..1
        (differentiable w.r.t. ``radius``). Radii outside the table raise."""
        if not isinstance(radius, torch.Tensor) or not radius.is_floating_point():
            raise OpticsInputError("radius must be a floating-point tensor of radii in metres.")
        self.check_in_range(radius)
        return self._locate_unchecked(radius)

    def _locate_unchecked(self, radius: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = len(self.radii) - 2
        if self._uniform_step is not None:
            # Tables on an even grid (the shipped one: 1 nm): the segment is arithmetic, not a
            # binary search over every pillar (a physical frontend looks up ~10⁷ radii a step).
            position = (radius - self.radii[0]) / self._uniform_step
            segment = position.detach().int().clamp_(0, last)
            return segment, position - segment
        grid = torch.as_tensor(self.radii, dtype=radius.dtype, device=radius.device)
        segment = torch.clamp(torch.searchsorted(grid, radius.detach().contiguous(), right=True), 1, last + 1) - 1
        start = gather_segments(grid[:-1].contiguous(), segment)
        width = gather_segments(torch.diff(grid), segment)
        return segment, (radius - start) / width

    def check_in_range(self, radius: torch.Tensor) -> None:
        """Raise a clear error unless every radius (metres) lies in the table's fabricable range."""
        if radius.numel() == 0:
            return
        low, high = self.radius_range
        smallest, largest = (float(v) for v in torch.aminmax(radius.detach()))
        if not (smallest >= low - 1e-15 and largest <= high + 1e-15):  # NaN fails too
            raise OpticsInputError(
                f"radii must lie in the fabricable range {low * 1e9:.0f}–{high * 1e9:.0f} nm of the table; "
                f"got {smallest * 1e9:.1f}–{largest * 1e9:.1f} nm."
            )

    @functools.cached_property
    def _uniform_step(self) -> float | None:
        """The radius step (metres) if the table's radii are evenly spaced (to 1e-6 of a step), else None."""
        steps = np.diff(self.radii)
        return float(steps.mean()) if np.allclose(steps, steps.mean(), rtol=1e-6, atol=0) else None

    def segment_columns(self, row: int, dtype: torch.dtype, device) -> SegmentColumns:
        """The piecewise-linear response at wavelength row ``row``, one entry per segment (cached)."""
        key = (row, dtype, str(device))
        cache = self.__dict__.setdefault("_segment_cache", {})
        if key not in cache:
            width = np.diff(self.radii)
            phase, transmission = self.phase[row], self.transmission[row]
            phase_step, transmission_step = np.diff(phase), np.diff(transmission)
            columns = (phase[:-1], phase_step, phase_step / width, transmission[:-1], transmission_step,
                       transmission_step / width)  # fmt: skip
            cache[key] = SegmentColumns(*(torch.as_tensor(np.ascontiguousarray(c), dtype=dtype, device=device)
                                          for c in columns))  # fmt: skip
        return cache[key]

    def radius_for_phase(self, phase: torch.Tensor, wavelength: float, bins: int = 4096) -> torch.Tensor:
        """Radii (metres) whose phase at ``wavelength`` is nearest to ``phase`` (radians) modulo 2π.

        Inverse design's starting point: a target phase map → a fabricable radius map. Phases
        the table cannot reach (coverage < 2π) get the radius of the nearest reachable phase.
        Resolved through a ``bins``-entry lookup table over [0, 2π).
        """
        row = self._row(wavelength)
        wrapped_table = np.mod(self.phase[row], 2 * math.pi)
        centres = (np.arange(bins) + 0.5) * (2 * math.pi / bins)
        distance = np.abs(centres[:, None] - wrapped_table[None, :])
        distance = np.minimum(distance, 2 * math.pi - distance)
        lookup = torch.as_tensor(self.radii[np.argmin(distance, axis=1)], dtype=phase.dtype, device=phase.device)
        index = torch.clamp((torch.remainder(phase, 2 * math.pi) / (2 * math.pi) * bins).long(), 0, bins - 1)
        return lookup[index]

    def field(self, radius: torch.Tensor, wavelength: float) -> torch.Tensor:
        """Complex transmission t·exp(iφ) of a radius map (metres) at ``wavelength`` (metres)."""
        phase, transmission = self.response(radius, wavelength)
        # Not torch.polar: its gradient w.r.t. the amplitude is 0 where the amplitude is 0, so a
        # dark pillar could never learn to let light through.
        return transmission * torch.complex(torch.cos(phase), torch.sin(phase))


def gather_segments(column: torch.Tensor, segment: torch.Tensor) -> torch.Tensor:
    """``column[segment]`` for a 1-D per-segment column and an index tensor of any shape (int32 or
    int64): a flat ``index_select``, the fastest gather here for ~10⁶ indices."""
    return column.index_select(0, segment.reshape(-1)).view(segment.shape)


def load_meta_atom_table(path: str | Path) -> MetaAtomTable:
    """Read a CSV of ``radius_m`` (or ``diameter_m``), ``wavelength_m``, ``phase_rad``, ``transmission`` rows.

    Every wavelength must be tabulated on the same increasing radius grid (≥ 2 radii).
    Errors name the file and the row.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            fields = reader.fieldnames or []
            size_column = next((name for name in PARAMETER_COLUMNS if name in fields), "radius_m")
            columns = (size_column, *TABLE_COLUMNS[1:])
            missing = [c for c in columns if c not in fields]
            if missing:
                raise TableError(f"{path}: missing column(s) {missing}; expected header {','.join(TABLE_COLUMNS)} "
                                 "(or diameter_m in place of radius_m).")  # fmt: skip
            rows: dict[float, list[tuple[float, float, float]]] = {}
            for line_number, record in enumerate(reader, start=2):
                try:
                    radius, wavelength, phase, transmission = (float(record[c]) for c in columns)
                except (TypeError, ValueError) as exc:
                    raise TableError(f"{path}, row {line_number}: not a number ({exc}).") from None
                if not all(math.isfinite(v) for v in (radius, wavelength, phase, transmission)):
                    raise TableError(f"{path}, row {line_number}: values must be finite.")
                if radius < 0 or not 100e-9 <= wavelength <= 20e-6:
                    raise TableError(
                        f"{path}, row {line_number}: radius must be ≥ 0 m and wavelength 100 nm–20 µm, in metres "
                        f"(got radius {radius}, wavelength {wavelength})."
                    )
                if not 0 <= transmission <= 1:
                    raise TableError(f"{path}, row {line_number}: transmission must be in 0..1, got {transmission}.")
                rows.setdefault(round(wavelength, 15), []).append((radius, phase, transmission))
    except OSError as exc:
        raise TableError(f"cannot read meta-atom table {path}: {exc.strerror or exc}.") from None
    if not rows:
        raise TableError(f"{path}: no data rows.")
    wavelengths = np.array(sorted(rows))
    reference = None
    phases, transmissions = [], []
    for wavelength in wavelengths:
        samples = sorted(rows[wavelength])
        radii = np.array([s[0] for s in samples])
        if radii.size < 2 or np.any(np.diff(radii) <= 0):
            raise TableError(f"{path}: at {wavelength * 1e9:.1f} nm the radii must be ≥ 2 distinct values.")
        if reference is None:
            reference = radii
        elif radii.shape != reference.shape or not np.allclose(radii, reference, rtol=0, atol=1e-13):
            raise TableError(f"{path}: every wavelength must use the same radius grid.")
        phases.append([s[1] for s in samples])
        transmissions.append([s[2] for s in samples])
    return MetaAtomTable(reference, wavelengths, np.array(phases), np.array(transmissions), str(path),
                         PARAMETER_COLUMNS[size_column])  # fmt: skip


_DEFAULT_TABLE: MetaAtomTable | None = None


def default_meta_atom_table() -> MetaAtomTable:
    """The shipped silicon-nitride table (loaded once)."""
    global _DEFAULT_TABLE
    if _DEFAULT_TABLE is None:
        _DEFAULT_TABLE = load_meta_atom_table(DEFAULT_TABLE_PATH)
    return _DEFAULT_TABLE


def write_sin_table(path: str | Path = DEFAULT_TABLE_PATH, radius_step: float = 1e-9) -> Path:
    """(Re)generate the shipped table from the silicon-nitride fits."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    low, high = SIN_RADIUS_RANGE
    radii = np.round(np.arange(low, high + radius_step / 2, radius_step), 12)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("diameter_m", *TABLE_COLUMNS[1:]))
        for wavelength in sorted(SIN_PHASE_FITS):
            for radius, phase in zip(radii, sin_fit_phase(radii, wavelength), strict=True):
                writer.writerow([f"{radius:.3e}", f"{wavelength:.3e}", f"{phase:.9f}", "1.0"])
    return path


if __name__ == "__main__":
    print(write_sin_table())
