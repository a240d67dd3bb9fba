"""Plotly figures from run data: pure functions (no I/O, no Streamlit, no global state)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .metrics import Report, arithmetic_mean, f1_score
from .train.events import EpochEnded, Step, Unfrozen

STATE_COLOURS = {"frozen": "#9aa5b1", "trained": "#2f80ed", "unfrozen later": "#f2994a", "not used": "#e0e0e0",
                 "removed": "#f4f5f7", "head": "#27ae60"}
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


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    """TensorBoard's smoothing: an exponential moving average, debiased so the first points are not
    pulled towards zero (weight 0: the values as they are; 0.99: very smooth)."""
    if not 0 <= weight < 1:
        raise ValueError("smoothing weight must be at least 0 and below 1")
    out, last, n = [], 0.0, 0
    for v in values:
        n += 1
        last = last * weight + (1 - weight) * v
        out.append(last / (1 - weight ** n))
    return out


def loss_curves(runs: Sequence[RunCurves], smoothing: float = 0.0, log_y: bool = False) -> go.Figure:
    """Train loss per step (light; smoothed as in TensorBoard when `smoothing` > 0, the raw steps then
    fainter behind) and train/validation loss per epoch, x in epochs; unfreezing marked."""
    fig = go.Figure()
    for i, (name, epochs, steps, unfrozen) in enumerate(runs):
        c = PALETTE[i % len(PALETTE)]
        if steps:
            xs = [s.step / s.steps_per_epoch for s in steps]
            raw = [s.loss for s in steps]
            fig.add_trace(go.Scatter(x=xs, y=raw, mode="lines", name=f"{name}: step loss",
                                     line=dict(color=c, width=1), opacity=0.15 if smoothing else 0.35))
            if smoothing:
                fig.add_trace(go.Scatter(x=xs, y=smoothed(raw, smoothing), mode="lines",
                                         name=f"{name}: step loss, smoothed {smoothing:g}", line=dict(color=c, width=2)))
        xs = [e.epoch + 1 for e in epochs]  # an epoch's averages belong at its end
        fig.add_trace(go.Scatter(x=xs, y=[e.train_loss for e in epochs], mode="lines+markers",
                                 name=f"{name}: train", line=dict(color=c)))
        fig.add_trace(go.Scatter(x=xs, y=[e.val_loss for e in epochs], mode="lines+markers",
                                 name=f"{name}: validation", line=dict(color=c, dash="dot")))
        if i == 0:
            _unfreeze_lines(fig, unfrozen)
    if log_y:
        fig.update_yaxes(type="log")
    return _layout(fig, "Loss" + (" (log scale)" if log_y else ""), "epoch", "cross-entropy loss")


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
    fig.update_yaxes(type="log", **log_decade_ticks(lrs[lrs > 0]))
    return _layout(fig, title, "epoch", "learning rate")


def confusion_heatmap(confusion, classes: Sequence[str], normalise: bool = False, clickable: bool = False) -> go.Figure:
    """The confusion matrix (rows: true class, columns: predicted class), counts or row-normalised.

    `clickable` lays one almost invisible marker over each cell: chart selections report clicked
    scatter points but not heat-map cells (a Streamlit limitation), so a click on a cell selects
    its marker, whose customdata is [true, predicted] (see `cell_from_selection`)."""
    cm = np.asarray(confusion, dtype=float)
    z = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm
    text = [[f"{v:.2f}" if normalise else f"{int(v)}" for v in row] for row in z]
    labels = [str(c) for c in classes]
    n = len(labels)
    custom = [[[t, p] for p in range(n)] for t in range(n)]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, text=text, texttemplate="%{text}", colorscale="Blues",
                               customdata=custom, hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<extra></extra>",
                               hoverinfo="skip" if clickable else None))
    if clickable:
        cells = [(t, p) for t in range(n) for p in range(n)]
        fig.add_trace(go.Scatter(
            x=[labels[p] for _, p in cells], y=[labels[t] for t, _ in cells], mode="markers", name="cells",
            customdata=[[t, p] for t, p in cells], text=[text[t][p] for t, p in cells], showlegend=False,
            hovertemplate="true %{y}<br>predicted %{x}<br>%{text}<br>click to see the images<extra></extra>",
            marker=dict(symbol="square", size=max(10, min(48, 360 // max(n, 1))), color="#eb5757", opacity=0.01),
            # The clicked cell gets a red tint; the others stay as they are.
            selected=dict(marker=dict(opacity=0.35)), unselected=dict(marker=dict(opacity=0.01))))
        fig.update_layout(hoverdistance=-1)  # anywhere in a cell picks its marker, not only near the centre
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return _layout(fig, "Confusion matrix" + (" (each row sums to 1)" if normalise else " (counts)"),
                   "predicted class", "true class")


def cell_from_selection(points: Sequence[dict], classes: Sequence[str]) -> tuple[int, int] | None:
    """(true, predicted) class indices of the clicked confusion-matrix cell, or None.

    Reads a chart selection's points: the customdata [true, predicted] of the cell markers when
    present, else the point's x (predicted) and y (true) labels."""
    labels = [str(c) for c in classes]
    n = len(labels)
    for point in points or ():
        custom = point.get("customdata")
        if isinstance(custom, (list, tuple)) and len(custom) == 2:
            try:
                t, p = int(custom[0]), int(custom[1])
            except (TypeError, ValueError):
                t = p = -1
            if 0 <= t < n and 0 <= p < n:
                return t, p
        x, y = point.get("x"), point.get("y")
        if x is not None and y is not None and str(x) in labels and str(y) in labels:
            return labels.index(str(y)), labels.index(str(x))
    return None


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
                           font=dict(color="#333" if kind in ("not used", "removed") else "white"))
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


def strategy_grid(rules: dict, size: str | None = None, similarity: str | None = None,
                  sizes: Sequence[str] = ("small", "large"), similarities: Sequence[str] = ("similar", "different"),
                  size_titles: Sequence[str] | None = None) -> go.Figure:
    """The size x similarity grid with the recommended strategy in each cell.

    The dataset's cell is outlined and labelled "your data"; while only its size is known, its whole
    column is outlined instead. `rules[(size, similarity)]` is the strategy (or (strategy, why))."""
    titles = list(size_titles) if size_titles else list(sizes)
    fig = go.Figure()
    for c, sz in enumerate(sizes):
        for r, sim in enumerate(similarities):
            rule = rules[(sz, sim)]
            strategy = rule[0] if isinstance(rule, tuple) else rule
            mine = sz == size and sim == similarity
            fig.add_shape(type="rect", x0=c, x1=c + 1, y0=r, y1=r + 1,
                          fillcolor=PALETTE[0] if mine else "#f2f4f7", opacity=0.9 if mine else 1,
                          line=dict(color="white", width=2), layer="below")
            fig.add_annotation(x=c + 0.5, y=r + 0.5, showarrow=False,
                               text=(f"<b>{strategy}</b>" + ("<br>◀ your data ▶" if mine else "")),
                               font=dict(size=15, color="white" if mine else "#333"))
    if size in sizes:
        c = list(sizes).index(size)
        if similarity in similarities:
            r = list(similarities).index(similarity)
            fig.add_shape(type="rect", x0=c + 0.02, x1=c + 0.98, y0=r + 0.02, y1=r + 0.98, name="your data",
                          line=dict(color="#eb5757", width=5))
        else:
            fig.add_shape(type="rect", x0=c + 0.02, x1=c + 0.98, y0=0.02, y1=len(similarities) - 0.02,
                          name="your data", line=dict(color="#eb5757", width=4, dash="dash"))
            fig.add_annotation(x=c + 0.5, y=len(similarities) + 0.02, yanchor="top", showarrow=False,
                               text="your data is in this column: estimate the similarity to find the row",
                               font=dict(size=12, color="#c0392b"))
    fig.update_xaxes(range=[0, len(sizes)], tickvals=[i + 0.5 for i in range(len(sizes))], ticktext=titles,
                     showgrid=False, zeroline=False, side="top")
    fig.update_yaxes(range=[len(similarities) + 0.3, 0], tickvals=[i + 0.5 for i in range(len(similarities))],
                     ticktext=[f"{s} to ImageNet" if s == "similar" else f"{s} from ImageNet" for s in similarities],
                     showgrid=False, zeroline=False)
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white")
    return fig


# --- dashboard mends (issue 9): labelled decades on log axes ------------------------------------------
def log_decade_ticks(values) -> dict:
    """A log axis that spans whole decades with a label on every one, the top decade included
    (plotly's automatic ticks can leave the decade above the data unlabelled)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return {}
    lo, hi = int(np.floor(np.log10(v.min()))), int(np.ceil(np.log10(v.max())))
    hi = max(hi, lo + 1)
    decades = list(range(lo, hi + 1))
    return dict(range=[lo - 0.05, hi + 0.05], tickvals=[10.0 ** k for k in decades],
                ticktext=[f"1e{k}" if k else "1" for k in decades])
