import streamlit as st

from tlcore import advisor, plots
from ui import data as ui_data, services, state, widgets

state.start_page()
st.title("Strategy guide")
st.markdown("""
Two questions decide how to transfer: **how much data** do you have, and **how similar** is it to
what the network was trained on? With little data, fine-tuning millions of weights overfits, so keep
the pretrained layers frozen. With lots of data you can afford to adjust everything. If the data
looks nothing like ImageNet, the pretrained features help less: with little of it, a simple
classifier may do as well; with plenty, training from scratch becomes an option.
""")
SIZE_TITLES = [f"small data (< {advisor.LARGE_PER_CLASS} images/class)",
               f"large data (≥ {advisor.LARGE_PER_CLASS} images/class)"]
grid_slot = st.empty()   # the grid, drawn again once we know where your data sits
grid_slot.plotly_chart(plots.strategy_grid(advisor.RULES, size_titles=SIZE_TITLES), key="grid-empty")

plan = state.plan()
data = widgets.data_or_stop(plan)
per_class = len(data.train_y) / data.num_classes
size = advisor.size_of(per_class)
samples = min(advisor.PROBE_SAMPLES, len(data.train_y))   # the probe's own sample, said as it is
taken = (f"all {samples:,} training images" if samples == len(data.train_y)
         else f"{samples:,} of the {len(data.train_y):,} training images")
st.subheader(f"Your data: {ui_data.dataset_title(plan)} — {per_class:,.0f} training images per class → **{size}**")
st.markdown(f"""
**How we estimate similarity.** We take {taken} and fit the same
linear classifier twice, scored by cross-validation: once on the frozen EfficientNet-Lite0 features
(its "CNN codes") and once on the raw pixels. If ImageNet features beat raw pixels by at least
{advisor.CLEAR_GAIN * 100:.0f} points, what the network learned on ImageNet carries over to your images —
that is what "similar" means for transfer. The estimate is a run of its own, queued like any other: a few seconds on a 2-core CPU at the default size (about 2 s in our try on a 2-core AMD EPYC, Zen 5), seconds on a GPU.
""")
# The probe is a run of its own kind: it waits its turn in the job queue, under the host's limits,
# like every run, instead of computing in this page's thread.
probe_plan = plan.replace(kind="similarity", strategy="feature_extractor", head="linear")
run_id = widgets.queue_button("Estimate similarity", probe_plan, "similarity_runs")


if run_id:
    widgets.live(run_id, what="The similarity probe")   # the grid and the verdict below come from the finished run
done = services.store().load(run_id, with_steps=False) if run_id else None
est = advisor.SimilarityEstimate.from_values(done.results[0].values) if done and done.results else None
grid_slot.plotly_chart(plots.strategy_grid(advisor.RULES, size, est.verdict if est is not None else None,
                                           size_titles=SIZE_TITLES), key="grid")
if est is None:
    st.caption(f"Your data is **{size}**, so it sits in the outlined column; estimate the similarity to "
               "find its row.")
else:
    c = st.columns(3)
    c[0].metric("Linear probe on CNN codes", f"{est.cnn_accuracy:.3f}")
    c[1].metric("Linear probe on raw pixels", f"{est.pixel_accuracy:.3f}")
    c[2].metric("Verdict", est.verdict)
    strategy, why = advisor.recommend(size, est.verdict)
    st.success(f"Recommended: **{strategy}**. {why}")
    if st.button("Set up this plan", disabled=state.locked()):
        state.set_plan(plan.replace(strategy=strategy, head="linear"))
        st.toast(f"Plan set to {strategy}: open the Train page to run it.")
# The "small data, very different" cell is where a source is most likely to hurt (issue 13).
st.page_link("views/negative_transfer.py", icon=":material/trending_down:",
             label="Small and very different data is where transfer most often hurts: measure it in the "
                   "Negative transfer lab")
