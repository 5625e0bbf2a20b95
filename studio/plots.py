"""Plotly figures with physical axes. Pure functions: data in (SI units), figure out.

Axis units are converted here, at the UI edge: layouts in mm, focal-plane profiles in µm,
spatial frequencies in cycles/mm.
"""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from onn_core.design import Design
from onn_core.units import MM, NM, UM

from .preview import KernelPreview, LensPreview
from .run_plots import kernels_figure

SIGN_COLOURS = {1: "#2b6cb0", -1: "#c05621", 0: "#4a5568"}
UNUSED_COLOUR = "#cbd5e0"


def layout_figure(design: Design) -> go.Figure:
    """The metasurface with every sub-optic drawn to scale (mm), coloured by K⁺/K⁻."""
    figure = go.Figure()
    half_w, half_h = design.metasurface_width / 2 / MM, design.metasurface_height / 2 / MM
    # Shapes go in as one list: Plotly validates every add_shape call, which dominated this
    # figure's cost (and grows with the number of sub-optics).
    shapes = [{"type": "rect", "x0": -half_w, "x1": half_w, "y0": -half_h, "y1": half_h, "layer": "below",
               "line": {"color": "#1a202c", "width": 2}, "fillcolor": "rgba(226,232,240,0.35)"}]  # fmt: skip
    half_k = design.kernel_size / 2 / MM
    labels_x, labels_y, labels = [], [], []
    for optic in design.sub_optics():
        cx, cy = optic.centre_x / MM, optic.centre_y / MM
        colour = UNUSED_COLOUR if optic.kernel is None else SIGN_COLOURS[optic.sign]
        shapes.append({"type": "rect", "x0": cx - half_k, "x1": cx + half_k, "y0": cy - half_k, "y1": cy + half_k,
                       "line": {"color": colour, "width": 1}, "fillcolor": colour, "opacity": 0.75,
                       "layer": "below"})  # fmt: skip
        labels_x.append(cx)
        labels_y.append(cy)
        if optic.kernel is None:
            labels.append("unused")
        else:
            suffix = {1: "⁺", -1: "⁻", 0: ""}[optic.sign]
            labels.append(f"K{optic.kernel}{suffix}")
    figure.update_layout(shapes=shapes)
    legend = [("K⁺ sub-optic", SIGN_COLOURS[1]), ("K⁻ sub-optic", SIGN_COLOURS[-1])]
    if not design.signed_kernels:
        legend = [("kernel sub-optic", SIGN_COLOURS[0])]
    for name, colour in (*legend, ("unused", UNUSED_COLOUR)):
        marker = {"symbol": "square", "size": 12, "color": colour}
        figure.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name, marker=marker))
    figure.add_trace(
        go.Scatter(
            x=labels_x,
            y=labels_y,
            text=labels,
            mode="text",
            textfont={"color": "white", "size": 12},
            hoverinfo="text",
            showlegend=False,
        )
    )
    pad = 0.05 * max(half_w, half_h)
    figure.update_xaxes(title="x (mm)", range=[-half_w - pad, half_w + pad], zeroline=False)
    figure.update_yaxes(
        title="y (mm)", range=[-half_h - pad, half_h + pad], zeroline=False, scaleanchor="x", scaleratio=1
    )
    figure.update_layout(
        title=f"{design.n_rows} × {design.n_cols} sub-optics of {design.kernel_size / MM:.3g} mm "
        f"→ {design.kernel_count} {'signed ' if design.signed_kernels else ''}kernels",
        height=460,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return figure


def psf_figure(preview: LensPreview) -> go.Figure:
    """Simulated lens PSF (x profile, µm) over the sinc² closed form, with sensor pixels."""
    figure = go.Figure()
    pixel_peak = preview.pixel_psf.max()
    figure.add_trace(
        go.Bar(
            x=preview.pixel_x / UM,
            y=preview.pixel_psf / pixel_peak,
            name="on sensor pixels",
            marker_color="rgba(160,174,192,0.55)",
            width=(preview.pixel_x[1] - preview.pixel_x[0]) / UM,
        )
    )
    figure.add_trace(go.Scatter(x=preview.x / UM, y=preview.psf, name="simulated", line={"color": "#2b6cb0"}))
    figure.add_trace(
        go.Scatter(
            x=preview.x / UM,
            y=preview.psf_reference,
            name="sinc² (diffraction limit)",
            line={"color": "#1a202c", "dash": "dot"},
        )
    )
    span = preview.x.max() / UM
    figure.update_xaxes(title="x on the sensor (µm)", range=[-span, span])
    figure.update_yaxes(title="intensity (peak = 1)", range=[0, 1.05])
    figure.update_layout(
        title=f"Lens PSF of one sub-optic at {preview.wavelength * 1e9:.0f} nm",
        height=380,
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return figure


def mtf_figure(preview: LensPreview) -> go.Figure:
    """Simulated MTF (cycles/mm) over the diffraction limit, with sensor and tap Nyquist marks."""
    per_mm = MM  # cycles/m × 1e-3 = cycles/mm
    figure = go.Figure()
    figure.add_trace(
        go.Scatter(x=preview.frequency * per_mm, y=preview.mtf, name="simulated", line={"color": "#2b6cb0"})
    )
    figure.add_trace(
        go.Scatter(
            x=preview.frequency * per_mm,
            y=preview.mtf_reference,
            name="diffraction limit 1 − ν/ν<sub>c</sub>",
            line={"color": "#1a202c", "dash": "dot"},
        )
    )
    # Labels sit on different sides of their lines: the two Nyquist marks are often close.
    for value, label, colour, side in (
        (preview.cutoff, "cutoff ν<sub>c</sub>", "#1a202c", "top left"),
        (preview.sensor_nyquist, "sensor Nyquist", "#c05621", "top right"),
        (preview.tap_nyquist, "kernel-tap Nyquist", "#2f855a", "bottom left"),
    ):
        if value <= preview.frequency.max():
            figure.add_vline(
                x=value * per_mm,
                line={"color": colour, "dash": "dash", "width": 1},
                annotation_text=label,
                annotation_position=side,
                annotation_font={"color": colour, "size": 11},
            )
    # An MTF is even: the positive frequencies say it all, from 0 to just past the cutoff.
    figure.update_xaxes(title="spatial frequency (cycles/mm)", range=[0, 1.05 * preview.frequency.max() * per_mm])
    figure.update_yaxes(title="MTF", range=[0, 1.05])
    figure.update_layout(
        title="MTF along x",
        height=380,
        legend={"orientation": "h", "y": -0.25},
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return figure


CURVE_AXES = {  # curve → (axis title, factor from SI to the axis unit, log axis)
    "kernel_count": ("kernels that fit", 1.0, True),
    "kernel_size": ("kernel aperture k (µm)", 1 / UM, True),
    "meta_atom_pitch": ("meta-atom pitch (nm)", 1e9, False),
}


def estimate_curve_figure(rows: list[dict], curve: str, current: float, metric: str) -> go.Figure:
    """Estimated accuracy (%) along one design axis with its band; the current design marked."""
    title, factor, log_axis = CURVE_AXES[curve]
    x = [r["value"] * factor for r in rows]
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=x + x[::-1], y=[100 * r["high"] for r in rows] + [100 * r["low"] for r in rows][::-1],
                                fill="toself", fillcolor="rgba(43,108,176,0.15)", line={"width": 0},
                                name="uncertainty", hoverinfo="skip"))  # fmt: skip
    inside = [r for r in rows if not r["extrapolation"]]
    figure.add_trace(go.Scatter(x=x, y=[100 * r["accuracy"] for r in rows], mode="lines", name="estimate",
                                line={"color": SIGN_COLOURS[1]}))  # fmt: skip
    figure.add_trace(go.Scatter(x=[r["value"] * factor for r in inside], y=[100 * r["accuracy"] for r in inside],
                                mode="markers", name="within the swept designs",
                                marker={"color": SIGN_COLOURS[1], "size": 6}))  # fmt: skip
    figure.add_vline(x=current * factor, line={"color": SIGN_COLOURS[-1], "dash": "dash"},
                     annotation_text="this design")  # fmt: skip
    span = [min([*x, current * factor]), max([*x, current * factor])] if x else [current * factor] * 2
    # An explicit range: a vertical line on a log axis otherwise stretches autorange to 1e8.
    x_range = [math.log10(span[0]) - 0.05, math.log10(span[1]) + 0.05] if log_axis else None
    figure.update_layout(
        xaxis={"title": {"text": title}, "type": "log" if log_axis else "linear", "range": x_range},
        yaxis={"title": {"text": f"estimated {metric} (%)"}},
        margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=340, legend={"orientation": "h"},
    )  # fmt: skip
    return figure


def search_front_figure(front: list[dict], metric: str, current: dict | None = None) -> go.Figure:
    """A design search's front: accuracy (%) against metasurface area (mm², log), the surrogate's
    band as error bars, exact checks beside it, the sidebar's design (``current``: a front-style
    row) marked."""
    def hover(row: dict) -> str:
        design = row["design"]
        return (f"{row['kernels']} kernels, {design['kernel_taps']} taps<br>k {design['kernel_size'] * 1e6:.0f} µm, "
                f"d {design['kernel_spacing'] * 1e6:.0f} µm, z {design['sensor_distance'] * 1e3:.2f} mm<br>"
                f"{design['metasurface_height'] * 1e3:.2f} × {design['metasurface_width'] * 1e3:.2f} mm"
                + (f"<br>{row['energy_j'] * 1e6:.3g} µJ / image, {design['sensor_bit_depth']} bits"
                   if "energy_j" in row else "")
                + (f"<br>warnings: {', '.join(row['warnings'])}" if row.get("warnings") else ""))  # fmt: skip

    figure = go.Figure()
    if front:
        figure.add_trace(go.Scatter(
            x=[r["area_mm2"] for r in front], y=[100 * r["accuracy"] for r in front], mode="lines+markers",
            name="front (surrogate)", line={"color": SIGN_COLOURS[1], "shape": "hv"},
            error_y={"type": "data", "symmetric": False, "array": [100 * (r["high"] - r["accuracy"]) for r in front],
                     "arrayminus": [100 * (r["accuracy"] - r["low"]) for r in front], "thickness": 1},
            text=[hover(r) for r in front], hovertemplate="%{x:.3f} mm², %{y:.1f} %<br>%{text}<extra></extra>",
        ))  # fmt: skip
    checked = [r for r in front if "exact_accuracy" in r]
    if checked:
        figure.add_trace(go.Scatter(
            x=[r["area_mm2"] for r in checked], y=[100 * r["exact_accuracy"] for r in checked], mode="markers",
            name="exact NTK regression", marker={"color": SIGN_COLOURS[-1], "symbol": "diamond", "size": 9},
            error_y={"type": "data", "symmetric": False,
                     "array": [100 * (r["exact_high"] - r["exact_accuracy"]) for r in checked],
                     "arrayminus": [100 * (r["exact_accuracy"] - r["exact_low"]) for r in checked], "thickness": 1},
            text=[hover(r) for r in checked], hovertemplate="%{x:.3f} mm², exact %{y:.1f} %<br>%{text}<extra></extra>",
        ))  # fmt: skip
    if current is not None:
        figure.add_trace(go.Scatter(
            x=[current["area_mm2"]], y=[100 * current["accuracy"]], mode="markers", name="the sidebar's design",
            marker={"color": "black", "symbol": "x", "size": 11}, text=[hover(current)],
            hovertemplate="%{x:.3f} mm², %{y:.1f} %<br>%{text}<extra></extra>",
        ))  # fmt: skip
    figure.update_layout(
        xaxis={"title": {"text": "metasurface area (mm²)"}, "type": "log"},
        yaxis={"title": {"text": f"estimated {metric} after training (%)"}},
        margin={"l": 10, "r": 10, "t": 30, "b": 10}, height=420, legend={"orientation": "h"},
    )  # fmt: skip
    return figure


def kernel_realisation_figure(preview: KernelPreview) -> go.Figure:
    """Target and realised kernel side by side on the tap grid, one power scale, a µm scale bar."""
    title = (f"target vs realised at {preview.wavelength / NM:.0f} nm: correlation {preview.correlation:.3f}, "
             f"{100 * preview.efficiency:.0f} % of the light on the kernel")  # fmt: skip
    figure = kernels_figure(np.stack([preview.target, preview.realised]), preview.tap_pitch, title=title,
                            signed=False, names=["target", "realised"])  # fmt: skip
    figure.update_layout(height=280)
    return figure


def metasurface_map_figure(preview: KernelPreview, which: str) -> go.Figure:
    """The sub-optic's phase (rad) or meta-atom parameter (nm) map over the preview's crop, µm axes."""
    values, name = (preview.phase, "phase") if which == "phase" else (preview.radius / NM, preview.parameter)
    side = values.shape[-1]
    x = (np.arange(side) - side // 2) * preview.phase_pixel / UM
    scale = {"colorscale": "Twilight", "zmin": -np.pi, "zmax": np.pi} if which == "phase" else {"colorscale": "Viridis"}
    unit = "rad" if which == "phase" else "nm"
    hover = "x %{x:.1f} µm, y %{y:.1f} µm: %{z:.3g} " + unit + "<extra></extra>"
    figure = go.Figure(go.Heatmap(z=values, x=x, y=x, colorbar={"title": {"text": unit}}, hovertemplate=hover,
                                  **scale))  # fmt: skip
    figure.update_layout(
        title=f"{name} map (central {side}² of {preview.samples}² pixels of {preview.phase_pixel / NM:.0f} nm)",
        height=380, margin={"l": 40, "r": 10, "t": 50, "b": 40},
        xaxis={"title": {"text": "x (µm)"}, "constrain": "domain"},
        yaxis={"title": {"text": "y (µm)"}, "scaleanchor": "x", "constrain": "domain"},
    )  # fmt: skip
    return figure
