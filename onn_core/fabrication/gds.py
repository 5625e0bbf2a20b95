"""GDSII and OASIS layouts of a metasurface of cylindrical pillars on a square lattice, and a read-back check.

What a fab needs from a trained design: one disc per meta-atom, at its lattice site, with its
radius. A default design holds ~1.6·10⁸ meta-atoms, so the file is kept hierarchical:

- one **disc cell** per distinct radius (radii are quantised to ``quantisation_m``), named
  ``DISC_R0123NM`` (radius in whole nanometres), holding one polygon circle;
- one **sub-optic cell** per used sub-optic (``SUBOPTIC_K003_PLUS`` / ``_MINUS`` for the K⁺/K⁻ of a
  signed kernel, ``SUBOPTIC_K003`` for an unsigned one), origin at the sub-optic centre, holding
  array references (GDSII AREF) to disc cells: a phase pixel is a block of ``a × a`` identical atoms
  (a = atoms per pixel); neighbouring pixels in a row with the same quantised radius are merged
  into one wider array, and identical runs in consecutive rows into one taller array;
- a **top cell** placing each sub-optic cell at its design centre, plus outlines for the fab
  engineer: the metasurface (h × w) on layer 10 and every sub-optic's k × k square on layer 11.

Coordinates: atom (i, j) of a sub-optic (i along y, j along x, 0 at the −y/−x edge) sits at
centre + ((j − c)·pitch, (i − c)·pitch) with c = a·⌊n/2⌋ + (a − 1)/2: the phase pixel n // 2 is
centred on the sub-optic's axis, as in the simulation (``onn_core.optics.grids``), so for an even
n the layout is exactly what was simulated (not shifted by half a pixel).

Units: the code works in metres; the file uses a user unit of 1 µm and a database precision of
1 nm (the usual mask-shop grid), converted only where geometry is handed to gdstk. Positions
are snapped to that grid: with an even number of atoms per side the lattice falls on half
nanometres, and every such position rounds up, so a sub-optic moves rigidly by ≤ 0.5 nm while
its lattice stays exact for any whole-nanometre pitch.

Discs are polygons with vertices on the circle, as many as keep the chord sagitta ≤ 1 nm (the
database grid), at least 16 so the smallest pillars stay round, and a multiple of 4 so the
polygon's bounding box is exactly the diameter (the read-back infers radii from it).

Size: a file costs ~60 bytes per array reference. Merging only pays where the radius is constant
over several pixels; a focusing phase wraps every few pixels near a sub-optic's edge, so the
default design (16 sub-optics of 802 × 802 pixels) still needs ~9.5·10⁶ references (~600 MB,
~17 s). Coarser ``quantisation_m`` barely helps (5 nm: −5 %); a ``.gz`` name compresses ~6×.
:func:`write_metasurface_oas` writes the same layout as OASIS in ~19 MB and a third of the time
(``bench/layout_export.py``).
"""

from __future__ import annotations

import gzip
import math
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gdstk
import numpy as np

from ..design import Design, SubOptic
from ..errors import OpticsInputError
from ..units import format_length

GDS_UNIT_M = 1e-6  # user unit: coordinates in the file are micrometres
GDS_PRECISION_M = 1e-9  # database unit: every coordinate is a whole number of nanometres
METASURFACE_OUTLINE_LAYER = 10
SUB_OPTIC_OUTLINE_LAYER = 11
# GDSII stores an array reference's column and row counts as 16-bit signed integers.
MAX_ARRAY_REPEATS = 32767
MIN_DISC_VERTICES = 16
DISC_CELL_PREFIX = "DISC_R"
SUB_OPTIC_CELL_PREFIX = "SUBOPTIC_"
PIXEL_CELL_PREFIX = "PIXEL_R"  # OASIS only: one phase pixel's a × a pillars of one radius

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class GdsSummary:
    """What :func:`write_metasurface_gds` wrote.

    Attributes:
        path: the GDSII file.
        cells: sub-optic cell names, in the order of ``design.sub_optics()``.
        sub_optic_cells: number of sub-optic cells.
        discs: pillars placed, counting every repetition of the array references.
        disc_cells: distinct quantised radii (one cell each).
        skipped_atoms: lattice sites left empty because their quantised radius is below the
            minimum pillar radius.
        references: array references to disc cells inside the sub-optic cells (file size
            scales with it, ~60 bytes each).
        file_bytes: size of the file.
        database_unit_m: GDS user unit, metres (1e-6: coordinates in µm).
        precision_m: GDS database grid, metres (1e-9: every coordinate is a whole nanometre).
        quantisation_m: radius quantisation step, metres.
        seconds: wall time of the write.
        format: ``gds`` (GDSII) or ``oas`` (OASIS).
    """

    path: str
    cells: list[str]
    sub_optic_cells: int
    discs: int
    disc_cells: int
    skipped_atoms: int
    references: int
    file_bytes: int
    database_unit_m: float
    quantisation_m: float
    seconds: float
    precision_m: float = GDS_PRECISION_M
    format: str = "gds"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Layout:
    """Validated inputs of a write: radii as integer multiples of the quantisation step."""

    levels: np.ndarray  # (S, n, n) int64, radius = level · quantisation
    sub_optics: list[SubOptic]
    atoms_per_pixel: int
    min_level: int
    quantisation_m: float
    pitch_m: float

    @property
    def atoms_per_side(self) -> int:
        return self.levels.shape[1] * self.atoms_per_pixel

    def pillar_mask(self) -> np.ndarray:
        return self.levels >= self.min_level


def _as_radius_array(radius_m: object) -> np.ndarray:
    if hasattr(radius_m, "detach"):  # a torch tensor (possibly on a GPU, possibly requiring grad)
        radius_m = radius_m.detach().cpu().numpy()
    try:
        array = np.asarray(radius_m)
    except (TypeError, ValueError) as exc:
        raise OpticsInputError(f"radius_m must be an array of radii in metres ({exc}).") from None
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise OpticsInputError(f"radius_m must be a real array of radii in metres, got dtype {array.dtype}.")
    return array.astype(np.float64, copy=False)


def _check_length(name: str, value: object, *, allow_zero: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise OpticsInputError(f"{name} must be a number of metres, got {type(value).__name__} {value!r}.")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise OpticsInputError(f"{name} must be a finite length {bound} in metres, got {value!r}.")
    return value


def _validate(
    design: Design, radius_m: object, phase_pixel_m: object, quantisation_m: object, min_radius_m: object
) -> _Layout:
    if not isinstance(design, Design):
        raise OpticsInputError(f"design must be a Design, got {type(design).__name__}.")
    pitch = design.meta_atom_pitch
    phase_pixel = _check_length("phase_pixel_m", phase_pixel_m, allow_zero=False)
    ratio = phase_pixel / pitch
    atoms_per_pixel = round(ratio)
    if atoms_per_pixel < 1 or abs(ratio - atoms_per_pixel) > 1e-6 * ratio:
        raise OpticsInputError(
            f"phase_pixel_m: a phase pixel of {format_length(phase_pixel)} is {ratio:.6g} meta-atom pitches "
            f"of {format_length(pitch)}; it must be a whole number of pitches (a block of identical atoms). "
            f"Fix: use {format_length(max(1, atoms_per_pixel) * pitch)} or change meta_atom_pitch."
        )
    quantisation = _check_length("quantisation_m", quantisation_m, allow_zero=False)
    steps = quantisation / GDS_PRECISION_M
    if steps < 1 - 1e-6 or abs(steps - round(steps)) > 1e-6 * steps:
        raise OpticsInputError(
            f"quantisation_m must be a whole number of nanometres (the file's 1 nm grid), got "
            f"{format_length(quantisation)}. Fix: use e.g. 1e-9."
        )
    min_radius = _check_length("min_radius_m", min_radius_m, allow_zero=True)

    radii = _as_radius_array(radius_m)
    if radii.ndim != 3:
        raise OpticsInputError(
            f"radius_m must have 3 dimensions (sub-optic, y, x), got shape {radii.shape}; "
            "stack one square radius map per used sub-optic."
        )
    count, rows, cols = radii.shape
    used = [optic for optic in design.sub_optics() if optic.kernel is not None]
    if count < 1 or count > len(used):
        raise OpticsInputError(
            f"radius_m holds {count} sub-optic maps but the design uses {len(used)} sub-optics "
            f"({design.kernel_count} kernels × {design.sub_optics_per_kernel}); give between 1 and {len(used)}."
        )
    expected = round(design.kernel_size / phase_pixel)
    if rows != cols or abs(rows - expected) > 1:
        raise OpticsInputError(
            f"radius_m maps are {rows} × {cols} phase pixels, but a {format_length(design.kernel_size)} kernel at "
            f"phase_pixel_m = {format_length(phase_pixel)} needs {expected} × {expected} (±1)."
        )
    extent = rows * atoms_per_pixel * pitch
    if extent > design.sub_optic_pitch * (1 + 1e-9):
        raise OpticsInputError(
            f"radius_m: {rows} phase pixels of {format_length(phase_pixel)} span {format_length(extent)}, more than "
            f"the sub-optic pitch {format_length(design.sub_optic_pitch)}: neighbouring sub-optics would overlap. "
            f"Fix: use {expected - 1} pixels per side or raise kernel_spacing."
        )
    finite = np.isfinite(radii)
    if not finite.all():
        s, i, j = np.argwhere(~finite)[0]
        raise OpticsInputError(
            f"radius_m has {int((~finite).sum())} non-finite radii (first at sub-optic {s}, pixel row {i}, "
            f"column {j}: {radii[s, i, j]})."
        )
    if (radii < 0).any():
        s, i, j = np.unravel_index(int(np.argmin(radii)), radii.shape)
        raise OpticsInputError(
            f"radius_m has negative radii (smallest {format_length(float(radii[s, i, j]))} at sub-optic {s}, "
            f"pixel row {i}, column {j}); radii are in metres and ≥ 0."
        )

    step_count = round(steps)
    quantisation = step_count * GDS_PRECISION_M
    levels = np.rint(radii / quantisation).astype(np.int64)
    # Pillars of radius pitch/2 just touch; anything larger would fuse with its neighbours on the mask.
    max_level = math.floor(pitch / 2 / quantisation * (1 + 1e-9))
    if levels.max() > max_level:
        s, i, j = np.unravel_index(int(np.argmax(radii)), radii.shape)
        largest = float(radii[s, i, j])
        rounded = int(levels[s, i, j]) * quantisation
        rounding = "" if abs(rounded - largest) < 1e-12 else f", {format_length(rounded)} after quantisation"
        raise OpticsInputError(
            f"radius_m: a pillar radius of {format_length(largest)}{rounding} (sub-optic {s}, pixel row {i}, "
            f"column {j}) exceeds half the meta-atom pitch {format_length(pitch)} "
            f"({format_length(pitch / 2)}): neighbouring pillars would touch and fuse. "
            f"{int((levels > max_level).sum())} pixels are too large. "
            f"Fix: clamp radii to ≤ {format_length(max_level * quantisation)}."
        )
    # A zero-radius pillar is no pillar, whatever min_radius_m says.
    min_level = max(1, math.ceil(min_radius / quantisation * (1 - 1e-9)))
    return _Layout(levels, used[:count], atoms_per_pixel, min_level, quantisation, pitch)


def expected_disc_count(
    radius_m: np.ndarray,
    phase_pixel_m: float,
    design: Design,
    *,
    quantisation_m: float = 1e-9,
    min_radius_m: float = 10e-9,
) -> int:
    """Pillars :func:`write_metasurface_gds` writes for these inputs (same validation).

    Args:
        radius_m: (S, n, n) pillar radius per phase pixel, metres.
        phase_pixel_m: side of one phase pixel, metres (a whole number of meta-atom pitches).
        design: the design the radii belong to.
        quantisation_m: radius quantisation step, metres.
        min_radius_m: quantised radii below this (metres) get no pillar.
    """
    layout = _validate(design, radius_m, phase_pixel_m, quantisation_m, min_radius_m)
    return int(layout.pillar_mask().sum()) * layout.atoms_per_pixel**2


def sub_optic_cell_name(sub_optic: SubOptic, kernel_count: int) -> str:
    """``SUBOPTIC_K003_PLUS`` / ``_MINUS`` (signed K⁺/K⁻) or ``SUBOPTIC_K003`` (unsigned)."""
    width = max(3, len(str(kernel_count - 1)))
    suffix = {1: "_PLUS", -1: "_MINUS", 0: ""}[sub_optic.sign]
    return f"{SUB_OPTIC_CELL_PREFIX}K{sub_optic.kernel:0{width}d}{suffix}"


def disc_cell_name(radius_m: float) -> str:
    """``DISC_R0123NM`` for a radius of 123 nm (given in metres, a whole number of nanometres)."""
    return f"{DISC_CELL_PREFIX}{round(radius_m / 1e-9):04d}NM"


def _disc_cell(radius_m: float, layer: int, datatype: int) -> gdstk.Cell:
    """The cell of one pillar radius (metres): ``DISC_R0123NM`` holding its disc."""
    cell = gdstk.Cell(disc_cell_name(radius_m))
    cell.add(_disc_polygon(radius_m, layer, datatype))
    return cell


def _disc_polygon(radius_m: float, layer: int, datatype: int) -> gdstk.Polygon:
    radius_um = radius_m / GDS_UNIT_M
    cosine = max(1.0 - GDS_PRECISION_M / radius_m, -1.0)
    vertices = max(MIN_DISC_VERTICES, math.ceil(math.pi / math.acos(cosine)))
    vertices = 4 * math.ceil(vertices / 4)
    angles = np.arange(vertices) * (2 * math.pi / vertices)
    points = np.column_stack([np.cos(angles), np.sin(angles)]) * radius_um
    return gdstk.Polygon(points, layer=layer, datatype=datatype)


def _block_arrays(levels: np.ndarray, min_level: int, max_blocks: int) -> tuple[np.ndarray, ...]:
    """Rectangles of phase pixels sharing one quantised radius, for one sub-optic.

    Horizontal runs of equal level in each row first, then identical runs (same start, length and
    level) in consecutive rows are stacked. Runs are cut at ``max_blocks`` pixels so an array
    reference stays within GDSII's 16-bit counts.

    Returns:
        (row, col, height, width, level) of each rectangle, in phase pixels; pixels below
        ``min_level`` are left out.
    """
    cols = levels.shape[1]
    is_start = np.ones(levels.shape, dtype=bool)
    is_start[:, 1:] = levels[:, 1:] != levels[:, :-1]
    # Cutting every run at multiples of max_blocks from its start would need the run's start; cutting
    # at fixed columns is simpler and costs at most one extra reference per row per cut.
    is_start[:, ::max_blocks] = True
    flat_starts = np.flatnonzero(is_start)
    lengths = np.diff(np.append(flat_starts, levels.size))
    row, col = np.divmod(flat_starts, cols)
    level = levels.reshape(-1)[flat_starts]
    keep = level >= min_level
    row, col, lengths, level = row[keep], col[keep], lengths[keep], level[keep]

    order = np.lexsort((row, level, lengths, col))
    row, col, lengths, level = row[order], col[order], lengths[order], level[order]
    same_run = (col[1:] == col[:-1]) & (lengths[1:] == lengths[:-1]) & (level[1:] == level[:-1])
    continues = np.concatenate([[False], same_run & (row[1:] == row[:-1] + 1)])
    group_start = np.flatnonzero(~continues)
    group_id = np.cumsum(~continues) - 1
    # A group is stacked rows; cut it into chunks of at most max_blocks rows.
    position_in_group = np.arange(row.size) - group_start[group_id]
    chunk_start = ~continues | (position_in_group % max_blocks == 0)
    starts = np.flatnonzero(chunk_start)
    heights = np.diff(np.append(starts, row.size))
    rect = (row[starts], col[starts], heights, lengths[starts], level[starts])
    reading_order = np.lexsort((rect[1], rect[0]))
    return tuple(part[reading_order] for part in rect)


def _check_layer(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or not 0 <= value <= 32767:
        raise OpticsInputError(f"{name} must be a whole number 0–32767 (a GDSII {name}), got {value!r}.")
    return int(value)


@dataclass(frozen=True)
class _Plan:
    """What both layout writers need: validated inputs and the lattice on the file's grid."""

    layout: _Layout
    path: Path
    layer: int
    datatype: int
    pitch_grid: float  # the meta-atom pitch in database units (nanometres)
    pitch_um: float
    centre_twice: int  # twice the index of the atom on a sub-optic's axis
    names: list[str]  # sub-optic cell names


def _plan(path, design, radius_m, phase_pixel_m, quantisation_m, min_radius_m, layer, datatype, top_cell) -> _Plan:
    layout = _validate(design, radius_m, phase_pixel_m, quantisation_m, min_radius_m)
    layer = _check_layer("layer", layer)
    datatype = _check_layer("datatype", datatype)
    if layer in (METASURFACE_OUTLINE_LAYER, SUB_OPTIC_OUTLINE_LAYER):
        raise OpticsInputError(
            f"layer {layer} is taken by the outlines (metasurface on {METASURFACE_OUTLINE_LAYER}, "
            f"sub-optics on {SUB_OPTIC_OUTLINE_LAYER}); put the pillars on another layer."
        )
    reserved = (DISC_CELL_PREFIX, SUB_OPTIC_CELL_PREFIX, PIXEL_CELL_PREFIX)
    if not isinstance(top_cell, str) or not top_cell or top_cell.startswith(reserved):
        raise OpticsInputError(
            f"top_cell must be a non-empty name not starting with {', '.join(map(repr, reserved))}, got {top_cell!r}."
        )
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path}: the folder {path.parent} does not exist.")

    a = layout.atoms_per_pixel
    pitch_grid = layout.pitch_m / GDS_PRECISION_M
    if abs(pitch_grid - round(pitch_grid)) < 1e-6:
        pitch_grid = float(round(pitch_grid))
    pitch_um = pitch_grid * GDS_PRECISION_M / GDS_UNIT_M
    # The simulation's grid convention (onn_core.optics.grids): phase pixel n // 2 is centred on
    # the sub-optic's axis, so with an even n the pixels reach half a pixel further to −x/−y.
    # Twice the index of the atom at the axis, kept whole so positions stay exact.
    pixels = layout.levels.shape[-1]
    centre_twice = 2 * (pixels // 2) * a + a - 1
    names = [sub_optic_cell_name(optic, design.kernel_count) for optic in layout.sub_optics]
    return _Plan(layout, path, layer, datatype, pitch_grid, pitch_um, centre_twice, names)


def write_metasurface_gds(
    path: str | os.PathLike[str],
    design: Design,
    radius_m: np.ndarray,
    phase_pixel_m: float,
    *,
    quantisation_m: float = 1e-9,
    min_radius_m: float = 10e-9,
    layer: int = 1,
    datatype: int = 0,
    top_cell: str = "METASURFACE",
    progress: ProgressCallback | None = None,
) -> GdsSummary:
    """Write the GDSII layout of the pillars of every used sub-optic.

    Args:
        path: output file; written to a temporary file beside it, then moved into place, so a
            reader never sees a half-written layout. A name ending in ``.gz`` (``layout.gds.gz``)
            gets the same GDSII gzip-compressed, the form most mask shops accept for large files
            (a lens-like default design: ~570 MB plain, ~105 MB compressed, +4 s).
        design: the design (sub-optic centres, kernel size, meta-atom pitch).
        radius_m: (S, n, n) pillar radius, metres, per phase pixel of the first S used sub-optics
            in ``design.sub_optics()`` order; row 0 is the −y edge, column 0 the −x edge;
            n ≈ kernel_size / phase_pixel_m (±1).
        phase_pixel_m: side of one phase pixel, metres; a whole number a of meta-atom pitches,
            so each pixel is written as a × a identical pillars.
        quantisation_m: radii are rounded to this step, metres (a whole number of nanometres);
            each distinct rounded radius becomes one disc cell.
        min_radius_m: lattice sites whose rounded radius is below this (metres) get no pillar.
        layer, datatype: GDSII layer/datatype of the pillars (layers 10 and 11 hold outlines).
        top_cell: name of the top cell.
        progress: called as ``progress(done, total)`` after each sub-optic.

    Returns:
        A :class:`GdsSummary` of what was written.

    Raises:
        OpticsInputError: inputs that cannot be written faithfully; the message names the
            parameter, the offending value and what to change.
    """
    started = time.perf_counter()
    plan = _plan(path, design, radius_m, phase_pixel_m, quantisation_m, min_radius_m, layer, datatype, top_cell)
    layout, path, a, names = plan.layout, plan.path, plan.layout.atoms_per_pixel, plan.names
    pitch_grid, pitch_um, centre_twice = plan.pitch_grid, plan.pitch_um, plan.centre_twice
    layer, datatype = plan.layer, plan.datatype
    max_blocks = MAX_ARRAY_REPEATS // a
    disc_cells: dict[int, gdstk.Cell] = {}
    discs = references = 0

    # Not mkstemp: its 0600 mode would survive os.replace, and a layout is meant to be shared.
    temp_name = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # Streaming one sub-optic cell at a time keeps memory at one cell's references (~10⁶ for
        # the default design) instead of the whole file's.
        writer = gdstk.GdsWriter(temp_name, name=f"ONN_{design.design_id}", unit=GDS_UNIT_M, precision=GDS_PRECISION_M)
        for index, (levels, name) in enumerate(zip(layout.levels, names, strict=True)):
            row, col, height, width, level = _block_arrays(levels, layout.min_level, max_blocks)
            for value in np.unique(level).tolist():
                if value not in disc_cells:
                    disc_cells[value] = _disc_cell(value * layout.quantisation_m, layer, datatype)
            origin_x = _snapped_origin_um(col * a, centre_twice, pitch_grid)
            origin_y = _snapped_origin_um(row * a, centre_twice, pitch_grid)
            columns, rows = (width * a).tolist(), (height * a).tolist()
            spacing = (pitch_um, pitch_um)
            sub_optic_cell = gdstk.Cell(name)
            sub_optic_cell.add(
                *[
                    gdstk.Reference(disc_cells[lv], (x, y), columns=c, rows=r, spacing=spacing)
                    for x, y, c, r, lv in zip(origin_x, origin_y, columns, rows, level.tolist(), strict=True)
                ]
            )
            writer.write(sub_optic_cell)
            discs += int(np.dot(height, width)) * a * a
            references += len(columns)
            del sub_optic_cell  # its references are written; free them before the next sub-optic
            if progress is not None:
                progress(index + 1, len(names))
        writer.write(*disc_cells.values(), _top_cell(top_cell, design, layout, names))
        writer.close()
        if path.suffix == ".gz":
            _gzip_in_place(temp_name)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise

    total_atoms = layout.levels.size * a * a
    return GdsSummary(
        path=str(path),
        cells=names,
        sub_optic_cells=len(names),
        discs=discs,
        disc_cells=len(disc_cells),
        skipped_atoms=total_atoms - discs,
        references=references,
        file_bytes=path.stat().st_size,
        database_unit_m=GDS_UNIT_M,
        quantisation_m=layout.quantisation_m,
        seconds=time.perf_counter() - started,
    )


def write_metasurface_oas(
    path: str | os.PathLike[str],
    design: Design,
    radius_m: np.ndarray,
    phase_pixel_m: float,
    *,
    quantisation_m: float = 1e-9,
    min_radius_m: float = 10e-9,
    layer: int = 1,
    datatype: int = 0,
    top_cell: str = "METASURFACE",
    compression_level: int = 6,
    progress: ProgressCallback | None = None,
) -> GdsSummary:
    """Write the same layout as :func:`write_metasurface_gds` as OASIS, the format mask shops take
    for large layouts: the same cells, pillars and outlines, in a file a fraction of the size.

    OASIS stores a repetition as a list of displacements and compresses each cell, so the
    hierarchy is built for that: one **pixel cell** per radius (``PIXEL_R0123NM``: an a × a array
    of that disc cell), and in each sub-optic cell one reference per radius, repeated at every
    phase pixel of that radius (row-major, so successive displacements are small and alike and
    compress well); discs are stored as OASIS circles. Arguments and checks as for
    :func:`write_metasurface_gds`, plus ``compression_level`` (0–9, gdstk's deflate level for
    each cell). The whole library is built in memory before it is written (about 16 bytes per
    phase pixel: ~170 MB for the default design).
    """
    started = time.perf_counter()
    plan = _plan(path, design, radius_m, phase_pixel_m, quantisation_m, min_radius_m, layer, datatype, top_cell)
    if isinstance(compression_level, bool) or not isinstance(compression_level, int) or not 0 <= compression_level <= 9:
        raise OpticsInputError(f"compression_level must be a whole number 0–9, got {compression_level!r}.")
    layout, a = plan.layout, plan.layout.atoms_per_pixel
    spacing = (plan.pitch_um, plan.pitch_um)
    library = gdstk.Library(f"ONN_{design.design_id}", unit=GDS_UNIT_M, precision=GDS_PRECISION_M)
    pixel_cells: dict[int, gdstk.Cell] = {}
    discs = references = 0
    for index, (levels, name) in enumerate(zip(layout.levels, plan.names, strict=True)):
        rows, cols = np.nonzero(levels >= layout.min_level)  # row-major
        level = levels[rows, cols]
        order = np.argsort(level, kind="stable")  # grouped by radius, row-major within each
        rows, cols, level = rows[order], cols[order], level[order]
        bounds = np.flatnonzero(np.diff(level)) + 1
        sub_optic_cell = gdstk.Cell(name)
        for start, stop in zip([0, *bounds.tolist()], [*bounds.tolist(), level.size], strict=True):
            value = int(level[start])
            if value not in pixel_cells:
                disc_cell = _disc_cell(value * layout.quantisation_m, plan.layer, plan.datatype)
                pixel_cell = gdstk.Cell(PIXEL_CELL_PREFIX + disc_cell.name.removeprefix(DISC_CELL_PREFIX))
                pixel_cell.add(gdstk.Reference(disc_cell, (0.0, 0.0), columns=a, rows=a, spacing=spacing))
                library.add(disc_cell, pixel_cell)
                pixel_cells[value] = pixel_cell
            x = np.asarray(_snapped_origin_um(cols[start:stop] * a, plan.centre_twice, plan.pitch_grid))
            y = np.asarray(_snapped_origin_um(rows[start:stop] * a, plan.centre_twice, plan.pitch_grid))
            reference = gdstk.Reference(pixel_cells[value], (x[0], y[0]))
            if stop - start > 1:  # the first placement is the reference's origin; the rest, displacements
                reference.repetition = gdstk.Repetition(offsets=np.column_stack([x[1:] - x[0], y[1:] - y[0]]))
            sub_optic_cell.add(reference)
            references += 1
        discs += int(level.size) * a * a
        library.add(sub_optic_cell)
        if progress is not None:
            progress(index + 1, len(plan.names))
    library.add(_top_cell(top_cell, design, layout, plan.names))
    # Not mkstemp: its 0600 mode would survive os.replace, and a layout is meant to be shared.
    temp_name = str(plan.path.parent / f".{plan.path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # Circles within a tenth of the database grid of a polygon's vertices are stored as circles.
        library.write_oas(temp_name, compression_level=compression_level,
                          circle_tolerance=0.1 * GDS_PRECISION_M / GDS_UNIT_M)  # fmt: skip
        os.replace(temp_name, plan.path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return GdsSummary(
        path=str(plan.path), cells=plan.names, sub_optic_cells=len(plan.names), discs=discs,
        disc_cells=len(pixel_cells), skipped_atoms=layout.levels.size * a * a - discs, references=references,
        file_bytes=plan.path.stat().st_size, database_unit_m=GDS_UNIT_M, quantisation_m=layout.quantisation_m,
        seconds=time.perf_counter() - started, format="oas",
    )  # fmt: skip


def _snapped_origin_um(first_atom: np.ndarray, centre_twice: int, pitch_grid: float) -> list[float]:
    """Positions (µm) of atoms ``first_atom`` on the 1 nm grid, halves rounded up.

    With an even atom count the lattice sits on half-nanometres; rounding each origin on its own
    in floating point would jitter neighbouring blocks by ±1 nm. Doubling keeps the arithmetic
    exact for a whole-nanometre pitch, so every origin moves by the same +0.5 nm (a rigid shift
    of the sub-optic) and the lattice stays exact.
    """
    twice = (2 * first_atom - centre_twice) * pitch_grid
    return (np.floor(twice / 2 + 0.5) * (GDS_PRECISION_M / GDS_UNIT_M)).tolist()


def _gzip_in_place(name: str) -> None:
    # gdstk writes only plain files. Level 1 compresses a lens-like layout ~5× at ~130 MB/s; higher
    # levels gain ~20 % more for ~4× the time.
    packed = name + ".gz"
    try:
        with open(name, "rb") as source, gzip.open(packed, "wb", compresslevel=1) as target:
            shutil.copyfileobj(source, target, 16 * 2**20)
        os.replace(packed, name)
    finally:
        Path(packed).unlink(missing_ok=True)


def _top_cell(name: str, design: Design, layout: _Layout, sub_optic_names: list[str]) -> gdstk.Cell:
    top = gdstk.Cell(name)
    half_w = design.metasurface_width / 2 / GDS_UNIT_M
    half_h = design.metasurface_height / 2 / GDS_UNIT_M
    top.add(gdstk.rectangle((-half_w, -half_h), (half_w, half_h), layer=METASURFACE_OUTLINE_LAYER))
    half_k = design.kernel_size / 2 / GDS_UNIT_M
    for optic, cell_name in zip(layout.sub_optics, sub_optic_names, strict=True):
        centre = (optic.centre_x / GDS_UNIT_M, optic.centre_y / GDS_UNIT_M)
        top.add(gdstk.Reference(cell_name, centre))
        top.add(
            gdstk.rectangle(
                (centre[0] - half_k, centre[1] - half_k),
                (centre[0] + half_k, centre[1] + half_k),
                layer=SUB_OPTIC_OUTLINE_LAYER,
            )
        )
    return top


def read_gds_summary(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Open a layout — GDSII (plain, or gzip-compressed if its name ends in ``.gz``) or OASIS (a
    name ending in ``.oas``) — and count what it holds, independently of how it was written.

    Sub-optic cells are the cells the top cell(s) reference; discs are the polygons reached
    from them, each reference counting once per repetition of its array. A disc's radius is half
    its polygon's bounding-box width.

    Returns:
        ``top_cells``, ``sub_optic_cells`` (names), ``discs``, ``discs_per_cell`` (name → count),
        ``disc_radii_m`` (sorted distinct radii, metres), ``unit_m`` and ``precision_m`` (metres),
        ``library`` (library name).
    """
    path = Path(path)
    if path.suffix == ".oas":
        # OASIS circles come back as polygons within this tolerance (µm): far under the 1 nm grid
        library = gdstk.read_oas(str(path), tolerance=0.1 * GDS_PRECISION_M / GDS_UNIT_M)
    elif path.suffix == ".gz":
        with tempfile.TemporaryDirectory() as folder:
            plain = Path(folder) / path.stem
            with gzip.open(path, "rb") as source, open(plain, "wb") as target:
                shutil.copyfileobj(source, target, 16 * 2**20)
            library = gdstk.read_gds(str(plain))
    else:
        library = gdstk.read_gds(str(path))
    unit_m = library.unit
    tops = library.top_level()
    sub_optics: list[gdstk.Cell] = []
    for top in tops:
        for reference in top.references:
            if isinstance(reference.cell, gdstk.Cell) and reference.cell not in sub_optics:
                sub_optics.append(reference.cell)

    counts: dict[str, int] = {}
    radii: set[float] = set()

    def polygons_below(cell: gdstk.Cell) -> int:
        if cell.name not in counts:
            total = len(cell.polygons)
            for polygon in cell.polygons:
                (x_min, _), (x_max, _) = polygon.bounding_box()
                # on the database grid: a circle read back as a polygon may fall short by a fraction of it
                radii.add(round((x_max - x_min) / 2 * unit_m / library.precision) * library.precision)
            for reference in cell.references:
                if isinstance(reference.cell, gdstk.Cell):
                    total += max(1, reference.repetition.size) * polygons_below(reference.cell)
            counts[cell.name] = total
        return counts[cell.name]

    per_cell = {cell.name: polygons_below(cell) for cell in sub_optics}
    return {
        "library": library.name,
        "top_cells": [cell.name for cell in tops],
        "sub_optic_cells": [cell.name for cell in sub_optics],
        "discs": sum(per_cell.values()),
        "discs_per_cell": per_cell,
        "disc_radii_m": sorted(radii),
        "unit_m": unit_m,
        "precision_m": library.precision,
    }
