import pandas as pd
import streamlit as st

from tlcore import plots
from ui import data as ui_data, results as ui_results, services, state, widgets

state.start_page()
st.title("Compare runs")
st.markdown("""
The point of the lab: run the *same data* through different strategies and look at them together.
A frozen feature extractor is usually quickest; fine-tuning can win when there is enough data;
training from scratch shows what the pretrained weights were worth. Runs are kept across reloads
and restarts, so a class can build up a comparison together.
""")
for done, note in st.session_state.pop("compare_notes", []):   # what the last delete did
    (st.success if done else st.warning)(note)
store = services.store()
runs = widgets.runs_mine_first()
if not runs:
    st.info("No runs yet: start some on the Train page.")
    st.stop()
by_id = {r.id: r for r in runs}
labels = {r.id: widgets.run_label(r) for r in runs}
finished = [r for r in runs if r.val_acc is not None]  # mine first, then the class's
# By default, runs on the same data as your latest finished run: curves on different datasets
# do not compare, so they are overlaid only when someone picks them.
first = widgets.summary_dataset(finished[0]) if finished else None
default = [r.id for r in finished if widgets.summary_dataset(r) == first][:4]
chosen = st.multiselect("Runs to compare", list(by_id), default=default, format_func=labels.get)
if default:
    st.caption(f"Picked by default: your latest runs on **{first}**. Add others to compare more.")
if chosen:
    loaded = [store.load(i) for i in chosen]
    datasets = {ui_data.dataset_short(r.plan): None for r in loaded}
    if len(datasets) > 1:
        st.warning(f"These runs were trained on different datasets ({', '.join(datasets)}): their losses and "
                   "accuracies measure different tasks, so read the curves per dataset, not against each other.")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.loss_curves([widgets.curves(r) for r in loaded]), key="cmp-loss")
    c2.plotly_chart(plots.accuracy_curves([widgets.curves(r) for r in loaded]), key="cmp-acc")
    rows = store.compare(chosen)
    names = {r.id: (widgets.run_title(r), ui_data.dataset_short(r.plan)) for r in loaded}
    for row in rows:   # an upload is called by its file name, not "folder"
        row["run"], row["dataset"] = names[row["id"]]
    st.dataframe(pd.DataFrame(rows).drop(columns=["id"]).style.format(
        {"val_acc": "{:.3f}", "macro_f1": "{:.3f}", "seconds": "{:.1f}", "trainable_params": "{:,.0f}"}, na_rep="—"),
        hide_index=True)
    # Lab runs: the summary rows their kind declares (arms, groups, sources), one table per kind.
    for title, table in ui_results.compare_rows(loaded, names).items():
        st.markdown(f"**{title}**")
        st.dataframe(table.style.format(precision=3, thousands=","), hide_index=True, key=f"cmp-{title}")
    metric = st.radio("Bar chart of", ["val_acc", "macro_f1", "seconds", "trainable_params"], horizontal=True)
    st.plotly_chart(plots.compare_bars(rows, metric), key="cmp-bars")
else:
    st.caption("Pick runs above to compare them.")

with st.expander("Delete runs"):
    me = services.owner()
    mine = [r.id for r in runs if r.owner == me]
    doomed = st.multiselect("Your runs to delete", mine, format_func=labels.get,
                            placeholder="Choose any of your runs" if mine else "You have no runs yet")
    st.caption("You can delete only your own runs. A run that is still queued or training is stopped first.")
    if st.button("Delete selected runs", disabled=not doomed):
        st.session_state.compare_notes = widgets.delete_runs(doomed)
        st.rerun()
