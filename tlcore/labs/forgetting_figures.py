"""Pure plotly figures of the forgetting lab, from a run's per-epoch rows (no I/O, no streamlit)."""
from __future__ import annotations

import plotly.graph_objects as go

from ..plots import PALETTE, _layout
from .forgetting import ARMS, TITLES

SHORT = {"aggressive": "every group, high rate", "cautious": "every group, low rate",
         "discriminative": "discriminative rates", "gradual": "gradual unfreezing", "bn_only": "BN statistics only"}


def _colour(arm: str) -> str:
    return PALETTE[ARMS.index(arm) % len(PALETTE)] if arm in ARMS else PALETTE[-1]


def trade_off(curves: dict[str, list[dict]], kept: str = "ImageNet answers kept") -> go.Figure:
    """Target accuracy against the old skill kept, one path per arm through its epochs (labelled by
    epoch): up and to the right is learning the new task without forgetting the old one."""
    fig = go.Figure()
    for arm, rows in curves.items():
        fig.add_trace(go.Scatter(x=[r["skill_kept"] for r in rows], y=[r["target_acc"] for r in rows],
                                 mode="lines+markers+text", text=[str(r["epoch"] + 1) for r in rows],
                                 textposition="top center", name=SHORT.get(arm, arm),
                                 line=dict(color=_colour(arm)), hovertext=TITLES.get(arm, arm)))
    fig.update_xaxes(range=[-0.02, 1.02], tickformat=".0%")
    fig.update_yaxes(range=[0, 1.02])
    return _layout(fig, "Learned vs kept (numbers: epochs)", kept, "target accuracy")


def kept_by_epoch(curves: dict[str, list[dict]], kept: str = "ImageNet answers kept", start: float = 1.0) -> go.Figure:
    """The old skill kept after each epoch, per arm (`start`: where every arm begins, before epoch 1)."""
    fig = go.Figure()
    for arm, rows in curves.items():
        fig.add_trace(go.Scatter(x=[0] + [r["epoch"] + 1 for r in rows], y=[start] + [r["skill_kept"] for r in rows],
                                 mode="lines+markers", name=SHORT.get(arm, arm), line=dict(color=_colour(arm))))
    fig.update_xaxes(dtick=1)
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    return _layout(fig, "What it still knows, epoch by epoch", "epoch", kept)
