"""Plotly figures of a trained run and its fabrication: pure functions, data in (SI units), figure out.

Kernels and feature maps are drawn on physical axes (µm on the sensor), with equal aspect and a
colour bar; figures are small (a few thousand cells) so the browser draws them quickly.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from onn_core.units import UM

DIVERGING = "RdBu_r"


def nice_length(limit: float) -> float:
    """The largest 1, 2 or 5 × 10ⁿ not above ``limit`` (a scale bar's length, same unit)."""
    if limit <= 0:
        raise ValueError("a scale bar needs a positive length")
    decade = 10.0 ** np.floor(np.log10(limit))
    return float(max(step * decade for step in (1.0, 2.0, 5.0) if step * decade <= limit * (1 + 1e-12)))


def tile_origins(shape: tuple[int, int], count: int, columns: int, gap: int) -> list[tuple[int, int]]:
    """(row, column) of each tile's top-left cell in a mosaic of ``count`` tiles of ``shape``."""
    height, width = shape
    return [((k // columns) * (height + gap), (k % columns) * (width + gap)) for k in range(count)]


class _ImageGrid:
    """Images of one size laid out as tiles of ONE Plotly axes, on a common physical pitch.

    One heatmap per colour scale instead of one subplot per image: a browser draws a page of
    these in a fraction of the time 8–24 subplots take (bench/app_latency.py), and equal aspect,
    tile titles, a scale bar and one colour bar per scale stay. Axes are in µm from the mosaic's
    corner; the hover names the tile and the position within it.
    """

    def __init__(self, shape: tuple[int, int], count: int, pitch: float, columns: int, gap: int = 1):
        self.shape, self.count, self.pitch, self.gap = shape, count, pitch, gap
        self.columns = max(1, min(columns, count))
        self.rows = -(-count // self.columns)
        self.origins = tile_origins(shape, count, self.columns, gap)
        self.height = self.rows * (shape[0] + gap) - gap
        self.width = self.columns * (shape[1] + gap) - gap
        self.traces: list[go.Heatmap] = []

    def add(self, tiles: dict[int, np.ndarray], names: list[str], *, colorscale: str, zmin: float, zmax: float,
            colorbar: str | None, centred: bool) -> None:  # fmt: skip
        """Draw ``tiles`` (tile index → image) in one heatmap; other tiles stay transparent."""
        z = np.full((self.height, self.width), np.nan)
        where = np.full((self.height, self.width, 3), np.nan)
        rows, cols = self.shape
        offset = np.array([rows // 2, cols // 2]) if centred else np.zeros(2, dtype=int)
        local_y, local_x = np.meshgrid((np.arange(rows) - offset[0]) * self.pitch / UM,
                                       (np.arange(cols) - offset[1]) * self.pitch / UM, indexing="ij")  # fmt: skip
        for index, image in tiles.items():
            top, left = self.origins[index]
            z[top : top + rows, left : left + cols] = image
            where[top : top + rows, left : left + cols] = np.stack([np.full_like(local_x, index), local_x, local_y], -1)
        labels = np.array(names, dtype=object)
        self.traces.append(go.Heatmap(
            z=z, x=np.arange(self.width) * self.pitch / UM, y=np.arange(self.height) * self.pitch / UM,
            colorscale=colorscale, zmin=zmin, zmax=zmax, showscale=colorbar is not None, hoverongaps=False,
            colorbar={"title": {"text": colorbar or ""}, "thickness": 10, "len": 0.9},
            customdata=where, text=labels[np.nan_to_num(where[..., 0]).astype(int)],
            hovertemplate="%{text}: x %{customdata[1]:.1f} µm, y %{customdata[2]:.1f} µm<br>%{z:.4g}<extra></extra>",
        ))  # fmt: skip

    def finish(self, names: list[str], title: str, pixels_per_tile: int = 120) -> go.Figure:
        """Tile titles, a scale bar under the first tile, equal aspect, and a height that fits the rows."""
        # Built as one layout, not annotation by annotation: Plotly validates each call (a tenth of a second here).
        step = self.pitch / UM
        label = {"showarrow": False, "font": {"size": 11}, "xref": "x", "yref": "y"}
        annotations = [
            {**label, "x": (left + self.shape[1] / 2 - 0.5) * step, "y": (top - 0.6) * step, "text": name,
             "yanchor": "bottom"} for name, (top, left) in zip(names, self.origins, strict=True)
        ]  # fmt: skip
        bar = nice_length(0.8 * self.shape[1] * step)
        below = (self.height + 0.6) * step
        annotations.append({**label, "x": -0.5 * step + bar / 2, "y": below, "text": f"{bar:g} µm", "yanchor": "top"})
        scale_bar = {"type": "line", "x0": -0.5 * step, "x1": -0.5 * step + bar, "y0": below, "y1": below,
                     "line": {"color": "black", "width": 3}}  # fmt: skip
        hidden = {"showticklabels": False, "showgrid": False, "zeroline": False, "ticks": ""}
        layout = {
            "title": {"text": title}, "height": pixels_per_tile * self.rows + 110, "plot_bgcolor": "white",
            "xaxis": {**hidden, "range": [-1.0 * step, (self.width + 0.5) * step], "constrain": "domain"},
            "yaxis": {**hidden, "range": [(self.height + 2.5) * step, -2.0 * step], "scaleanchor": "x",
                      "constrain": "domain"},
            "margin": {"l": 10, "r": 10, "t": 50, "b": 10}, "annotations": annotations, "shapes": [scale_bar],
        }  # fmt: skip
        return go.Figure(data=self.traces, layout=layout)


def kernels_figure(kernels: np.ndarray, tap_pitch: float, *, title: str = "signed kernels", columns: int = 8,
                   signed: bool = True, names: list[str] | None = None) -> go.Figure:  # fmt: skip
    """Kernels (K, t, t) on the sensor's tap grid, one shared colour scale, a µm scale bar.

    ``tap_pitch`` in metres. Signed kernels use a diverging scale centred on zero; PSFs (powers)
    run from zero.
    """
    count, taps = kernels.shape[0], kernels.shape[-1]
    names = names or [f"K{k}" for k in range(count)]
    limit = float(np.abs(kernels).max()) or 1.0
    grid = _ImageGrid((taps, taps), count, tap_pitch, columns)
    grid.add(dict(enumerate(kernels)), names, colorscale=DIVERGING if signed else "Viridis", zmax=limit,
             zmin=-limit if signed else 0.0, colorbar="weight" if signed else "power", centred=True)  # fmt: skip
    return grid.finish(names, f"{title} ({taps}×{taps} taps of {tap_pitch / UM:.2f} µm)")


def realised_psfs_figure(plus: np.ndarray, minus: np.ndarray | None, tap_pitch: float) -> go.Figure:
    """The realised K⁺ PSFs (K, t, t) over the K⁻ ones (or None), one power scale; ``tap_pitch`` in metres."""
    names = [f"K{k}⁺" for k in range(len(plus))]
    if minus is None:
        return kernels_figure(plus, tap_pitch, title="realised PSFs", signed=False, names=names)
    names += [f"K{k}⁻" for k in range(len(minus))]
    both = np.concatenate([plus, minus])
    return kernels_figure(both, tap_pitch, title="realised K⁺ (top) and K⁻ PSFs", signed=False, names=names,
                          columns=len(plus))  # fmt: skip


def feature_maps_figure(image: np.ndarray, maps: np.ndarray, tap_pitch: float, *, columns: int = 9) -> go.Figure:
    """The input image and the optical feature maps it produces, one tap = ``tap_pitch`` metres."""
    count = maps.shape[0]
    shape = (max(image.shape[-2], maps.shape[-2]), max(image.shape[-1], maps.shape[-1]))
    names = ["input", *[f"K{k}" for k in range(count)]]
    grid = _ImageGrid(shape, count + 1, tap_pitch, columns)
    grid.add({0: _pad(image, shape)}, names, colorscale="Gray", zmin=float(image.min()), zmax=float(image.max()),
             colorbar=None, centred=False)  # fmt: skip
    limit = float(np.abs(maps).max()) or 1.0
    grid.add({k + 1: _pad(m, shape) for k, m in enumerate(maps)}, names, colorscale=DIVERGING, zmin=-limit,
             zmax=limit, colorbar="signal", centred=False)  # fmt: skip
    return grid.finish(names, f"optical feature maps (one tap = {tap_pitch / UM:.2f} µm)")


def _pad(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` in the top-left corner of a NaN canvas of ``shape`` (tiles of one mosaic share a size)."""
    canvas = np.full(shape, np.nan)
    canvas[: image.shape[-2], : image.shape[-1]] = image
    return canvas


def confusion_figure(confusion: list[list[int]], classes: list[str]) -> go.Figure:
    matrix = np.asarray(confusion, dtype=float)
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure = go.Figure(go.Heatmap(z=100 * shares, x=classes, y=classes, colorscale="Blues", zmin=0, zmax=100,
                                  colorbar={"title": {"text": "% of true class"}},
                                  text=matrix.astype(int), texttemplate="%{text}"))  # fmt: skip
    axes = {"xaxis": {"title": {"text": "predicted"}}, "yaxis": {"title": {"text": "true"}, "autorange": "reversed"}}
    figure.update_layout(**axes,
                         height=420, margin={"l": 10, "r": 10, "t": 30, "b": 10})  # fmt: skip
    return figure


def history_figure(history: list[dict], metric: str) -> go.Figure:
    """Training loss and validation metric per epoch."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    epochs = [row["epoch"] for row in history]
    figure.add_trace(go.Scatter(x=epochs, y=[row["train_loss"] for row in history], name="training loss"))
    key = f"val_{metric}"
    scores = [100 * row[key] for row in history if key in row]
    figure.add_trace(go.Scatter(x=epochs, y=scores, name=f"validation {metric}"), secondary_y=True)
    figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10}, legend={"orientation": "h"},
                         xaxis={"title": {"text": "epoch"}})  # fmt: skip
    figure.update_yaxes(title_text="loss", secondary_y=False)
    # One grid (the loss axis'): a second, offset grid made the chart hard to read.
    figure.update_yaxes(title_text=f"{metric} (%)", secondary_y=True, showgrid=False)
    return figure


def overlay_figure(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, tap_pitch: float) -> go.Figure:
    """Segmentation: the image, the true mask and the predicted mask side by side (µm scale bar)."""
    names = ["input", "true mask", "predicted mask"]
    grid = _ImageGrid(image.shape[-2:], 3, tap_pitch, 3)
    for index, (values, scale) in enumerate(((image, "Gray"), (truth, "Blues"), (predicted, "Oranges"))):
        grid.add({index: values}, names, colorscale=scale, zmin=float(values.min()), zmax=float(values.max()),
                 colorbar=None, centred=False)  # fmt: skip
    return grid.finish(names, "segmentation", pixels_per_tile=260)


def yield_figure(scores: list[float], trained: float, designed: float, metric: str) -> go.Figure:
    """Histogram of fabricated scores (%) with the simulated and as-designed scores marked."""
    figure = go.Figure(go.Histogram(x=[100 * s for s in scores], nbinsx=max(5, len(scores) // 2), name="draws",
                                    marker={"color": "#2b6cb0"}))  # fmt: skip
    # The two marks are often close: their labels sit on opposite sides of their lines.
    low_side, high_side = ("top left", "top right") if trained <= designed else ("top right", "top left")
    figure.add_vline(x=100 * trained, line={"color": "#2f855a", "dash": "dash"}, annotation_text="trained",
                     annotation_position=low_side)  # fmt: skip
    if abs(designed - trained) > 1e-9:
        figure.add_vline(x=100 * designed, line={"color": "#c05621", "dash": "dot"}, annotation_text="as designed",
                         annotation_position=high_side)  # fmt: skip
    figure.update_layout(xaxis={"title": {"text": f"{metric} through fabricated optics (%)"}},
                         yaxis={"title": {"text": "draws"}}, height=300,
                         margin={"l": 10, "r": 10, "t": 30, "b": 10})  # fmt: skip
    return figure


def error_curve_figure(points: list[dict], metric: str) -> go.Figure:
    """Score (%) vs error-model scale: every draw as a dot, the mean as a line in its ± std band."""
    x = [p["factor"] for p in points]
    mean = np.array([100 * p["mean"] for p in points])
    std = np.array([100 * p["std"] for p in points])
    draws_x = [p["factor"] for p in points for _ in p.get("scores", [])]
    draws_y = [100 * score for p in points for score in p.get("scores", [])]
    figure = go.Figure([
        go.Scatter(x=x + x[::-1], y=list(mean + std) + list((mean - std)[::-1]), fill="toself", hoverinfo="skip",
                   fillcolor="rgba(43,108,176,0.15)", line={"width": 0}, name="mean ± std"),
        go.Scatter(x=draws_x, y=draws_y, mode="markers", name="draws", hovertemplate="%{y:.1f} %<extra>draw</extra>",
                   marker={"size": 5, "color": "rgba(26,32,44,0.45)"}),
        go.Scatter(x=x, y=mean, mode="lines+markers", name="mean", line={"color": "#2b6cb0"}),
    ])  # fmt: skip
    figure.update_layout(xaxis={"title": {"text": "error magnitude (× the error model)"}},
                         yaxis={"title": {"text": f"{metric} (%)"}}, height=300,
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})  # fmt: skip
    return figure
