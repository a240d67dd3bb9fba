"""Pure plotly figures of the depth lab, from a run's result rows and the zoo's structures (no I/O,
no streamlit)."""
from __future__ import annotations

import plotly.graph_objects as go

from ..inspect.branches import Block, Structure
from .depth import TINY, ArmSpec, curve_rows, grad_rows

PALETTE = ("#d62728", "#ff7f0e", "#1f77b4", "#2ca02c", "#9467bd", "#8c564b")


def _colour(codes: list[str], code: str) -> str:
    return PALETTE[codes.index(code) % len(PALETTE)]


def _dash(code: str) -> str:
    return "solid" if ArmSpec.parse(code).residual else "dash"


def _floor(values: list[float]) -> list[float | None]:
    """A log axis cannot draw 0: a norm that underflowed is left as a gap."""
    return [v if v > TINY else None for v in values]


def gradients_at_start(results) -> go.Figure:
    """Gradient norm per weight of every layer at initialisation, one line per network, log scale."""
    grads = grad_rows(results)
    codes = list(grads)
    fig = go.Figure()
    for code in codes:
        first = grads[code][min(grads[code])]
        fig.add_trace(go.Scatter(x=list(range(1, len(first) + 1)), y=_floor(first), mode="lines+markers",
                                 name=ArmSpec.parse(code).title,
                                 line={"color": _colour(codes, code), "dash": _dash(code)}))
    fig.update_layout(title="Gradient per weight of every layer, at the start", xaxis_title="layer (1 = input side)",
                      yaxis_title="‖dL/dW‖ / √weights", yaxis_type="log", height=380, margin={"t": 50, "b": 40},
                      yaxis_exponentformat="power", legend={"orientation": "h", "y": -0.25})
    return fig


def gradients_over_training(results, code: str) -> go.Figure:
    """One network's gradient per weight of every layer at each recorded step: does it stay, or change?"""
    steps = grad_rows(results).get(code, {})
    fig = go.Figure()
    ordered = sorted(steps)
    for k, step in enumerate(ordered):
        shade = 0.25 + 0.75 * k / max(len(ordered) - 1, 1)
        fig.add_trace(go.Scatter(x=list(range(1, len(steps[step]) + 1)), y=_floor(steps[step]),
                                 mode="lines+markers", name="at the start" if step == 0 else f"step {step + 1}",
                                 line={"color": f"rgba(31, 119, 180, {shade:.2f})"}))
    fig.update_layout(title=f"{ArmSpec.parse(code).title}: during training", xaxis_title="layer (1 = input side)",
                      yaxis_title="‖dL/dW‖ / √weights", yaxis_type="log", yaxis_exponentformat="power",
                      height=330,
                      margin={"t": 50, "b": 40}, legend={"orientation": "h", "y": -0.3})
    return fig


def training_curves(results, what: str = "train_error") -> go.Figure:
    """Training error (He et al.'s Figure 1) or loss against steps, every network on one chart."""
    curves = curve_rows(results)
    codes = list(curves)
    fig = go.Figure()
    for code in codes:
        pts = curves[code]
        fig.add_trace(go.Scatter(x=[p["step"] + 1 for p in pts], y=[p[what] for p in pts], mode="lines",
                                 name=ArmSpec.parse(code).title,
                                 line={"color": _colour(codes, code), "dash": _dash(code)}))
    label = {"train_error": "training error", "train_loss": "training loss"}[what]
    fig.update_layout(title=f"{label.capitalize()} against steps (dashed: plain, solid: residual)",
                      xaxis_title="step", yaxis_title=label, height=360, margin={"t": 50, "b": 40},
                      legend={"orientation": "h", "y": -0.25})
    if what == "train_error":
        fig.update_yaxes(range=[0, 1], tickformat=".0%")
    return fig


# --- the zoo's networks ------------------------------------------------------------------------------
GROUP_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def structure_overview(s: Structure) -> go.Figure:
    """Every block of the network in order: the paths a signal can take through it (bars) and its
    parameters (hover and text), coloured by layer group."""
    groups = list(dict.fromkeys(b.group for b in s.blocks))
    fig = go.Figure()
    for gi, group in enumerate(groups):
        blocks = [b for b in s.blocks if b.group == group]
        fig.add_trace(go.Bar(x=[b.name for b in blocks], y=[b.paths for b in blocks], name=group,
                             marker_color=GROUP_COLOURS[gi % len(GROUP_COLOURS)],
                             text=[_short(b.params) for b in blocks], textposition="outside",
                             customdata=[[b.params, b.merge or "one path"] for b in blocks],
                             hovertemplate="%{x}: %{y} paths (%{customdata[1]}), %{customdata[0]:,} parameters"
                                           "<extra></extra>"))
    fig.update_layout(title=f"{s.title}: paths through each block (bar text: its parameters)",
                      xaxis_title="block, input to output", yaxis_title="paths through the block", height=380,
                      margin={"t": 50, "b": 40}, legend={"orientation": "h", "y": -0.45}, bargap=0.15)
    fig.update_yaxes(range=[0, max(b.paths for b in s.blocks) + 1.5], dtick=1)
    return fig


def block_diagram(block: Block) -> go.Figure:
    """One block's branches side by side, from its input (left) to its merge (right), each with what it
    computes and its parameters."""
    fig = go.Figure()
    n = len(block.branches)
    merge = "+ (add)" if block.merge == "add" else "concat"
    for i, br in enumerate(block.branches):
        y = n - 1 - i
        fig.add_trace(go.Scatter(x=[0, 1, 2, 3], y=[n / 2 - 0.5, y, y, n / 2 - 0.5], mode="lines",
                                 line={"color": "#888", "width": 2}, hoverinfo="skip", showlegend=False))
        fig.add_annotation(x=1.5, y=y, text=f"<b>{br.label}</b><br>{br.params:,} parameters · {br.channels} channels",
                           showarrow=False, bgcolor="#eef4fb" if br.ops else "#f4f4f4", bordercolor="#1f77b4",
                           borderpad=6, font={"size": 13})
    fig.add_annotation(x=0, y=n / 2 - 0.5, text="input", showarrow=False, bgcolor="white", font={"size": 13})
    fig.add_annotation(x=3, y=n / 2 - 0.5, text=merge, showarrow=False, bgcolor="white", font={"size": 13})
    fig.update_xaxes(visible=False, range=[-0.4, 3.4])
    fig.update_yaxes(visible=False, range=[-0.7, n - 0.3])
    fig.update_layout(title=f"{block.name}: {len(block.branches)} branches, {block.paths} paths, "
                            f"{block.params:,} parameters", height=max(220, 95 * n), margin={"t": 50, "b": 10})
    return fig


def _short(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k" if n >= 1e3 else str(n)
