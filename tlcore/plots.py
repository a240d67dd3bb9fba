"""Plotly figures from run data: pure functions (no I/O, no Streamlit, no global state)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .metrics import Report, arithmetic_mean, f1_score
from .train.events import EpochEnded, Step, Unfrozen

STATE_COLOURS = {"frozen": "#9aa5b1", "trained": "#2f80ed", "unfrozen later": "#f2994a", "not used": "#e0e0e0",
                 "head": "#27ae60"}
PALETTE = ("#2f80ed", "#eb5757", "#27ae60", "#f2994a", "#9b51e0", "#56ccf2", "#6fcf97", "#bb6bd9")


def _layout(fig: go.Figure, title: str, x: str, y: str, **kw) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, margin=dict(l=40, r=10, t=40, b=40),
                      legend=dict(orientation="h", y=-0.2), **kw)
    return fig


def _unfreeze_lines(fig: go.Figure, unfrozen: Sequence[Unfrozen], offset: float = 0.0) -> None:
    for u in unfrozen:
        # Vertical labels: consecutive epochs sit close together and horizontal text would overlap.
        fig.add_vline(x=u.epoch + offset, line_dash="dash", line_color="#f2994a",
                      annotation=dict(text=f"unfreeze {u.group}", textangle=-90, font=dict(size=10, color="#c0661a")),
                      annotation_position="top left")


RunCurves = tuple[str, Sequence[EpochEnded], Sequence[Step], Sequence[Unfrozen]]


def loss_curves(runs: Sequence[RunCurves]) -> go.Figure:
    """Train loss per step (light) and train/validation loss per epoch, x in epochs; unfreezing marked."""
    fig = go.Figure()
    for i, (name, epochs, steps, unfrozen) in enumerate(runs):
        c = PALETTE[i % len(PALETTE)]
        if steps:
            xs = [s.step / s.steps_per_epoch for s in steps]
            fig.add_trace(go.Scatter(x=xs, y=[s.loss for s in steps], mode="lines", name=f"{name}: step loss",
                                     line=dict(color=c, width=1), opacity=0.35))
        xs = [e.epoch + 1 for e in epochs]  # an epoch's averages belong at its end
        fig.add_trace(go.Scatter(x=xs, y=[e.train_loss for e in epochs], mode="lines+markers",
                                 name=f"{name}: train", line=dict(color=c)))
        fig.add_trace(go.Scatter(x=xs, y=[e.val_loss for e in epochs], mode="lines+markers",
                                 name=f"{name}: validation", line=dict(color=c, dash="dot")))
        if i == 0:
            _unfreeze_lines(fig, unfrozen)
    return _layout(fig, "Loss", "epoch", "cross-entropy loss")


def accuracy_curves(runs: Sequence[RunCurves]) -> go.Figure:
    fig = go.Figure()
    for i, (name, epochs, _steps, unfrozen) in enumerate(runs):
        fig.add_trace(go.Scatter(x=[e.epoch + 1 for e in epochs], y=[e.val_acc for e in epochs], mode="lines+markers",
                                 name=name, line=dict(color=PALETTE[i % len(PALETTE)])))
        if i == 0:
            _unfreeze_lines(fig, unfrozen)
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, "Validation accuracy", "epoch", "accuracy")


def lr_curves(lrs: np.ndarray, group_names: Sequence[str], x: Sequence[float] | None = None,
              title: str = "Learning rate per layer group") -> go.Figure:
    """One line per group (log scale) against epochs; zeros (frozen) are left blank so a group
    appears when it unfreezes. `x` defaults to 0..len-1."""
    lrs = np.asarray(lrs, dtype=float)
    x = np.arange(len(lrs)) if x is None else np.asarray(x, dtype=float)
    fig = go.Figure()
    for g, name in enumerate(group_names):
        y = np.where(lrs[:, g] > 0, lrs[:, g], np.nan)
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines", name=name, line=dict(color=PALETTE[g % len(PALETTE)])))
    fig.update_yaxes(type="log")
    return _layout(fig, title, "epoch", "learning rate")


def confusion_heatmap(confusion, classes: Sequence[str], normalise: bool = False) -> go.Figure:
    cm = np.asarray(confusion, dtype=float)
    z = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm
    text = [[f"{v:.2f}" if normalise else f"{int(v)}" for v in row] for row in z]
    labels = [str(c) for c in classes]
    custom = [[[t, p] for p in range(len(labels))] for t in range(len(labels))]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues",
                               customdata=custom, hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _layout(fig, "Confusion matrix" + (" (each row sums to 1)" if normalise else " (counts)"),
                   "predicted class", "true class")


def class_counts_bar(counts: Sequence[int], classes: Sequence[str]) -> go.Figure:
    fig = go.Figure(go.Bar(x=[str(c) for c in classes], y=list(counts), marker_color=PALETTE[0]))
    fig.update_xaxes(type="category")
    return _layout(fig, "Training images per class", "class", "images")


def per_class_bars(rep: Report) -> go.Figure:
    fig = go.Figure()
    for i, (name, values) in enumerate((("precision", rep.precision), ("recall", rep.recall), ("F1", rep.f1))):
        fig.add_trace(go.Bar(x=list(rep.classes), y=list(values), name=name, marker_color=PALETTE[i]))
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, "Per-class precision, recall and F1", "class", "score", barmode="group")


def f1_vs_mean(rep: Report) -> go.Figure:
    """F1 beside the arithmetic mean of P and R per class; the gap is shaded (bigger = more lopsided)."""
    classes = list(rep.classes)
    fig = go.Figure()
    fig.add_trace(go.Bar(x=classes, y=list(rep.pr_mean), name="arithmetic mean (P+R)/2", marker_color="#bdbdbd"))
    fig.add_trace(go.Bar(x=classes, y=list(rep.f1), name="F1 (harmonic mean)", marker_color=PALETTE[0]))
    gap = np.asarray(rep.pr_mean) - np.asarray(rep.f1)
    fig.add_trace(go.Scatter(x=classes, y=list(gap), name="gap", mode="markers+text", text=[f"{g:.2f}" for g in gap],
                             textposition="top center", marker=dict(color="#eb5757", size=9)))
    fig.update_xaxes(type="category")
    fig.update_yaxes(range=[0, 1.05])
    return _layout(fig, "F1 vs the arithmetic mean of precision and recall", "class", "score", barmode="group")


def pr_heatmap(n: int = 101) -> go.Figure:
    """F1 and the arithmetic mean over the whole precision x recall square, side by side."""
    p = np.linspace(0, 1, n)
    P, R = np.meshgrid(p, p, indexing="xy")
    mean = (P + R) / 2
    f1 = np.divide(2 * P * R, P + R, out=np.zeros_like(P), where=(P + R) > 0)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("arithmetic mean (P+R)/2", "F1 = 2PR/(P+R)"))
    for col, z in ((1, mean), (2, f1)):
        fig.add_trace(go.Heatmap(x=p, y=p, z=z, zmin=0, zmax=1, colorscale="Viridis", showscale=col == 2,
                                 hovertemplate="P %{x:.2f}<br>R %{y:.2f}<br>%{z:.3f}<extra></extra>"), row=1, col=col)
        fig.update_xaxes(title_text="precision", row=1, col=col)
        fig.update_yaxes(title_text="recall", row=1, col=col)
    fig.update_layout(margin=dict(l=40, r=10, t=40, b=40))
    return fig


def compare_bars(rows: Sequence[dict], metric: str) -> go.Figure:
    names = [r["run"] for r in rows]
    fig = go.Figure(go.Bar(x=names, y=[r.get(metric) for r in rows],
                           marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))]))
    return _layout(fig, metric.replace("_", " "), "run", metric.replace("_", " "))


def layer_stack(groups: Sequence[str], states: Sequence[str], head: str = "new head") -> go.Figure:
    """Layer groups bottom -> top as coloured boxes (frozen / trained / unfrozen later), the head on top."""
    names = [*groups, head]
    kinds = [*states, "head"]
    fig = go.Figure()
    for i, (name, kind) in enumerate(zip(names, kinds)):
        fig.add_shape(type="rect", x0=0, x1=1, y0=i, y1=i + 0.85, fillcolor=STATE_COLOURS[kind],
                      line=dict(color="white"))
        fig.add_annotation(x=0.5, y=i + 0.42, text=f"<b>{name}</b> · {kind}", showarrow=False,
                           font=dict(color="white" if kind != "not used" else "#333"))
    # One invisible marker per state so the legend explains the colours.
    for kind in dict.fromkeys(kinds):
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=kind,
                                 marker=dict(size=12, color=STATE_COLOURS[kind], symbol="square")))
    fig.update_xaxes(visible=False, range=[0, 1])
    fig.update_yaxes(visible=False, range=[-0.1, len(names)])
    fig.update_layout(height=60 + 48 * len(names), margin=dict(l=10, r=10, t=30, b=10), title="Layer groups (input at the bottom)",
                      legend=dict(orientation="h", y=-0.02))
    return fig


def image_grid(images, labels: Sequence[int], classes: Sequence[str], cols: int = 8,
               captions: Sequence[str] | None = None) -> go.Figure:
    """uint8 [N,3,H,W] images in a grid, each titled with its class (or a caption)."""
    imgs = np.asarray(images)
    n = len(imgs)
    rows = max(1, -(-n // cols))
    titles = list(captions) if captions is not None else [str(classes[int(y)]) for y in labels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles + [""] * (rows * cols - n),
                        horizontal_spacing=0.01, vertical_spacing=0.06)
    for i in range(n):
        fig.add_trace(go.Image(z=imgs[i].transpose(1, 2, 0)), row=i // cols + 1, col=i % cols + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_annotations(font_size=10)
    fig.update_layout(height=110 * rows + 30, margin=dict(l=5, r=5, t=25, b=5))
    return fig


def f1_and_mean(p: float, r: float) -> tuple[float, float]:
    """(F1, arithmetic mean) for the Metrics lab's sliders."""
    return f1_score(p, r), arithmetic_mean(p, r)
