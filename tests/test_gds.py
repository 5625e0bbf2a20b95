"""GDSII export of a metasurface: counts, radii, positions and structure read back with gdstk."""

import gdstk
import numpy as np
import pytest

from onn_core.design import Design
from onn_core.errors import OpticsInputError
from onn_core.fabrication import gds
from onn_core.fabrication.gds import (
    GdsSummary,
    disc_cell_name,
    expected_disc_count,
    read_gds_summary,
    write_metasurface_gds,
    write_metasurface_oas,
)

PITCH = 293e-9
PHASE_PIXEL = 4 * PITCH  # 4 × 4 atoms per phase pixel
NM = 1e-9


@pytest.fixture(scope="module")
def design():
    # 4 × 4 sub-optics of 40 µm: 8 signed kernels, 34 phase pixels (136 atoms) per side.
    design = Design(metasurface_height=200e-6, metasurface_width=200e-6, kernel_size=40e-6, kernel_spacing=10e-6)
    assert (design.sub_optic_count, design.kernel_count) == (16, 8)
    return design


def pixels_per_side(design):
    return round(design.kernel_size / PHASE_PIXEL)


def lens_radii(design, count, seed=0):
    """A focusing-lens-like radius map per sub-optic (0–140 nm), with a small dead zone below 10 nm."""
    n = pixels_per_side(design)
    x = (np.arange(n) - (n - 1) / 2) * PHASE_PIXEL
    r2 = x[None, :] ** 2 + x[:, None] ** 2
    rng = np.random.default_rng(seed)
    maps = []
    for _ in range(count):
        phase = np.mod(-2 * np.pi / 532e-9 * (np.sqrt(r2 + 2.4e-3**2) - 2.4e-3) + rng.uniform(0, 2 * np.pi), 2 * np.pi)
        maps.append(phase / (2 * np.pi) * 140e-9)
    radii = np.stack(maps)
    radii[:, 0, 0] = 50.4e-9  # a known pillar at atom (0, 0) of every sub-optic
    return radii


def quantised(radii, step=NM):
    return np.round(radii / step) * step


@pytest.fixture(scope="module")
def written(design, tmp_path_factory):
    radii = lens_radii(design, count=5)
    path = tmp_path_factory.mktemp("gds") / "lens.gds"
    calls = []
    summary = write_metasurface_gds(path, design, radii, PHASE_PIXEL, progress=lambda done, total: calls.append(done))
    return radii, path, summary, calls


def test_counts_names_and_radii_read_back(design, written):
    radii, path, summary, calls = written
    assert isinstance(summary, GdsSummary) and calls == [1, 2, 3, 4, 5]
    back = read_gds_summary(path)
    assert back["top_cells"] == ["METASURFACE"]
    names = ["SUBOPTIC_K000_PLUS", "SUBOPTIC_K000_MINUS", "SUBOPTIC_K001_PLUS", "SUBOPTIC_K001_MINUS"]
    assert back["sub_optic_cells"] == summary.cells == [*names, "SUBOPTIC_K002_PLUS"]
    assert back["unit_m"] == pytest.approx(1e-6) and back["precision_m"] == pytest.approx(1e-9)

    # Independent count: every atom of the upsampled map whose rounded radius reaches 10 nm.
    atoms = np.repeat(np.repeat(quantised(radii), 4, axis=1), 4, axis=2)
    independent = int(np.sum(atoms >= 10e-9 - 1e-15))
    assert back["discs"] == summary.discs == expected_disc_count(radii, PHASE_PIXEL, design) == independent
    assert summary.skipped_atoms == atoms.size - independent > 0
    assert sum(back["discs_per_cell"].values()) == back["discs"]

    written_radii = np.unique(quantised(radii)[quantised(radii) >= 10e-9 - 1e-15])
    assert summary.disc_cells == len(written_radii) == len(back["disc_radii_m"])
    np.testing.assert_allclose(back["disc_radii_m"], written_radii, atol=1 * NM)
    assert summary.file_bytes == path.stat().st_size
    assert summary.to_dict()["database_unit_m"] == 1e-6


def test_placement_of_sub_optics_and_of_atom_zero(design, written):
    radii, path, summary, _ = written
    library = gdstk.read_gds(str(path))
    cells = {cell.name: cell for cell in library.cells}
    top = cells["METASURFACE"]
    placed = {ref.cell.name: ref.origin for ref in top.references}
    for optic, name in zip(design.sub_optics(), summary.cells, strict=False):
        assert placed[name] == pytest.approx((optic.centre_x / 1e-6, optic.centre_y / 1e-6), abs=1e-3)
    outline_layers = sorted({(p.layer, p.datatype) for p in top.polygons})
    assert outline_layers == [(10, 0), (11, 0)] and len(top.polygons) == 1 + len(summary.cells)

    corner = -axis_atom(design) * PITCH / 1e-6  # atom (0, 0), µm from the sub-optic centre
    for index, name in enumerate(summary.cells):
        (first,) = [ref for ref in cells[name].references if ref.origin == pytest.approx((corner, corner), abs=1e-3)]
        assert first.cell.name == disc_cell_name(quantised(radii[index, 0, 0])) == "DISC_R0050NM"
        assert first.repetition.rows % 4 == 0 and first.repetition.columns % 4 == 0
        assert first.repetition.spacing == pytest.approx((PITCH / 1e-6, PITCH / 1e-6), abs=1e-6)
        # Every block starts on the exact lattice (no ±1 nm jitter from rounding each origin).
        origins_nm = np.rint(np.array([ref.origin for ref in cells[name].references]) * 1000).astype(int)
        assert np.all((origins_nm - origins_nm.min(axis=0)) % 1172 == 0)


def axis_atom(design) -> float:
    """Index of the sub-optic's axis on its atom lattice: the simulation centres phase pixel n // 2
    (4 atoms per pixel here), as onn_core.optics.grids does."""
    return (pixels_per_side(design) // 2) * 4 + 1.5


def test_flattened_sub_optic_matches_the_radius_map_atom_for_atom(design, written):
    radii, path, summary, _ = written
    library = gdstk.read_gds(str(path))
    assert_cell_matches_radius_map(library, summary.cells[1], radii[1], design)


def assert_cell_matches_radius_map(library, name, radii, design):
    """Every pillar of sub-optic cell ``name``, flattened: one per atom whose radius reaches 10 nm,
    at its lattice site, with its radius."""
    cell = next(cell for cell in library.cells if cell.name == name).copy("FLAT").flatten()
    boxes = np.array([polygon.bounding_box() for polygon in cell.polygons])  # (discs, 2, 2), µm
    centres = boxes.mean(axis=1) * 1e-6
    found_radii = (boxes[:, 1, 0] - boxes[:, 0, 0]) / 2 * 1e-6

    axis = axis_atom(design)
    atom_radius = np.repeat(np.repeat(quantised(radii), 4, axis=0), 4, axis=1)
    rows, cols = np.nonzero(atom_radius >= 10e-9 - 1e-15)
    expected = np.column_stack([cols, rows]).astype(float)
    expected = (expected - axis) * PITCH
    found = np.rint(centres / PITCH + axis).astype(int)  # lattice indices (j, i)
    order = np.lexsort((found[:, 0], found[:, 1]))
    assert len(found) == len(rows)
    np.testing.assert_array_equal(found[order], np.column_stack([cols, rows]))
    np.testing.assert_allclose(centres[order], expected, atol=1 * NM)
    np.testing.assert_allclose(found_radii[order], atom_radius[rows, cols], atol=1 * NM)


def test_oasis_holds_the_same_layout_as_gdsii_in_a_fraction_of_the_bytes(design, written, tmp_path):
    radii, gds_path, gds_summary, _ = written
    path = tmp_path / "lens.oas"
    calls = []
    summary = write_metasurface_oas(path, design, radii, PHASE_PIXEL, progress=lambda done, total: calls.append(done))
    assert summary.format == "oas" and calls == [1, 2, 3, 4, 5] and summary.file_bytes == path.stat().st_size
    back, gds_back = read_gds_summary(path), read_gds_summary(gds_path)
    for key in ("top_cells", "sub_optic_cells", "discs", "discs_per_cell", "unit_m", "precision_m"):
        assert back[key] == gds_back[key], key
    assert back["discs"] == summary.discs == gds_summary.discs == expected_disc_count(radii, PHASE_PIXEL, design)
    np.testing.assert_allclose(back["disc_radii_m"], gds_back["disc_radii_m"], atol=1e-3 * NM)
    assert summary.file_bytes < gds_summary.file_bytes / 4
    library = gdstk.read_oas(str(path), tolerance=1e-4)
    for index in (0, 3):
        assert_cell_matches_radius_map(library, summary.cells[index], radii[index], design)


def test_constant_map_merges_to_one_array_per_sub_optic(design, tmp_path):
    n = pixels_per_side(design)
    radii = np.full((2, n, n), 80e-9)
    summary = write_metasurface_gds(tmp_path / "flat.gds", design, radii, PHASE_PIXEL)
    assert summary.references == 2 and summary.disc_cells == 1
    assert summary.discs == 2 * (4 * n) ** 2 == read_gds_summary(tmp_path / "flat.gds")["discs"]

    # Rows differ, so only horizontal merging applies: one array per row of blocks.
    radii[:, ::2] = 60e-9
    summary = write_metasurface_gds(tmp_path / "stripes.gds", design, radii, PHASE_PIXEL)
    assert summary.references == 2 * n


def test_arrays_are_cut_to_gdsii_repeat_limit(design, tmp_path, monkeypatch):
    monkeypatch.setattr(gds, "MAX_ARRAY_REPEATS", 12)  # 3 blocks of 4 atoms
    n = pixels_per_side(design)
    radii = np.full((1, n, n), 80e-9)
    summary = write_metasurface_gds(tmp_path / "cut.gds", design, radii, PHASE_PIXEL)
    library = gdstk.read_gds(str(tmp_path / "cut.gds"))
    references = next(cell for cell in library.cells if cell.name == summary.cells[0]).references
    assert max(max(ref.repetition.columns, ref.repetition.rows) for ref in references) <= 12
    assert summary.discs == (4 * n) ** 2 == read_gds_summary(tmp_path / "cut.gds")["discs"]


def test_unsigned_names_and_empty_pixels(design, tmp_path):
    unsigned = design.replace(signed_kernels=False)
    n = pixels_per_side(design)
    radii = np.zeros((3, n, n))
    radii[:, n // 2, n // 2] = 9.4e-9  # rounds to 9 nm: below the 10 nm minimum, no pillar
    radii[2, 0, :] = 30e-9
    summary = write_metasurface_gds(tmp_path / "u.gds", unsigned, radii, PHASE_PIXEL)
    assert summary.cells == ["SUBOPTIC_K000", "SUBOPTIC_K001", "SUBOPTIC_K002"]
    assert summary.discs == 16 * n and summary.skipped_atoms == 3 * (4 * n) ** 2 - 16 * n
    back = read_gds_summary(tmp_path / "u.gds")
    assert back["discs_per_cell"] == {"SUBOPTIC_K000": 0, "SUBOPTIC_K001": 0, "SUBOPTIC_K002": 16 * n}


def test_coarser_quantisation_and_minimum_radius(design, tmp_path):
    radii = lens_radii(design, count=1)
    summary = write_metasurface_gds(
        tmp_path / "q.gds", design, radii, PHASE_PIXEL, quantisation_m=5e-9, min_radius_m=20e-9
    )
    coarse = quantised(radii, 5e-9)
    assert summary.discs == 16 * int(np.sum(coarse >= 20e-9 - 1e-15))
    radii_back = np.array(read_gds_summary(tmp_path / "q.gds")["disc_radii_m"])
    assert radii_back.min() >= 20e-9 - NM
    np.testing.assert_allclose(radii_back / 5e-9, np.round(radii_back / 5e-9), atol=0.2)


def test_gzip_output_reads_back_the_same(design, written, tmp_path):
    radii, path, summary, _ = written
    packed = write_metasurface_gds(tmp_path / "lens.gds.gz", design, radii, PHASE_PIXEL)
    assert (tmp_path / "lens.gds.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert packed.file_bytes < summary.file_bytes / 2 and packed.discs == summary.discs
    assert read_gds_summary(tmp_path / "lens.gds.gz") == read_gds_summary(path)
    assert [item.name for item in tmp_path.iterdir()] == ["lens.gds.gz"]


def test_radius_that_rounds_past_half_the_pitch_is_refused(design):
    radii = np.full((1, 34, 34), 146e-9)
    assert expected_disc_count(radii, PHASE_PIXEL, design) == (4 * 34) ** 2  # 146 nm ≤ 146.5 nm
    with pytest.raises(OpticsInputError, match=r"146 nm, 150 nm after quantisation .* clamp radii to ≤ 140 nm"):
        expected_disc_count(radii, PHASE_PIXEL, design, quantisation_m=10e-9)


def test_failed_write_leaves_no_file(design, tmp_path):
    radii = lens_radii(design, count=2)

    def fail(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_metasurface_gds(tmp_path / "x.gds", design, radii, PHASE_PIXEL, progress=fail)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "change, fragment",
    [
        (lambda r: r[0], "radius_m must have 3 dimensions"),
        (lambda r: np.concatenate([r] * 4), "radius_m holds 20 sub-optic maps but the design uses 16"),
        (lambda r: r[:, :30, :30], "needs 34 × 34"),
        (lambda r: r[:, :, :33], "34 × 33"),
        (
            lambda r: np.where(np.arange(34) == 3, np.nan, r),
            "170 non-finite radii (first at sub-optic 0, pixel row 0, column 3",
        ),
        (lambda r: r - 20e-9, "radius_m has negative radii"),
        (lambda r: r + 100e-9, "exceeds half the meta-atom pitch 293 nm (146.5 nm)"),
        (lambda r: r.astype(complex), "radius_m must be a real array"),
    ],
)
def test_refuses_bad_radius_maps(design, change, fragment):
    radii = change(lens_radii(design, count=5))
    with pytest.raises(OpticsInputError, match="radius_m") as caught:
        write_metasurface_gds("/nonexistent/never.gds", design, radii, PHASE_PIXEL)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    "keywords, fragment",
    [
        ({"phase_pixel_m": 1.0e-6}, "phase_pixel_m: a phase pixel of 1 µm is 3.41297 meta-atom pitches"),
        ({"phase_pixel_m": -1e-6}, "phase_pixel_m must be a finite length > 0"),
        ({"quantisation_m": 0.0}, "quantisation_m must be a finite length > 0"),
        ({"quantisation_m": -1e-9}, "quantisation_m must be a finite length > 0"),
        ({"quantisation_m": 0.5e-9}, "quantisation_m must be a whole number of nanometres"),
        ({"min_radius_m": float("nan")}, "min_radius_m must be a finite length"),
        ({"layer": 10}, "layer 10 is taken by the outlines"),
        ({"datatype": -1}, "datatype must be a whole number"),
        ({"top_cell": "SUBOPTIC_X"}, "top_cell must be a non-empty name"),
    ],
)
def test_refuses_bad_settings(design, tmp_path, keywords, fragment):
    radii = lens_radii(design, count=1)
    arguments = {"phase_pixel_m": PHASE_PIXEL, **keywords}
    phase_pixel = arguments.pop("phase_pixel_m")
    with pytest.raises(OpticsInputError) as caught:
        write_metasurface_gds(tmp_path / "bad.gds", design, radii, phase_pixel, **arguments)
    assert fragment in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_refuses_sub_optic_overlap_and_unused_sub_optics(tmp_path):
    # 3 × 3 sub-optics, 4 signed kernels: the ninth sub-optic is unused and gets no map.
    design = Design(metasurface_height=150e-6, metasurface_width=150e-6, kernel_size=40e-6, kernel_spacing=10e-6)
    n = pixels_per_side(design)
    with pytest.raises(OpticsInputError, match="holds 9 sub-optic maps but the design uses 8"):
        expected_disc_count(np.full((9, n, n), 50e-9), PHASE_PIXEL, design)
    tight = Design(
        metasurface_height=150e-6, metasurface_width=150e-6, kernel_size=40.1e-6, kernel_spacing=0.0
    )  # 35 pixels (41.0 µm of atoms) would overrun the 40.1 µm sub-optic pitch
    with pytest.raises(OpticsInputError, match="neighbouring sub-optics would overlap"):
        expected_disc_count(np.full((2, 35, 35), 50e-9), PHASE_PIXEL, tight)


def test_written_file_has_ordinary_permissions(design, tmp_path):
    summary = write_metasurface_gds(tmp_path / "p.gds", design, np.full((1, 34, 34), 80e-9), PHASE_PIXEL)
    (tmp_path / "plain.txt").write_text("")  # what the umask gives any new file
    assert (tmp_path / "p.gds").stat().st_mode == (tmp_path / "plain.txt").stat().st_mode
    assert summary.references == 1
