"""Plotly figures of a trained run and its fabrication: pure functions, data in (SI units), figure out.

Kernels and feature maps are drawn on physical axes (µm on the sensor), with equal aspect and a
colour bar; figures are small (a few thousand cells) so the browser draws them quickly.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .units import UM

DIVERGING = "RdBu_r"


def kernels_figure(kernels: np.ndarray, tap_pitch: float, *, title: str = "signed kernels", columns: int = 8,
                   signed: bool = True) -> go.Figure:  # fmt: skip
    """A grid of kernels (K, t, t) on the sensor's tap grid (µm axes), one shared colour scale."""
    count, taps = kernels.shape[0], kernels.shape[-1]
    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    limit = float(np.abs(kernels).max()) or 1.0
    coordinates = (np.arange(taps) - taps // 2) * tap_pitch / UM
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[f"K{k}" for k in range(count)],
                           horizontal_spacing=0.02, vertical_spacing=0.08)  # fmt: skip
    for index in range(count):
        figure.add_trace(
            go.Heatmap(z=kernels[index], x=coordinates, y=coordinates, colorscale=DIVERGING if signed else "Viridis",
                       zmin=-limit if signed else 0.0, zmax=limit, showscale=index == 0,
                       colorbar={"title": {"text": "weight" if signed else "power"}, "thickness": 10}),
            row=index // columns + 1, col=index % columns + 1,
        )  # fmt: skip
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, scaleanchor="x", constrain="domain")
    figure.update_xaxes(showticklabels=True, title_text="µm", row=rows, col=1)
    figure.update_layout(title={"text": f"{title} ({taps}×{taps} taps of {tap_pitch / UM:.2f} µm)"},
                         height=140 * rows + 80, margin={"l": 10, "r": 10, "t": 60, "b": 10})  # fmt: skip
    return figure


def feature_maps_figure(image: np.ndarray, maps: np.ndarray, tap_pitch: float, *, columns: int = 8) -> go.Figure:
    """The input image and the optical feature maps it produces (µm on the sensor)."""
    count = maps.shape[0]
    columns = max(1, min(columns, count + 1))
    rows = -(-(count + 1) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=["input", *[f"K{k}" for k in range(count)]],
                           horizontal_spacing=0.02, vertical_spacing=0.08)  # fmt: skip
    height, width = image.shape[-2:]
    x = np.arange(width) * tap_pitch / UM
    y = np.arange(height) * tap_pitch / UM
    figure.add_trace(go.Heatmap(z=image, x=x, y=y, colorscale="Gray", showscale=False), row=1, col=1)
    limit = float(np.abs(maps).max()) or 1.0
    for index in range(count):
        position = index + 1
        figure.add_trace(
            go.Heatmap(z=maps[index], x=x, y=y, colorscale=DIVERGING, zmin=-limit, zmax=limit,
                       showscale=index == 0, colorbar={"title": {"text": "signal"}, "thickness": 10}),
            row=position // columns + 1, col=position % columns + 1,
        )  # fmt: skip
    figure.update_xaxes(showticklabels=False)
    figure.update_yaxes(showticklabels=False, autorange="reversed", scaleanchor="x", constrain="domain")
    figure.update_layout(height=130 * rows + 60, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                         title={"text": f"optical feature maps (one tap = {tap_pitch / UM:.2f} µm)"})  # fmt: skip
    return figure


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
    figure.update_yaxes(title_text=f"{metric} (%)", secondary_y=True)
    return figure


def overlay_figure(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, tap_pitch: float) -> go.Figure:
    """Segmentation: the image, the true mask and the predicted mask side by side (µm axes)."""
    figure = make_subplots(rows=1, cols=3, subplot_titles=["input", "true mask", "predicted mask"],
                           horizontal_spacing=0.03)  # fmt: skip
    height, width = image.shape[-2:]
    x, y = np.arange(width) * tap_pitch / UM, np.arange(height) * tap_pitch / UM
    for column, (values, scale) in enumerate(((image, "Gray"), (truth, "Blues"), (predicted, "Oranges")), start=1):
        figure.add_trace(go.Heatmap(z=values, x=x, y=y, colorscale=scale, showscale=False), row=1, col=column)
    figure.update_yaxes(autorange="reversed", scaleanchor="x", constrain="domain", showticklabels=False)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


def yield_figure(scores: list[float], trained: float, designed: float, metric: str) -> go.Figure:
    """Histogram of fabricated scores (%) with the simulated and as-designed scores marked."""
    figure = go.Figure(go.Histogram(x=[100 * s for s in scores], nbinsx=max(5, len(scores) // 2), name="draws",
                                    marker={"color": "#2b6cb0"}))  # fmt: skip
    figure.add_vline(x=100 * trained, line={"color": "#2f855a", "dash": "dash"}, annotation_text="trained")
    if abs(designed - trained) > 1e-9:
        figure.add_vline(x=100 * designed, line={"color": "#c05621", "dash": "dot"}, annotation_text="as designed")
    figure.update_layout(xaxis={"title": {"text": f"{metric} through fabricated optics (%)"}},
                         yaxis={"title": {"text": "draws"}}, height=300,
                         margin={"l": 10, "r": 10, "t": 30, "b": 10})  # fmt: skip
    return figure


def error_curve_figure(points: list[dict], metric: str) -> go.Figure:
    """Score (%) vs error-model scale, mean ± std over draws."""
    x = [p["factor"] for p in points]
    figure = go.Figure(go.Scatter(x=x, y=[100 * p["mean"] for p in points], mode="lines+markers",
                                  error_y={"type": "data", "array": [100 * p["std"] for p in points]}))  # fmt: skip
    figure.update_layout(xaxis={"title": {"text": "error magnitude (× the error model)"}},
                         yaxis={"title": {"text": f"{metric} (%)"}}, height=300,
                         margin={"l": 10, "r": 10, "t": 30, "b": 10})  # fmt: skip
    return figure
