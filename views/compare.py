import pandas as pd
import streamlit as st

from tlcore import plots
from ui import services, widgets

services.owner()
st.title("Compare runs")
st.markdown("""
The point of the lab: run the *same data* through different strategies and look at them together.
A frozen feature extractor is usually quickest; fine-tuning can win when there is enough data;
training from scratch shows what the pretrained weights were worth. Runs are kept across reloads
and restarts, so a class can build up a comparison together.
""")
store = services.store()
runs = widgets.runs_mine_first()
if not runs:
    st.info("No runs yet: start some on the Train page.")
    st.stop()
by_id = {r.id: r for r in runs}
finished = [r for r in runs if r.val_acc is not None]  # mine first, then the class's
default = [r.id for r in finished][:4]
chosen = st.multiselect("Runs to compare", list(by_id), default=default, format_func=lambda i: widgets.run_label(by_id[i]))
if not chosen:
    st.stop()
loaded = [store.load(i) for i in chosen]
c1, c2 = st.columns(2)
c1.plotly_chart(plots.loss_curves([widgets.curves(r) for r in loaded]), key="cmp-loss")
c2.plotly_chart(plots.accuracy_curves([widgets.curves(r) for r in loaded]), key="cmp-acc")
rows = store.compare(chosen)
st.dataframe(pd.DataFrame(rows).drop(columns=["id"]).style.format(
    {"val_acc": "{:.3f}", "macro_f1": "{:.3f}", "seconds": "{:.1f}", "trainable_params": "{:,.0f}"}, na_rep="—"),
    hide_index=True)
metric = st.radio("Bar chart of", ["val_acc", "macro_f1", "seconds", "trainable_params"], horizontal=True)
st.plotly_chart(plots.compare_bars(rows, metric), key="cmp-bars")

with st.expander("Delete runs"):
    mine = [i for i in chosen if by_id[i].owner == services.owner()]
    doomed = st.multiselect("Your runs to delete", mine, format_func=lambda i: widgets.run_label(by_id[i]))
    if st.button("Delete selected runs", disabled=not doomed):
        for i in doomed:
            if store.status(i) in ("queued", "running"):
                services.runner().stop(i)
            else:
                store.delete(i)
        st.rerun()
