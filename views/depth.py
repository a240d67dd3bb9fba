import pandas as pd
import streamlit as st

from tlcore.errors import TLCoreError
from tlcore.inspect import branches
from tlcore.labs import depth as dl
from tlcore.labs import depth_figures as figs
from tlcore.models import MODELS
from ui import state, widgets

state.start_page()
st.title("Why deep networks were hard to train")
st.markdown(r"""
**The rule (lecture notes):** a deeper network can represent anything a shallower one can, yet for
years deep stacks trained *worse*, even on their own training images. Training sends the error's
gradient back down the layers, and each layer multiplies it by its activation's slope: a logistic
unit's is $y(1-y)$, at most 1/4, and tanh's is $(1+y)(1-y)$. Through many layers the gradient
**vanishes**, and the first layers hardly learn; with ReLU units it can **explode** instead.
ResNet (He et al. 2016) adds **shortcuts**, $y = x + F(x)$, so the gradient has a path around every
block; BatchNorm rescales each layer's input so the slopes stay in their useful range.

Below, networks of the same depth and width train side by side on the same batches: choose an
activation, BatchNorm or not, plain or residual. For each, the run measures the gradient of every
layer (its norm per weight, so that layers of different sizes compare) at the start and during
training, and the training error over the steps, as in He et al.'s Figure 1.
""")

TITLES = {c: dl.ArmSpec.parse(c).title for c in dl.arm_codes()}
DATA = {"digits": "digits (8×8, bundled, offline)", "mnist": "MNIST (14 px, needs it on disk)",
        "fashion_mnist": "Fashion-MNIST (14 px, needs it on disk)"}
RATES = [0.01, 0.03, 0.1, 0.3]


def _controls_of(plan) -> dict:
    o = dl.options(plan)
    return {"dp_dataset": plan.dataset if plan.dataset in DATA else "digits",
            "dp_depth": int(o["depth"]), "dp_width": int(o["width"]) if o["width"] in (8, 16, 32) else 16,
            "dp_arms": [c for c in o["arms"] if c in TITLES], "dp_epochs": int(plan.epochs) if plan.epochs <= 30 else 8,
            "dp_lr": float(plan.lr) if plan.lr in RATES else dl.PAGE_LR}


widgets.seed_controls(dl.KIND, _controls_of(dl.lab_plan()), _controls_of)
c1, c2, c3 = st.columns(3)
depth = c1.slider("Depth (weight layers)", dl.DEPTH_RANGE[0], dl.DEPTH_RANGE[1], step=2, key="dp_depth",
                  help="A stem convolution, pairs of 3x3 convolutions (one residual block each), and the classifier.")
width = c1.select_slider("Width (channels)", [8, 16, 32], key="dp_width")
arms = c2.multiselect("Networks, side by side", list(TITLES), format_func=TITLES.get, key="dp_arms",
                      max_selections=dl.MAX_ARMS,
                      help="Each trains on the same batches from the same seed; residual and plain of one "
                           "activation start from the same weights.")
dataset = c2.selectbox("Images", list(DATA), format_func=DATA.get, key="dp_dataset")
epochs = c3.number_input("Epochs", 1, 30, key="dp_epochs")
lr = c3.select_slider("Peak learning rate (SGD, one-cycle)", RATES, key="dp_lr",
                      help=f"Every network's gradient is clipped to a global norm of {dl.CLIP:g} before its step: "
                           "ReLU networks without BatchNorm blow up at this rate otherwise.")
try:
    plan = dl.lab_plan(dataset=dataset, epochs=int(epochs), lr=float(lr), depth=int(depth), width=int(width),
                       arms=list(arms), seed=state.plan().seed)
except TLCoreError as e:
    st.error(str(e))
    plan = None
run_id = widgets.queue_button("Train the networks", plan, "depth_runs", type="primary",
                              disabled=plan is None or state.locked()) if plan is not None else None


def draw(run) -> None:
    """The page's own part of the live view: gradients by layer, the training curves, what the run showed."""
    rows = dl.arm_rows(run.results)
    grads = dl.grad_rows(run.results)
    if grads:
        st.subheader("Gradients by depth")
        st.plotly_chart(figs.gradients_at_start(run.results), key=f"dp-start-{run.id}")
        pick = st.selectbox("During training, for", list(grads), format_func=TITLES.get, key=f"dp-pick-{run.id}")
        st.plotly_chart(figs.gradients_over_training(run.results, pick), key=f"dp-during-{run.id}")
    if dl.curve_rows(run.results):
        st.subheader("Plain vs residual at equal depth")
        what = st.radio("Draw", ["train_error", "train_loss"], horizontal=True, key=f"dp-what-{run.id}",
                        format_func={"train_error": "training error", "train_loss": "training loss"}.get)
        st.plotly_chart(figs.training_curves(run.results, what), key=f"dp-curves-{run.id}")
    if not rows:
        return
    st.dataframe(pd.DataFrame([{"network": TITLES[c], "layers": r["depth"], "parameters": r["params"],
                                "first / last conv gradient (orders of 10)": r["orders"],
                                "training loss": r["train_loss"], "training error": r["train_error"],
                                "validation accuracy": r["val_acc"], "seconds": r["seconds"]}
                               for c, r in rows.items()]).style.format(
        {"first / last conv gradient (orders of 10)": "{:+.1f}", "training loss": "{:.3f}",
         "training error": "{:.1%}", "validation accuracy": "{:.3f}", "parameters": "{:,}", "seconds": "{:.1f}"}),
        hide_index=True)
    if run.status == "finished":
        st.subheader("What your run showed")
        steps = max((p["step"] for pts in dl.curve_rows(run.results).values() for p in pts), default=-1) + 1
        for line in dl.findings(rows, steps):
            st.markdown(f"- {line}")


if run_id:
    widgets.live(run_id, draw, what="The depth run", stop="Stop")
else:
    st.caption("Pick the networks and start a run: the gradients and the training curves appear as it trains.")

st.header("Inside the zoo's own networks")
st.markdown("""
The networks in the zoo are built this way. A ResNet block computes two or three convolutions and
adds its input back (a 1x1 convolution on the shortcut where the block halves the map). An Inception
module runs 1x1, 3x3, 5x5 (or factorised 1x7 and 7x1) convolutions and a pooling side by side and
stacks their outputs; the 1x1 convolutions in front of the larger ones cut the channels they have to
read. Every block below is read from the architecture itself (no weights needed), with the
parameters of each branch.
""")


@st.cache_data(show_spinner=False)
def _structure(name: str) -> branches.Structure:
    return branches.structure(name)


net = st.selectbox("Network", list(branches.NETWORKS), format_func=lambda n: MODELS[n].title, key="dp_zoo")
s = _structure(net)
in_blocks = sum(b.params for b in s.blocks)
merging = [b for b in s.blocks if b.merge]
st.markdown(f"**{s.title}**: {len(merging)} blocks that split and merge; {s.paths:,} different paths from the input "
            f"to the output (every block multiplies the count by its own paths). The layer groups hold "
            f"{in_blocks:,} of its {s.total_params:,} parameters; "
            f"{'the classifier and the auxiliary classifier hold' if MODELS[net].aux else 'the classifier holds'} "
            f"the other {s.total_params - in_blocks:,}.")
st.plotly_chart(figs.structure_overview(s), key=f"dp-zoo-{net}")
block = st.selectbox("Block", [b.name for b in merging], key=f"dp_block_{net}",
                     format_func=lambda n: f"{n} ({next(b.group for b in merging if b.name == n)})")
chosen = next(b for b in merging if b.name == block)
st.plotly_chart(figs.block_diagram(chosen), key=f"dp-block-{net}-{block}")
st.dataframe([{"branch": br.label, "parameters": br.params,
               "share of the block": 100 * br.params / max(chosen.params, 1), "channels out": br.channels}
              for br in chosen.branches],
             column_config={"share of the block": st.column_config.ProgressColumn(format="%.0f%%", min_value=0,
                                                                                   max_value=100)},
             hide_index=True)
