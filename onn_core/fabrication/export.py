"""Exports of a trained run: what a fab needs (GDSII, radius maps) and what a collaborator reads.

``python -m onn_core export --run DIR --format FORMAT`` writes into ``DIR/export/`` (or --out):

=============  ==========================================================================================
format         files
=============  ==========================================================================================
npz            ``metasurface_maps.npz``: radius maps (m) and phase maps per wavelength (rad), layout order,
               with a JSON ``metadata`` entry naming every unit; ``kernels_psfs.npz``: target and realised
               kernels, capture PSFs on taps, and each sub-optic's sensor irradiance over its kernel window
png            ``radius_map.png`` (pillar diameters over the metasurface, mm axes, colour bar in nm), ``phase_map.png``
               (rad), ``kernels.png`` (target vs realised kernels)
csv            ``csv/sub_optics.csv`` (index: kernel, sign, centre in m, file), one drawn-disc radius matrix
               per sub-optic in nm (``csv/<cell>_disc_radius_nm.csv``, first row −y), ``csv/kernels.csv``
gds            ``metasurface.gds``: one disc per meta-atom, one cell per sub-optic (gdstk; µm units)
oas            ``metasurface.oas``: the same layout as OASIS (repetitions, circles, compressed cells)
json           ``design.json`` and ``report.json`` (metrics, fidelity, provenance)
safetensors    ``model.safetensors``: the trained weights without pickle, config and design as metadata
html           ``report.html``: one self-contained page (figures embedded) a collaborator can open anywhere
=============  ==========================================================================================

Formats that describe meta-atoms (npz, png, csv, gds, oas) need a metasurface: the run's inverse
design (``metasurface.npz``) or a physical-frontend run's own radius maps.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import OpticsInputError, TrainingError
from ..training.run import FinishedRun, load_history
from .fabricated import metasurface_from_physical
from .inverse_design import METASURFACE_JSON, Metasurface, realised_psf_image

FORMATS = ("npz", "png", "csv", "gds", "oas", "json", "safetensors", "html")  # html last: it lists the layouts
EXPORT_SCHEMA = "onn-export/1"


def run_metasurface(run: FinishedRun, *, required: bool = True) -> Metasurface | None:
    """The run's metasurface: its inverse design if there is one, else a physical run's radius maps."""
    if (run.folder / METASURFACE_JSON).is_file():
        return Metasurface.load(run.folder)
    physical = metasurface_from_physical(run.model, run.design)
    if physical is None and required:
        raise OpticsInputError(
            f"{run.folder} has no metasurface: its kernels were trained free (ideal frontend) and not inverse-designed "
            f"yet. Fix: run `python -m onn_core inverse-design --run {run.folder}` first."
        )
    return physical


def fabricated_optics(run: FinishedRun, measured_psfs: str | None = None, *, use_metasurface: bool = True):
    """(metasurface, measured PSFs) that fabricated optics start from, for the CLI and jobs alike.

    ``measured_psfs``: a file of PSFs measured on the bench (None: simulate them);
    ``use_metasurface``: start from the run's metasurface (inverse design or radius maps) when it has one.
    """
    from .measured import read_measured_psfs

    measured = read_measured_psfs(measured_psfs, run.frontends(), run.design) if measured_psfs else None
    metasurface = run_metasurface(run, required=False) if use_metasurface else None
    return metasurface, measured


def sub_optic_names(metasurface: Metasurface) -> list[str]:
    """Cell/file name per used sub-optic in layout order, e.g. SUBOPTIC_K003_PLUS."""
    names = []
    offset = 0
    for group in metasurface.groups:
        for kernel in range(group.kernels):
            index = offset + kernel
            names.extend([f"SUBOPTIC_K{index:03d}_PLUS", f"SUBOPTIC_K{index:03d}_MINUS"] if group.signed
                         else [f"SUBOPTIC_K{index:03d}"])  # fmt: skip
        offset += group.kernels
    return names


def _layout_rows(metasurface: Metasurface) -> list[dict[str, Any]]:
    names = sub_optic_names(metasurface)
    sub_optics = metasurface.design.sub_optics()
    return [
        {"name": name, "kernel": s.kernel, "sign": s.sign, "row": s.row, "col": s.col, "centre_x_m": s.centre_x,
         "centre_y_m": s.centre_y}
        for name, s in zip(names, sub_optics[: len(names)], strict=True)
    ]  # fmt: skip


def _phase_maps(radius: np.ndarray, wavelengths, table) -> np.ndarray:
    tensor = torch.as_tensor(radius)
    return np.stack([table.response(tensor, w)[0].numpy() for w in wavelengths], axis=1)  # (S, C, n, n)


def export_npz(run: FinishedRun, out: Path) -> list[Path]:
    metasurface = run_metasurface(run)
    radius = metasurface.layout_radius()
    design = metasurface.design
    metadata = {
        "schema": EXPORT_SCHEMA, "design_id": design.design_id, "units": {"radius_m": "m", "disc_radius_m": "m",
        "phase_rad": "rad", "phase_pixel_m": "m", "wavelengths_m": "m"},
        "radius_m": f"the meta-atom table's pillar parameter r (a {metasurface.table_parameter})",
        "disc_radius_m": "the radius of the disc drawn in the layout (GDSII)", "phase_pixel_m": metasurface.phase_pixel,
        "meta_atom_pitch_m": design.meta_atom_pitch, "atoms_per_phase_pixel": metasurface.atoms_per_phase_pixel,
        "wavelengths_m": list(design.wavelengths), "axes": "radius_m (sub-optic, y, x); phase_rad (sub-optic, "
        "wavelength, y, x); y index 0 is the −y edge", "sub_optics": _layout_rows(metasurface),
    }  # fmt: skip
    maps = out / "metasurface_maps.npz"
    np.savez_compressed(maps, radius_m=radius, disc_radius_m=metasurface.disc_radius(),
                        phase_rad=_phase_maps(radius, design.wavelengths, metasurface.table()),
                        metadata=np.array(json.dumps(metadata)))  # fmt: skip
    kernels = out / "kernels_psfs.npz"
    arrays: dict[str, np.ndarray] = {}
    for g, group in enumerate(metasurface.groups):
        prefix = f"group{g}_" if len(metasurface.groups) > 1 else ""
        arrays[f"{prefix}target_kernels"] = group.target_kernels
        arrays[f"{prefix}realised_kernels"] = group.realised_kernels
        arrays[f"{prefix}capture_psfs_taps"] = group.realised
        arrays[f"{prefix}capture_gains"] = group.gains
        irradiance = [
            realised_psf_image(r, design, metasurface.phase_pixel, wavelength=design.wavelengths[0],
                               window_taps=group.taps, scale=group.scale, table=metasurface.table())[0]
            for r in group.radius_m
        ]  # fmt: skip
        arrays[f"{prefix}sensor_irradiance_per_m2"] = np.stack(irradiance)
        arrays[f"{prefix}tap_pitch_m"] = np.array(design.tap_pitch * group.scale)
    arrays["irradiance_pitch_m"] = np.array(metasurface.phase_pixel)
    np.savez_compressed(kernels, **arrays)
    return [maps, kernels]


def export_json(run: FinishedRun, out: Path) -> list[Path]:
    design_path = out / "design.json"
    design_path.write_text(run.design.to_json(), encoding="utf-8")
    metasurface = run_metasurface(run, required=False)
    report = {
        "schema": EXPORT_SCHEMA, "run": str(run.folder), "design_id": run.design.design_id,
        "config": run.config.to_dict(), "metrics": run.metrics,
        "metasurface": None if metasurface is None else {**metasurface.summary(), "fidelity": metasurface.fidelity()},
    }  # fmt: skip
    report_path = out / "report.json"
    report_path.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    return [design_path, report_path]


def export_safetensors(run: FinishedRun, out: Path) -> list[Path]:
    from safetensors.torch import save_file

    state = {name: tensor.detach().contiguous().clone() for name, tensor in run.model.state_dict().items()}
    path = out / "model.safetensors"
    save_file(state, str(path), metadata={"schema": EXPORT_SCHEMA, "config": json.dumps(run.config.to_dict()),
                                          "design": run.design.to_json(indent=None)})  # fmt: skip
    return [path]


def export_csv(run: FinishedRun, out: Path) -> list[Path]:
    metasurface = run_metasurface(run)
    folder = out / "csv"
    folder.mkdir(parents=True, exist_ok=True)
    rows = _layout_rows(metasurface)
    radius = metasurface.disc_radius()
    written = []
    for row, radius_map in zip(rows, radius, strict=True):
        path = folder / f"{row['name']}_disc_radius_nm.csv"
        np.savetxt(path, radius_map * 1e9, fmt="%.2f", delimiter=",")
        row["file"] = path.name
        written.append(path)
    index = folder / "sub_optics.csv"
    with index.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*rows[0], "phase_pixel_m"])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "phase_pixel_m": metasurface.phase_pixel})
    kernels = folder / "kernels.csv"
    with kernels.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["group", "kernel", "channel", "row", "col", "target", "realised"])
        for g, group in enumerate(metasurface.groups):
            for index_values in np.ndindex(group.target_kernels.shape):
                writer.writerow([g, *index_values, f"{group.target_kernels[index_values]:.6g}",
                                 f"{group.realised_kernels[index_values]:.6g}"])  # fmt: skip
    return [index, kernels, *written]


def _mosaic(metasurface: Metasurface, maps: np.ndarray, downsample: int) -> tuple[np.ndarray, float]:
    """The sub-optic maps placed on the metasurface (NaN between them), at phase pixel × downsample."""
    design = metasurface.design
    pitch = metasurface.phase_pixel * downsample
    rows, cols = math.ceil(design.metasurface_height / pitch), math.ceil(design.metasurface_width / pitch)
    canvas = np.full((rows, cols), np.nan)
    for row, values in zip(_layout_rows(metasurface), maps, strict=True):
        small = values[: values.shape[0] // downsample * downsample, : values.shape[1] // downsample * downsample]
        small = small.reshape(small.shape[0] // downsample, downsample, -1, downsample).mean(axis=(1, 3))
        top = round((row["centre_y_m"] + design.metasurface_height / 2) / pitch - small.shape[0] / 2)
        left = round((row["centre_x_m"] + design.metasurface_width / 2) / pitch - small.shape[1] / 2)
        top, left = max(0, min(rows - small.shape[0], top)), max(0, min(cols - small.shape[1], left))
        canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
    return canvas, pitch


def export_png(run: FinishedRun, out: Path, *, max_pixels: int = 1600) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metasurface = run_metasurface(run)
    design = metasurface.design
    radius = metasurface.layout_radius()
    diameter = 2 * metasurface.disc_radius()
    samples_across = max(design.metasurface_height, design.metasurface_width) / metasurface.phase_pixel
    downsample = max(1, math.ceil(samples_across / max_pixels))
    extent_mm = [-design.metasurface_width / 2e-3, design.metasurface_width / 2e-3,
                 -design.metasurface_height / 2e-3, design.metasurface_height / 2e-3]  # fmt: skip
    written = []
    phase = _phase_maps(radius, design.wavelengths[:1], metasurface.table())[:, 0]
    phase_label = f"phase at {design.wavelengths[0] * 1e9:.0f} nm (rad)"
    maps = (("radius_map.png", diameter * 1e9, "pillar diameter (nm)", "viridis"),
            ("phase_map.png", np.mod(phase, 2 * math.pi), phase_label, "twilight"))  # fmt: skip
    for name, values, label, cmap in maps:
        canvas, pitch = _mosaic(metasurface, values, downsample)
        figure, axis = plt.subplots(figsize=(7, 6.2), dpi=150)
        image = axis.imshow(canvas, origin="lower", extent=extent_mm, cmap=cmap, interpolation="nearest")
        axis.set_xlabel("x (mm)")
        axis.set_ylabel("y (mm)")
        axis.set_aspect("equal")
        axis.set_title(f"{label.split(' (')[0]}: {len(values)} sub-optics, shown at {pitch * 1e6:.2f} µm pixels")
        figure.colorbar(image, ax=axis, label=label)
        path = out / name
        figure.savefig(path, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    groups = metasurface.groups
    kernels = sum(group.kernels for group in groups)
    figure, axes = plt.subplots(2, kernels, figsize=(1.3 * kernels + 1, 3), dpi=150, squeeze=False)
    column = 0
    for group in groups:
        for k in range(group.kernels):
            limit = float(np.abs(group.target_kernels[k]).max()) or 1.0
            for row_index, values in enumerate((group.target_kernels[k, 0], group.realised_kernels[k, 0])):
                axis = axes[row_index, column]
                axis.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower")
                axis.set_xticks([])
                axis.set_yticks([])
            axes[0, column].set_title(f"K{column}", fontsize=8)
            column += 1
    axes[0, 0].set_ylabel("target", fontsize=8)
    axes[1, 0].set_ylabel("realised", fontsize=8)
    taps = f"{design.kernel_taps} taps of {design.tap_pitch * 1e6:.2f} µm"
    figure.suptitle(f"kernels on the sensor ({taps})", fontsize=9)
    path = out / "kernels.png"
    figure.savefig(path, bbox_inches="tight")
    plt.close(figure)
    written.append(path)
    return written


def export_gds(run: FinishedRun, out: Path, *, quantisation: float = 1e-9) -> list[Path]:
    return _export_layout(run, out, "gds", quantisation)


def export_oas(run: FinishedRun, out: Path, *, quantisation: float = 1e-9) -> list[Path]:
    return _export_layout(run, out, "oas", quantisation)


def _export_layout(run: FinishedRun, out: Path, form: str, quantisation: float) -> list[Path]:
    """``metasurface.<form>`` and its summary ``metasurface_<form>.json`` (what was written: discs, bytes, seconds)."""
    from .gds import write_metasurface_gds, write_metasurface_oas

    metasurface = run_metasurface(run)
    path = out / layout_file(form)
    write = write_metasurface_gds if form == "gds" else write_metasurface_oas
    summary = write(path, metasurface.design, metasurface.disc_radius(), metasurface.phase_pixel,
                    quantisation_m=quantisation)  # fmt: skip
    (out / f"metasurface_{form}.json").write_text(json.dumps(summary.to_dict(), indent=2), encoding="utf-8")
    return [path, out / f"metasurface_{form}.json"]


def _energy_text(energy: dict[str, Any] | None) -> str:
    """The energy model's answer in µJ (runs recorded before it have none)."""
    if not energy:
        return "–"
    return (f"{energy['total_j'] * 1e6:.3g} µJ (sensor read-out {energy['sensor_j'] * 1e6:.3g}, "
            f"digital {energy['digital_j'] * 1e6:.3g}; docs/ENERGY.md)")  # fmt: skip


LAYOUT_NAMES = {"gds": "GDSII", "oas": "OASIS"}  # layout formats


def layout_file(form: str) -> str:
    """The file a layout format is exported to: ``metasurface.gds`` / ``metasurface.oas``."""
    return f"metasurface.{form}"


def _layout_files(out: Path) -> str:
    """The layouts exported beside the report (from their summaries), or how to write them."""
    import html

    rows = []
    for form, name in LAYOUT_NAMES.items():
        try:
            summary = json.loads((out / f"metasurface_{form}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        rows.append(f"<tr><th>{name}</th><td>{html.escape(Path(summary['path']).name)}: "
                    f"{summary['file_bytes'] / 1e6:,.1f} MB, {summary['discs']:,} discs in "
                    f"{summary['sub_optic_cells']} sub-optic cells, written in {summary['seconds']:.1f} s</td></tr>")
    if not rows:
        return ("<p>None exported with this report; write them with <code>python -m onn_core export --format "
                "gds</code> (or <code>oas</code>, OASIS: the same layout in a fraction of the bytes).</p>")
    return f"<table>{''.join(rows)}</table>"


def export_html(run: FinishedRun, out: Path) -> list[Path]:
    """A self-contained HTML report: metrics, design, training curve, kernels, metasurface."""
    import base64
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def embed(figure) -> str:
        from io import BytesIO

        buffer = BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight", dpi=110)
        plt.close(figure)
        return f'<img alt="figure" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'

    def table(rows: list[tuple[str, str]]) -> str:
        body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
        return f"<table>{body}</table>"

    metrics, design, config = run.metrics, run.design, run.config
    score = metrics.get(run.score_name)
    cost = metrics.get("cost") or {}
    summary = [
        ("dataset", str(metrics.get("dataset"))), ("student", str(metrics.get("model"))), ("method", config.method),
        (f"test {run.score_name}", f"{100 * score:.2f} %" if score is not None else "–"),
        ("teacher", str((metrics.get("teacher") or {}).get("model") or "–")),
        ("parameters", f"{cost['parameters']:,}" if "parameters" in cost else "–"),
        ("digital MACs / image", f"{cost['digital_macs']:,}" if "digital_macs" in cost else "–"),
        ("energy / image", _energy_text(cost.get("energy"))),
        ("seed", str(config.seed)),
    ]  # fmt: skip
    layout = design.report()["layout"]
    taps = f"{design.kernel_taps}×{design.kernel_taps} taps of {design.tap_pitch * 1e6:.2f} µm"
    design_rows = [
        ("design id", design.design_id),
        ("metasurface", f"{design.metasurface_height * 1e3:g} × {design.metasurface_width * 1e3:g} mm"),
        ("kernel aperture", f"{design.kernel_size * 1e6:g} µm"), ("spacing", f"{design.kernel_spacing * 1e6:g} µm"),
        ("layout", f"{layout['n_rows']} × {layout['n_cols']} sub-optics → {layout['kernels']} kernels"),
        ("meta-atom pitch", f"{design.meta_atom_pitch * 1e9:g} nm"),
        ("wavelengths", ", ".join(f"{w * 1e9:g} nm" for w in design.wavelengths)),
        ("sensor distance", f"{design.sensor_distance * 1e3:g} mm"), ("kernel", taps),
    ]  # fmt: skip
    sections = [f"<h2>Run</h2>{table(summary)}", f"<h2>Design</h2>{table(design_rows)}"]
    try:
        history = load_history(run.folder)
    except TrainingError:
        history = []  # the report leaves the curve out rather than fail over it
    if history:
        figure, axis = plt.subplots(figsize=(6, 3))
        key = f"val_{run.score_name}"
        axis.plot([h["epoch"] for h in history], [100 * h[key] for h in history], marker="o")
        axis.set_xlabel("epoch")
        axis.set_ylabel(f"validation {run.score_name} (%)")
        sections.append(f"<h2>Training</h2>{embed(figure)}")
    frontends = run.frontends()
    import torch

    with torch.no_grad():
        kernels = frontends[0].signed_kernels().double().numpy()
    count = kernels.shape[0]
    columns = min(count, 8)
    rows_needed = math.ceil(count / columns)
    figure, axes = plt.subplots(rows_needed, columns, figsize=(1.2 * columns, 1.2 * rows_needed), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            limit = float(np.abs(kernels[index]).max()) or 1.0
            axis.imshow(kernels[index, 0], cmap="RdBu_r", vmin=-limit, vmax=limit)
            axis.set_title(f"K{index}", fontsize=7)
    sections.append(f"<h2>Kernels (first group, signed, {design.tap_pitch * 1e6:.2f} µm taps)</h2>{embed(figure)}")
    metasurface = run_metasurface(run, required=False)
    if metasurface is not None:
        fidelity = metasurface.summary()
        sections.append("<h2>Metasurface</h2>" + table([
            ("sub-optics", str(fidelity["sub_optics"])), ("phase pixels", f"{fidelity['samples_per_side']}² of "
             f"{fidelity['phase_pixel_m'] * 1e9:.0f} nm"), ("kernel correlation (min / mean)",
             f"{fidelity['min_correlation']:.4f} / {fidelity['mean_correlation']:.4f}"),
            ("light on the kernel window", f"{100 * fidelity['mean_efficiency']:.0f} %")]))  # fmt: skip
        sections.append("<h2>Layout files</h2>" + _layout_files(out))
    style = ("body{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;color:#1a202c}"
             "table{border-collapse:collapse}th,td{border:1px solid #cbd5e0;padding:4px 8px;text-align:left}"
             "th{background:#edf2f7}img{max-width:100%}")  # fmt: skip
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>ONN run {html.escape(run.folder.name)}</title>"
            f"<style>{style}</style></head><body><h1>ONN Design Studio — run report</h1>{''.join(sections)}"
            "<p><small>Written by onn_core.fabrication.export; lengths as designed (SI in the JSON exports).</small>"
            "</p></body></html>")  # fmt: skip
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return [path]


EXPORTERS = {"npz": export_npz, "png": export_png, "csv": export_csv, "gds": export_gds, "oas": export_oas,
             "json": export_json, "safetensors": export_safetensors, "html": export_html}  # fmt: skip


def export(run: FinishedRun, formats: list[str], out: str | Path | None = None) -> dict[str, list[str]]:
    """Write the requested formats; returns {format: [paths]}. ``out`` defaults to RUN/export."""
    unknown = [name for name in formats if name not in FORMATS]
    if unknown:
        raise OpticsInputError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}.")
    folder = Path(out) if out is not None else run.folder / "export"
    folder.mkdir(parents=True, exist_ok=True)
    return {name: [str(p) for p in EXPORTERS[name](run, folder)] for name in formats}
