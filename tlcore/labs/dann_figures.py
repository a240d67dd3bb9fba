"""Figures of the domain adaptation lab: pure functions from result rows to plotly figures."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .dann_arms import ARM_TITLES

ARM_COLOURS = {"source_only": "#d62728", "dann": "#1f77b4", "target_only": "#2ca02c"}
METRICS = (("target_acc", "Target accuracy"), ("source_acc", "Source accuracy"), ("domain_acc", "Domain accuracy"))


def dann_curves(rows: list[dict]) -> go.Figure:
    """Three panels (target, source, domain accuracy per epoch), one line per arm. `rows`: dann_epoch values."""
    fig = make_subplots(rows=1, cols=3, subplot_titles=[t for _, t in METRICS], shared_yaxes=True)
    for arm, colour in ARM_COLOURS.items():
        mine = [r for r in rows if r["arm"] == arm]
        if not mine:
            continue
        for col, (key, _) in enumerate(METRICS, start=1):
            fig.add_trace(go.Scatter(x=[r["epoch"] + 1 for r in mine], y=[r[key] for r in mine], mode="lines+markers",
                                     name=ARM_TITLES[arm], legendgroup=arm, showlegend=col == 1,
                                     line={"color": colour}), row=1, col=col)
    fig.add_hline(y=0.5, line_dash="dot", line_color="grey", row=1, col=3,
                  annotation_text="can't tell the domains apart", annotation_position="bottom right")
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy", row=1, col=1)
    fig.update_xaxes(title_text="epoch")
    fig.update_layout(height=340, margin={"t": 40, "b": 40}, legend={"orientation": "h", "y": -0.25})
    return fig


def embedding_view(embeddings: dict) -> go.Figure:
    """Source vs target features (2-D PCA), coloured by domain: before (source only) and after (DANN)."""
    panels = [(k, t) for k, t in (("source_only", "Before: source only"), ("dann", "After: DANN")) if k in embeddings]
    fig = make_subplots(rows=1, cols=max(1, len(panels)), subplot_titles=[t for _, t in panels] or [""])
    for col, (key, _) in enumerate(panels, start=1):
        e = embeddings[key]
        xy, dom = e["xy"], e["domain"]
        for d, name, colour in ((0, "source", "#444444"), (1, "target", "#ff7f0e")):
            m = dom == d
            fig.add_trace(go.Scattergl(x=xy[m, 0].tolist(), y=xy[m, 1].tolist(), mode="markers", name=name,
                                       legendgroup=name, showlegend=col == 1,
                                       marker={"color": colour, "size": 4, "opacity": 0.6},
                                       text=[f"digit {int(v)}" for v in e["label"][m]]), row=1, col=col)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_layout(height=360, margin={"t": 40, "b": 20})
    return fig


def final_table(rows: list[dict]) -> list[dict]:
    return [{"run": ARM_TITLES[r["arm"]], "source accuracy": round(r["source_acc"], 3),
             "target accuracy": round(r["target_acc"], 3), "domain accuracy": round(r["domain_acc"], 3),
             "seconds": round(r["seconds"], 1)} for r in rows]


def lambda_figure(weight: float, epochs: int, rows: list[dict] | None = None) -> go.Figure:
    """The reversed gradient's weight that training applies: weight x lambda(p) over the run (the line),
    and the value each DANN epoch ended on (the markers, from the run's rows once it has some)."""
    from .grl import dann_lambda
    xs = [epochs * i / 200 for i in range(201)]
    fig = go.Figure(go.Scatter(x=xs, y=[weight * dann_lambda(x / max(epochs, 1)) for x in xs], mode="lines",
                               name="planned", line={"color": ARM_COLOURS["dann"]}))
    done = [r for r in rows or [] if r["arm"] == "dann"]
    if done:
        fig.add_trace(go.Scatter(x=[r["epoch"] + 1 for r in done], y=[r["lambda"] for r in done], mode="markers",
                                 name="applied (end of epoch)", marker={"color": ARM_COLOURS["dann"], "size": 8}))
    fig.update_xaxes(title_text="epoch", range=[0, epochs])
    fig.update_yaxes(title_text="λ applied", range=[0, max(weight, 1e-3) * 1.05])
    fig.update_layout(height=220, margin={"t": 30, "b": 40}, title="Reversed gradient's weight (DANN arm)",
                      legend={"orientation": "h", "y": -0.4})
    return fig


HELPED = 0.03   # a target gain below this (about 10 of digits_m's 360 test images) is read as no effect


def lesson_text(finals: dict[str, dict]) -> tuple[bool, str]:
    """What this run showed, from its own final rows: (DANN helped, the sentences). Needs the
    source_only and dann arms; names the ceiling when the target-label arm ran."""
    so, da = finals["source_only"], finals["dann"]
    gain = da["target_acc"] - so["target_acc"]
    dom_fell = da["domain_acc"] < so["domain_acc"] - 0.02
    domain = (f"the domain classifier fell from {so['domain_acc']:.2f} to {da['domain_acc']:.2f} "
              f"(0.5: it cannot tell the domains apart)" if dom_fell else
              f"the domain classifier did not fall ({so['domain_acc']:.2f} without adaptation, "
              f"{da['domain_acc']:.2f} with it): the features still tell the domains apart")
    ceiling = (f" With the target's own labels the same network reaches {finals['target_only']['target_acc']:.3f}."
               if "target_only" in finals else "")
    helped = gain >= HELPED
    if helped:
        head = (f"On the target, DANN scores {da['target_acc']:.3f} against {so['target_acc']:.3f} for the source "
                f"alone: gradient reversal lifted target accuracy by {gain:+.3f} without a single target label, "
                f"and {domain}.")
    else:
        head = (f"On the target, DANN scores {da['target_acc']:.3f} against {so['target_acc']:.3f} for the source "
                f"alone ({gain:+.3f}): in this run DANN did not help, and {domain}.")
    return helped, head + ceiling
