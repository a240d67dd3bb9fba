import pandas as pd
import streamlit as st

from tlcore.data.pairs import PAIR_SOURCES
from tlcore.errors import TLCoreError
from tlcore.labs import multitask as mt
from tlcore.labs import multitask_figures as figs
from tlcore.train.plan import Plan
from ui import services, state, widgets

state.start_page()
st.title("Multi-task learning")
st.markdown("""
Instead of one network per task, a single network can learn several tasks at once: a **shared
trunk** turns each image into features, and each task gets its own small **head** on top. Each
image here holds two digits side by side. **Task A** is the left digit. **Task B** is either the
right digit (a task that needs the same kind of features) or how bright the background is (a
task that has nothing to do with digits).

The lecture notes give three conditions for sharing to pay off. Each has a control below:
1. **The tasks can share lower-level features**: make task B related or unrelated.
2. **Each task has about as much data as the other**: keep only a share of task B's labels (the
   pairs without one are left out of B's loss).
3. **The network is big enough to do well on every task**: make the trunk narrow or wide.

Every run trains the joint network and, beside it, two single-task networks with the same trunk,
for the same number of steps, so you see what sharing gained or cost.
""")

SHARES = [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01]
TASK_B = ["right digit (related)", "background brightness (unrelated)"]
LOSSES = ["fixed weights", "uncertainty weighting"]
store = services.store()


def _controls_of(plan: Plan) -> dict:
    o = mt.options(plan)
    return {"mt_dataset": plan.dataset if plan.dataset in PAIR_SOURCES else "digit_pairs",
            "mt_task_b": TASK_B[0] if o["related"] else TASK_B[1],
            "mt_share": float(o["b_labels"]) if o["b_labels"] in SHARES else 1.0,
            "mt_width": int(o["width"]) if o["width"] in mt.WIDTHS else mt.DEFAULTS["width"],
            "mt_loss": LOSSES[1] if o["weighting"] == "uncertainty" else LOSSES[0],
            "mt_w_b": round(float(o["w_b"]), 1) if 0 <= o["w_b"] <= 2 else 1.0,
            "mt_epochs": int(plan.epochs) if plan.epochs <= 30 else 5}


# A new session (a reload, a second tab) starts from the settings of the run it is about to show.
widgets.seed_controls(mt.KIND, _controls_of(mt.lab_plan()), _controls_of)
c1, c2, c3 = st.columns(3)
dataset = c1.selectbox("Images", list(PAIR_SOURCES), key="mt_dataset",
                       format_func={"digit_pairs": "digit pairs (bundled, offline)",
                                    "mnist_pairs": "MNIST pairs (needs MNIST on disk)"}.get)
related = c1.radio("Task B", TASK_B, key="mt_task_b") == TASK_B[0]
share = c2.select_slider("Share of task B's labels kept", SHARES[::-1], key="mt_share", format_func=lambda v: f"{v:.0%}",
                         help="Every step, task B's loss is taken over a batch of the pairs that kept a B label, "
                              "and task A's over a batch of all pairs.")
width = c2.select_slider("Trunk width", list(mt.WIDTHS), key="mt_width",
                         help="Channels of the trunk's first layer; its last has 4 x width, on a 2x2 grid of positions both "
                              "heads read.")
weighting = c3.radio("Loss", LOSSES, key="mt_loss",
                     help="Fixed: w_A·L_A + w_B·L_B. Uncertainty (Kendall, Gal and Cipolla 2018): each task's loss "
                          "is scaled by exp(-s) and s is added, with s learned, so a noisy task weighs itself down.")
unc = weighting == LOSSES[1]
w_b = c3.slider("Weight of task B (w_A = 1)", 0.0, 2.0, step=0.1, key="mt_w_b", disabled=unc)
epochs = c3.number_input("Epochs", 1, 30, key="mt_epochs")

options = {"related": related, "b_labels": float(share), "width": int(width),
           "weighting": "uncertainty" if unc else "fixed", "w_a": 1.0, "w_b": float(w_b)}
try:
    plan = mt.lab_plan(dataset=dataset, epochs=int(epochs), **options)
    error = None
except TLCoreError as e:
    plan, error = None, str(e)
if error:
    st.error(error)
if st.button("Run joint vs single-task", type="primary", disabled=plan is None or state.locked()):
    try:
        st.session_state.multitask_run = services.runner().submit(plan, owner=services.owner())
    except TLCoreError as e:
        st.error(str(e))

mine = [r for r in store.list(owner=services.owner()) if r.kind == mt.KIND]
if mine:
    ids = [r.id for r in mine]
    current = st.session_state.get("multitask_run")
    pick = st.selectbox("Show run", ids, index=ids.index(current) if current in ids else 0,
                        format_func=lambda i: next(f"{r.id} · {r.status}" for r in mine if r.id == i))
    st.session_state.multitask_run = pick
run_id = st.session_state.get("multitask_run")


def _describe(o: dict) -> str:
    what = "right digit" if o["related"] else "background brightness"
    weights = "uncertainty weighting" if o["weighting"] == "uncertainty" else f"w_A={o['w_a']:g}, w_B={o['w_b']:g}"
    return f"Task B: {what} · {o['b_labels']:.0%} of B's labels · trunk width {o['width']} · {weights}"


def draw(run) -> None:
    """The page's own part of the live view: curves per task, then the outcome and what it showed."""
    o = mt.options(run.plan)
    st.caption(_describe(o))
    b_title = "Task B: right digit" if o["related"] else "Task B: background brightness"
    a, b = st.columns(2)
    a.plotly_chart(figs.task_curves(run.results, "A", "Task A: left digit"), key=f"mt-a-{run.id}")
    b.plotly_chart(figs.task_curves(run.results, "B", b_title), key=f"mt-b-{run.id}")
    out = mt.Outcome.of(run.results)
    if out is None:
        return
    st.plotly_chart(figs.outcome_bars(out), key=f"mt-bars-{run.id}")
    rows = [{"network": name, "task A accuracy": side["A"], "task B accuracy": side["B"],
             "parameters": int(side["params"]), "training seconds": side["seconds"]}
            for name, side in (("joint (one shared trunk, two heads)", out.joint),
                               ("two single-task networks", out.single))]
    st.dataframe(pd.DataFrame(rows).style.format({"task A accuracy": "{:.3f}", "task B accuracy": "{:.3f}",
                                                  "parameters": "{:,}", "training seconds": "{:.1f}"}),
                 hide_index=True)
    st.subheader("What this run showed")
    for line in mt.findings(o, out, run.metrics):
        st.markdown(f"- {line}")


if run_id:
    widgets.live(run_id, draw, what="The comparison", stop="Stop")
else:
    st.caption("Pick the settings and start a run: the curves per task appear as it trains.")
