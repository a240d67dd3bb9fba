"""Pure plotly figures of the few-shot lab, from a run's result rows (no I/O, no streamlit)."""
from __future__ import annotations

import plotly.graph_objects as go

from .few_shot import ARMS, curves, draws

COLOURS = {"prototypes": "#1f77b4", "logreg": "#2ca02c", "fine_tune": "#d62728", "pixels": "#7f7f7f"}
NAMES = {"prototypes": "prototypes (CNN codes)", "logreg": "logistic regression (CNN codes)",
         "fine_tune": "fine-tuned top group", "pixels": "SVM on pixels"}


def _rgba(hex_colour: str, alpha: float) -> str:
    r, g, b = (int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def accuracy_vs_k(results, chance: float | None = None) -> go.Figure:
    """Mean validation accuracy against k per learner (log axis), the band from the worst to the best draw."""
    fig = go.Figure()
    for arm, rows in curves(results).items():
        ks = [r["k"] for r in rows]
        colour = COLOURS.get(arm, "#444444")
        if len(rows) > 1:
            fig.add_trace(go.Scatter(x=ks + ks[::-1], y=[r["high"] for r in rows] + [r["low"] for r in rows][::-1],
                                     fill="toself", fillcolor=_rgba(colour, 0.15), line={"width": 0}, mode="lines",
                                     hoverinfo="skip", showlegend=False, name=f"{NAMES.get(arm, arm)} range"))
        fig.add_trace(go.Scatter(x=ks, y=[r["mean"] for r in rows], mode="lines+markers", name=NAMES.get(arm, arm),
                                 line={"color": colour, "dash": "dot" if arm == "pixels" else "solid"},
                                 error_y={"type": "data", "array": [r["sd"] for r in rows], "visible": True,
                                          "thickness": 1},
                                 customdata=[[r["low"], r["high"], r["draws"]] for r in rows],
                                 hovertemplate="k = %{x}: %{y:.3f} (draws %{customdata[0]:.3f}-%{customdata[1]:.3f},"
                                               " %{customdata[2]} draws)<extra>%{fullData.name}</extra>"))
    if chance is not None:
        fig.add_hline(y=chance, line_dash="dash", line_color="#999999", annotation_text="guessing",
                      annotation_position="bottom right")
    fig.update_layout(title="Accuracy against images per class (band: worst to best draw, bars: ± 1 sd)",
                      xaxis_title="k, labelled images per class", yaxis_title="validation accuracy",
                      yaxis_range=[0, 1.02], height=420, margin={"t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(type="log", tickvals=sorted({r["k"] for rows in curves(results).values() for r in rows}))
    return fig


def draws_at(results, k: int) -> go.Figure:
    """Every draw's accuracy at one k, per learner: how much luck in the k images matters."""
    fig = go.Figure()
    rows = [r for r in draws(results) if r["k"] == k]
    for arm in ARMS:
        fig.add_trace(go.Box(y=[r[arm] for r in rows], name=NAMES[arm], boxpoints="all", jitter=0.3,
                             marker_color=COLOURS[arm]))
    fig.update_layout(title=f"Each draw at k = {k}", yaxis_title="validation accuracy", yaxis_range=[0, 1.02],
                      height=340, margin={"t": 50, "b": 40}, showlegend=False)
    return fig
