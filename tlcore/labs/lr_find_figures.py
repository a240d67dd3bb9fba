"""Figures for the learning-rate finder and the one-cycle schedule (pure functions, plotly)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from ..plots import PALETTE, _layout, log_decade_ticks
from .lr_find import SUGGESTION_TITLES

MARKERS = {"valley": ("star", PALETTE[2]), "minimum": ("diamond", PALETTE[3]), "steep": ("triangle-down", PALETTE[1])}


def lr_find_figure(lrs: Sequence[float], losses: Sequence[float], smoothed: Sequence[float],
                   suggestions: dict[str, tuple[float, float]], current_lr: float | None = None,
                   offered: dict[str, float] | None = None) -> go.Figure:
    """Smoothed loss against the learning rate (log x), the raw batch losses faint behind it, each
    suggestion marked where it lies on the curve, and the plan's own rate as a dashed line. `offered`:
    the rate a suggestion's button really sets, where the UI clamps or rounds it (the legend says both)."""
    lrs, smoothed = np.asarray(lrs, float), np.asarray(smoothed, float)
    raw = np.asarray(losses, float)
    ok = np.isfinite(smoothed) & (smoothed < 1e29)
    top = float(np.nanmax(smoothed[ok])) if ok.any() else 1.0
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lrs, y=np.where(raw < 1e29, raw, np.nan), mode="lines", name="batch loss",
                             line=dict(color=PALETTE[0], width=1), opacity=0.3))
    fig.add_trace(go.Scatter(x=lrs[ok], y=smoothed[ok], mode="lines", name="smoothed loss (moving average)",
                             line=dict(color=PALETTE[0], width=2)))
    for name, (lr, loss) in suggestions.items():
        symbol, colour = MARKERS.get(name, ("circle", PALETTE[4]))
        # minimum/10 suggests a rate ten times left of the point it marks (the minimum itself)
        at = lr * 10 if name == "minimum" else lr
        label = f"{SUGGESTION_TITLES[name]}: {lr:.2g}"
        if offered and name in offered and f"{offered[name]:.2g}" != f"{lr:.2g}":
            label += f" (offered: {offered[name]:g}, the control's limit)"
        fig.add_trace(go.Scatter(x=[at], y=[loss], mode="markers", name=label,
                                 marker=dict(symbol=symbol, size=13, color=colour, line=dict(width=1, color="white"))))
    if current_lr:
        fig.add_vline(x=current_lr, line=dict(color="grey", dash="dash"), annotation_text=f"plan lr {current_lr:g}")
    fig.update_xaxes(type="log", **log_decade_ticks(lrs[lrs > 0]))
    low = float(np.nanmin(smoothed[ok])) if ok.any() else 0.0
    fig.update_yaxes(range=[max(0.0, low - 0.1 * (top - low)), top + 0.05 * (top - low)])
    return _layout(fig, "Learning-rate finder: loss as the rate grows", "learning rate (log scale)",
                   "training loss")


def momentum_figure(momentum: np.ndarray, x: Sequence[float], optimizer: str) -> go.Figure:
    """One-cycle's momentum (SGD) or beta1 (Adam) over the run, drawn before it starts."""
    fig = go.Figure(go.Scatter(x=list(x), y=list(momentum), mode="lines", name="momentum",
                               line=dict(color=PALETTE[4])))
    what = "Adam's beta1" if optimizer == "adamw" else "SGD momentum"
    return _layout(fig, f"Planned {what}: it falls while the rate rises, then recovers", "epoch", what)
