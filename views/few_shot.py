import pandas as pd
import streamlit as st

from tlcore.errors import TLCoreError
from tlcore.labs import few_shot as fs
from tlcore.labs import few_shot_figures as figs
from ui import data as ui_data, state, widgets

D = fs.DEFAULTS
K_CHOICES = [1, 2, 3, 5, 10, 20, 50]
BIG_POOL = 200   # images per class drawn from on a large registry set: one short feature pass

state.start_page()
st.title("One-shot and few-shot learning")
st.markdown("""
**The idea (lecture notes).** One-shot learning means learning a new category from a single image, or
from only a few. A network trained from scratch cannot do that. A pretrained one can get a long way,
because its **CNN codes** (the averaged output of its top layer group) already put images that look
alike close together: a new class can be described by where its few examples land.

**What runs.** For each number of labelled images per class, *k*, the lab picks *k* training images of
every class at random, several times over (each pick is a **draw**), and scores four learners on the
same validation images:
- **prototypes**: the average CNN code of each class; a new image goes to the class whose average
  points the same way. Nothing is trained.
- **logistic regression** on the CNN codes.
- **fine-tuning** the network's top layer group with a new head on the *k* images (the lower groups stay
  frozen: their outputs are computed once and reused).
- an **SVM on the raw pixels**, the baseline without any network.

Watch which learner wins with one image per class, which wins with twenty, and how far apart the
draws are: with one image, *which* image you happened to label matters a lot.
""")

base = state.plan()
widgets.data_or_stop(base)
# The pool the k images are drawn from: the Data page's images per class when set, else every training
# image (a large registry set: BIG_POOL a class, to keep the one feature pass short).
pool = base.per_class or (BIG_POOL if base.dataset not in ("digits", "folder") else None)
widgets.seed_controls(fs.KIND, {"fs_ks": D["ks"], "fs_draws": D["draws"], "fs_steps": D["steps"]},
                      lambda p: {"fs_ks": [k for k in p.option("ks", D["ks"]) if k in K_CHOICES] or D["ks"],
                                 "fs_draws": min(int(p.option("draws", D["draws"])), 10),
                                 "fs_steps": min(max(int(p.option("steps", D["steps"])), 10), 100)})
st.caption(f"Data: **{ui_data.dataset_title(base)}** · EfficientNet-Lite0 at {fs.IMAGE_SIZE} px "
           + (f"· drawn from {pool} training images per class " if pool else "")
           + "(change the data on the Data page: digits, your upload or your webcam shots).")
c = st.columns(3)
ks = c[0].multiselect("Images per class (k)", K_CHOICES, key="fs_ks",
                      help="Each k is learned separately from its own draws. A k larger than your smallest class "
                           "is skipped: two webcam shots of a class leave one to learn from and one to test on.")
draws = c[1].slider("Draws per k", 1, 10, key="fs_draws",
                    help="How many times the k images are picked anew: the spread over them is luck.")
steps = c[2].slider("Fine-tuning steps", 10, 100, step=10, key="fs_steps",
                    help="Optimiser steps of the fine-tuned learner, on all k images per class at once.")
try:
    plan = fs.lab_plan(dataset=base.dataset, dataset_path=base.dataset_path, dataset_name=base.dataset_name,
                       seed=base.seed, per_class=pool, ks=sorted(ks), draws=int(draws),
                       steps=int(steps))
except TLCoreError as e:
    st.error(str(e) if ks else "Pick at least one number of images per class.")
    st.stop()
run_id = widgets.queue_button("Learn from k images per class", plan, "fs_runs", type="primary",
                              disabled=state.locked())


def _table(run) -> pd.DataFrame:
    rows = []
    for arm, curve in fs.curves(run.results).items():
        for r in curve:
            rows.append({"learner": fs.TITLES[arm], "k": r["k"], "mean": r["mean"], "sd": r["sd"],
                         "worst draw": r["low"], "best draw": r["high"]})
    return pd.DataFrame(rows)


def draw(run) -> None:
    """The page's own part of the live view: the curve per learner as the ks finish, then what it showed."""
    setup = fs.setup(run.results)
    if setup and setup["skipped"]:
        st.warning(f"Skipped k = {setup['skipped']}: the smallest class has only {setup['smallest_class']} training "
                   f"image{'s' if setup['smallest_class'] != 1 else ''}.")
    n_classes = len(run.started.classes) if run.started else 0
    if not fs.curves(run.results):
        return
    st.plotly_chart(figs.accuracy_vs_k(run.results, 1 / n_classes if n_classes else None), key=f"fs-curve-{run.id}")
    first = min(r["k"] for r in fs.draws(run.results))
    left, right = st.columns([2, 3])
    left.plotly_chart(figs.draws_at(run.results, first), key=f"fs-draws-{run.id}")
    right.dataframe(_table(run).style.format({"mean": "{:.3f}", "sd": "{:.3f}", "worst draw": "{:.3f}",
                                              "best draw": "{:.3f}"}), hide_index=True, key=f"fs-table-{run.id}")
    if run.status == "finished":
        st.subheader("What your run showed")
        for line in fs.findings(run.results, n_classes):
            st.markdown(f"- {line}")


if run_id:
    widgets.live(run_id, draw, what="The few-shot run", stop="Stop")
else:
    st.caption("Press the button: the curve grows one k at a time.")
