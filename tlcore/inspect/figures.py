"""Plotly figures of the Inside-the-CNN page (no streamlit)."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots


def _tile(images: np.ndarray, cols: int, pad: int = 1, fill: float = 1.0) -> np.ndarray:
    """[N, h, w(, 3)] -> one mosaic, `cols` wide, with a white gutter."""
    n, h, w = images.shape[:3]
    rows = math.ceil(n / cols)
    shape = (rows * (h + pad) - pad, cols * (w + pad) - pad) + images.shape[3:]
    out = np.full(shape, fill, dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = images[i]
    return out


def filter_grid(kernels: np.ndarray, title: str) -> go.Figure:
    """First-layer kernels [C, k, k, 3] in [0, 1] as one RGB mosaic."""
    k = kernels.shape[1]
    big = np.kron(kernels, np.ones((1, 6, 6, 1))) if k < 8 else kernels   # tiny 3x3 kernels, drawn larger
    cols = int(math.ceil(math.sqrt(len(kernels))))
    mosaic = (_tile(big, cols) * 255).astype(np.uint8)
    fig = go.Figure(go.Image(z=mosaic, hoverinfo="skip"))
    fig.update_layout(title=title, height=360, margin={"l": 0, "r": 0, "t": 40, "b": 0})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def filter_change_bars(change: np.ndarray) -> go.Figure:
    fig = go.Figure(go.Bar(x=list(range(len(change))), y=change, hovertemplate="filter %{x}: %{y:.3f}<extra></extra>"))
    fig.update_layout(title="How far fine-tuning moved each first-layer filter (relative to its pretrained size)",
                      xaxis_title="filter", yaxis_title="relative change", height=280, margin={"t": 40})
    return fig


def activation_grid(groups: list, per_row: int = 8) -> go.Figure:
    """One row per layer group: its strongest channels' maps, each scaled to [0, 1]."""
    n = len(groups)
    k = max((g.maps.shape[0] for g in groups), default=1)
    fig = make_subplots(rows=n, cols=k, row_titles=[f"{g.group} {g.shape[1]}x{g.shape[2]}" for g in groups],
                        horizontal_spacing=0.01, vertical_spacing=0.02)
    for r, g in enumerate(groups, start=1):
        for c in range(g.maps.shape[0]):
            fig.add_trace(go.Heatmap(z=np.flipud(g.maps[c].numpy()), colorscale="Viridis", showscale=False,
                                     hovertemplate=f"{g.group} channel {g.channels[c]}<extra></extra>"), r, c + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title="Strongest channels of each layer group (bottom: input side)", height=110 * n + 60,
                      margin={"l": 0, "r": 90, "t": 40, "b": 0})
    return fig


def codes_map(xy: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], title: str) -> go.Figure:
    fig = go.Figure()
    for c, name in enumerate(classes):
        m = labels == c
        if not m.any():
            continue
        idx = np.nonzero(m)[0]
        fig.add_trace(go.Scattergl(x=xy[m, 0], y=xy[m, 1], mode="markers", name=str(name), customdata=idx,
                                   marker={"size": 6, "opacity": 0.8},
                                   hovertemplate=f"{name} · image %{{customdata}}<extra></extra>"))
    fig.update_layout(title=title, height=420, margin={"t": 40}, legend={"itemsizing": "constant"})
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def jet(v: np.ndarray) -> np.ndarray:
    """The classic blue-cyan-yellow-red heat colours for values in [0, 1] -> [..., 3] in [0, 1]."""
    v = np.clip(v, 0, 1)[..., None]
    return np.clip(np.concatenate([1.5 - np.abs(4 * v - 3), 1.5 - np.abs(4 * v - 2), 1.5 - np.abs(4 * v - 1)], -1), 0, 1)


def cam_overlay(image: np.ndarray, cam: np.ndarray, title: str) -> go.Figure:
    """uint8 [H, W, 3] image with the Grad-CAM heat map [H, W] in [0, 1] blended over it."""
    heat = jet(cam)
    blend = (0.55 * image.astype(np.float32) / 255 + 0.45 * heat)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("image", "Grad-CAM"), horizontal_spacing=0.02)
    fig.add_trace(go.Image(z=image, hoverinfo="skip"), 1, 1)
    fig.add_trace(go.Image(z=(blend.clip(0, 1) * 255).astype(np.uint8), hoverinfo="skip"), 1, 2)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(title=title, height=340, margin={"l": 0, "r": 0, "t": 60, "b": 0})
    return fig
