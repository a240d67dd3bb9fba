"""Figures of the Where-to-transfer lab (plotly, no streamlit): accuracy against depth."""
from __future__ import annotations

from dataclasses import dataclass, field

import plotly.graph_objects as go

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


@dataclass(frozen=True)
class Curve:
    label: str                      # "Digits · EfficientNet-Lite0"
    rows: list[dict]                # probe rows bottom -> top: group, index, val_acc
    pixel_svm: float | None = None
    finetuned: list[dict] = field(default_factory=list)   # rows of a fine-tune-from-here run: group, val_acc


def depth_chart(curves: list[Curve], title: str = "Linear probe accuracy against depth") -> go.Figure:
    """One line per run: validation accuracy of the probe on each layer group, the best group starred,
    the raw-pixel SVM as a dashed horizontal line in the same colour, fine-tuned cuts dotted."""
    fig = go.Figure()
    groups: list[str] = []
    for c in curves:
        for r in c.rows:
            if r["group"] not in groups:
                groups.append(r["group"])
    for i, c in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        if not c.rows:
            continue
        x = [r["group"] for r in c.rows]
        y = [r["val_acc"] for r in c.rows]
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=f"{c.label}: frozen probe",
                                 line={"color": colour}, legendgroup=c.label,
                                 hovertemplate="%{x}: %{y:.3f}<extra>" + c.label + "</extra>"))
        best = max(c.rows, key=lambda r: (r["val_acc"], -r["index"]))
        fig.add_trace(go.Scatter(x=[best["group"]], y=[best["val_acc"]], mode="markers", name=f"{c.label}: best",
                                 marker={"symbol": "star", "size": 16, "color": colour,
                                         "line": {"width": 1, "color": "black"}},
                                 legendgroup=c.label, showlegend=False,
                                 hovertemplate=f"best: {best['group']} ({best['val_acc']:.3f})<extra></extra>"))
        if c.pixel_svm is not None:
            fig.add_trace(go.Scatter(x=[groups[0], groups[-1]], y=[c.pixel_svm, c.pixel_svm], mode="lines",
                                     name=f"{c.label}: SVM on raw pixels", legendgroup=c.label,
                                     line={"color": colour, "dash": "dash", "width": 1.5},
                                     hovertemplate=f"raw-pixel SVM: {c.pixel_svm:.3f}<extra></extra>"))
        if c.finetuned:
            fig.add_trace(go.Scatter(x=[r["group"] for r in c.finetuned], y=[r["val_acc"] for r in c.finetuned],
                                     mode="lines+markers", name=f"{c.label}: fine-tuned from this cut",
                                     legendgroup=c.label, line={"color": colour, "dash": "dot"},
                                     marker={"symbol": "diamond"}))
    fig.update_layout(title=title, xaxis_title="layer group (input side → output side)",
                      yaxis_title="validation accuracy", yaxis_range=[0, 1.02], height=460,
                      legend={"orientation": "h", "y": -0.25}, margin={"t": 50})
    fig.update_xaxes(categoryorder="array", categoryarray=groups)
    return fig


def verdict(rows: list[dict], pixel_svm: float | None) -> str:
    """What the learner's own curve says, in one or two sentences."""
    if not rows:
        return ""
    best = max(rows, key=lambda r: (r["val_acc"], -r["index"]))
    last = rows[-1]
    text = f"On this data the best features come from **{best['group']}** ({best['val_acc']:.3f})"
    if best is last:
        text += ", the last group: the whole pretrained network transfers, as for data close to ImageNet."
    else:
        text += (f", {best['val_acc'] - last['val_acc']:+.3f} over the last group {last['group']} "
                 f"({last['val_acc']:.3f}): the top groups are too specific to ImageNet here, so cutting "
                 f"after {best['group']} loses nothing and saves compute.")
    if pixel_svm is not None:
        gap = best["val_acc"] - pixel_svm
        text += (f" Against an SVM on the raw pixels ({pixel_svm:.3f}) the best group is {gap:+.3f}"
                 + (": the pretrained features earn their keep." if gap > 0.02 else
                    ": the network's features barely beat, or lose to, the pixels themselves, the notes' sign of "
                    "data unlike ImageNet."))
    return text
