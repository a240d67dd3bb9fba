import pandas as pd
import streamlit as st

from tlcore import advisor
from ui import services, state, widgets

services.owner()
st.title("Strategy guide")
st.markdown("""
Two questions decide how to transfer: **how much data** do you have, and **how similar** is it to
what the network was trained on? With little data, fine-tuning millions of weights overfits, so keep
the pretrained layers frozen. With lots of data you can afford to adjust everything. If the data
looks nothing like ImageNet, the pretrained features help less: with little of it, a simple
classifier may do as well; with plenty, training from scratch becomes an option.
""")
grid = pd.DataFrame(
    {size: {sim: f"{advisor.RULES[(size, sim)][0]}" for sim in ("similar", "different")} for size in ("small", "large")})
grid.index = ["similar to ImageNet", "different from ImageNet"]
grid.columns = [f"small (< {advisor.LARGE_PER_CLASS} images/class)", f"large (≥ {advisor.LARGE_PER_CLASS} images/class)"]
st.table(grid)

plan = state.plan()
data = widgets.data_or_stop(plan)
per_class = len(data.train_y) / data.num_classes
size = advisor.size_of(per_class)
st.subheader(f"Your data: {plan.dataset} — {per_class:,.0f} training images per class → **{size}**")
st.markdown(f"""
**How we estimate similarity.** We take {advisor.PROBE_SAMPLES} training images and fit the same
linear classifier twice, scored by cross-validation: once on the frozen EfficientNet-Lite0 features
(its "CNN codes") and once on the raw pixels. If ImageNet features beat raw pixels by at least
{advisor.CLEAR_GAIN * 100:.0f} points, what the network learned on ImageNet carries over to your images —
that is what "similar" means for transfer. It takes a few seconds.
""")
key = ("similarity", plan.dataset, plan.dataset_path, plan.per_class, plan.imbalance, plan.seed)
if st.button("Estimate similarity"):
    with st.spinner("Probing the frozen network and the raw pixels…"):
        st.session_state[str(key)] = advisor.estimate_similarity(data, seed=plan.seed)
est = st.session_state.get(str(key))
if est is not None:
    c = st.columns(3)
    c[0].metric("Linear probe on CNN codes", f"{est.cnn_accuracy:.3f}")
    c[1].metric("Linear probe on raw pixels", f"{est.pixel_accuracy:.3f}")
    c[2].metric("Verdict", est.verdict)
    strategy, why = advisor.recommend(size, est.verdict)
    st.success(f"Recommended: **{strategy}**. {why}")
    if st.button("Set up this plan", disabled=state.locked()):
        state.set_plan(plan.replace(strategy=strategy, head="linear"))
        st.toast(f"Plan set to {strategy}: open the Train page to run it.")
