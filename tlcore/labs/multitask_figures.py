"""Pure plotly figures of the multi-task lab, from a run's result rows (no I/O, no streamlit)."""
from __future__ import annotations

import plotly.graph_objects as go

from .multitask import EPOCH_SCHEMA, Outcome

COLOURS = {"joint": "#1f77b4", "single": "#ff7f0e"}
NAMES = {"joint": "joint (shared trunk)", "single": "single-task network"}


def task_curves(results, task: str, title: str) -> go.Figure:
    """Validation accuracy of one task per epoch: the joint network against its single-task network."""
    fig = go.Figure()
    rows = [r.values for r in results if r.schema == EPOCH_SCHEMA and r.values["task"] == task]
    for arm in ("joint", "single"):
        pts = [(v["epoch"] + 1, v["val_acc"]) for v in rows if v["arm"] == arm]
        if pts:
            fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                     name=NAMES[arm], line={"color": COLOURS[arm]}))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis_title="validation accuracy", yaxis_range=[0, 1.02],
                      height=320, margin={"t": 50, "b": 40}, legend={"orientation": "h", "y": -0.25})
    fig.update_xaxes(dtick=1)
    return fig


def outcome_bars(out: Outcome) -> go.Figure:
    """Final accuracy per task, joint vs single, side by side."""
    fig = go.Figure()
    for arm, side in (("joint", out.joint), ("single", out.single)):
        fig.add_trace(go.Bar(x=["task A", "task B"], y=[side["A"], side["B"]], name=NAMES[arm],
                             marker_color=COLOURS[arm], text=[f"{side['A']:.3f}", f"{side['B']:.3f}"],
                             textposition="outside"))
    fig.update_layout(title="Final accuracy per task", barmode="group", yaxis_range=[0, 1.1], height=320,
                      margin={"t": 50, "b": 40}, yaxis_title="validation accuracy")
    return fig
