"""Pure plotly figures of the zero-shot lab, from a run's result rows (no I/O, no streamlit)."""
from __future__ import annotations

import plotly.graph_objects as go

from .zero_shot import attributes, outcome, per_class

COLOURS = {"yours": "#1f77b4", "scrambled": "#ff7f0e"}
NAMES = {"yours": "your table", "scrambled": "scrambled table"}


def unseen_accuracy(results) -> go.Figure:
    """Accuracy on the unseen classes per table, each class and all of them, against guessing."""
    fig = go.Figure()
    out, rows = outcome(results), per_class(results)
    for table in ("yours", "scrambled"):
        if table not in out:
            continue
        mine = [r for r in rows if r["table"] == table]
        x = ["all unseen"] + [f"class {r['cls']}" for r in mine]
        y = [out[table]["acc"]] + [r["acc"] for r in mine]
        fig.add_trace(go.Bar(x=x, y=y, name=NAMES[table], marker_color=COLOURS[table],
                             text=[f"{v:.3f}" for v in y], textposition="outside"))
    chance = next(iter(out.values()))["chance"] if out else None
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color="#999999", annotation_text="guessing",
                      annotation_position="top right")
    fig.update_layout(title="Unseen classes recognised from their descriptions", barmode="group",
                      yaxis_title="accuracy", yaxis_range=[0, 1.1], height=360, margin={"t": 50, "b": 40})
    return fig


def attribute_accuracy(results) -> go.Figure:
    """How often each attribute classifier, trained on seen classes only, was right on unseen images."""
    rows = attributes(results)
    fig = go.Figure(go.Bar(
        x=[r["unseen_acc"] if r["used"] else 0 for r in rows], y=[r["attribute"] for r in rows], orientation="h",
        marker_color=["#2ca02c" if r["used"] else "#cccccc" for r in rows],
        text=[f"{r['unseen_acc']:.2f}" if r["used"] else "not learnable" for r in rows], textposition="outside",
        customdata=[r["seen_with"] for r in rows],
        hovertemplate="%{y}: %{x:.3f} on unseen images (seen classes with it: %{customdata})<extra></extra>"))
    fig.update_layout(title="Each attribute on the unseen images (learned from the seen classes)",
                      xaxis_title="agreement with your table", xaxis_range=[0, 1.15],
                      height=60 + 28 * max(len(rows), 3),
                      margin={"t": 50, "b": 40})
    fig.update_yaxes(autorange="reversed")
    return fig
