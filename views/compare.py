import pandas as pd
import streamlit as st

from tlcore import plots, runlist
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
    # As in TensorBoard: smoothing for noisy step losses, a log scale for losses that fall by decades.
    o1, o2, o3 = st.columns([2, 1, 2])
    smoothing = o1.slider("Smoothing (step loss)", 0.0, 0.99, 0.0, 0.01, key="cmp_smoothing",
                          help="An exponential moving average of the step losses, as TensorBoard's smoothing: "
                               "0 shows them raw, 0.9 follows the trend. The raw steps stay, fainter, behind.")
    log_y = o2.toggle("Log scale (loss)", key="cmp_log")
    o3.download_button("Download the curves (CSV)", pd.DataFrame(runlist.curves_rows(loaded)).to_csv(index=False),
                       file_name="curves.csv", mime="text/csv", on_click="ignore", key="cmp-curves-csv")
    o3.caption("PNG: the camera icon at the top right of each chart.")
    c1, c2 = st.columns(2)
    c1.plotly_chart(plots.loss_curves([widgets.curves(r) for r in loaded], smoothing, log_y), key="cmp-loss")
    c2.plotly_chart(plots.accuracy_curves([widgets.curves(r) for r in loaded]), key="cmp-acc")
    rows = store.compare(chosen)
    names = {r.id: (widgets.run_title(r), ui_data.dataset_short(r.plan)) for r in loaded}
    settings = {r.id: runlist.plan_columns(r.plan) for r in loaded}
    for row in rows:   # an upload is called by its file name, not "folder"; each run's settings beside it
        row["run"], row["dataset"] = names[row["id"]]
        row.update(settings[row["id"]])
    table = pd.DataFrame(rows).drop(columns=["id"])
    first_cols = ["run", "dataset", "strategy", "lr", "epochs", "schedule", "image_size", "seed"]
    table = table[[*first_cols, *(c for c in table.columns if c not in first_cols)]]
    st.caption("Click a column's header to sort by it.")
    st.dataframe(table.style.format(
        {"val_acc": "{:.3f}", "macro_f1": "{:.3f}", "seconds": "{:.1f}", "trainable_params": "{:,.0f}", "lr": "{:.2g}"},
        na_rep="—"), hide_index=True)
    # Lab runs: the summary rows their kind declares (arms, groups, sources), one table per kind.
    for title, table in ui_results.compare_rows(loaded, names).items():
        st.markdown(f"**{title}**")
        st.dataframe(table.style.format(precision=3, thousands=","), hide_index=True, key=f"cmp-{title}")
    metric = st.radio("Bar chart of", ["val_acc", "macro_f1", "seconds", "trainable_params"], horizontal=True)
    st.plotly_chart(plots.compare_bars(rows, metric), key="cmp-bars")
else:
    st.caption("Pick runs above to compare them.")

with st.expander("Every run of the class, with its settings (sortable)"):
    class_rows = []
    for r in runs:   # the settings from each run's stored plan, without loading its events
        stored = runlist.plan_of(r)
        class_rows.append({**runlist.row(r), **(runlist.plan_columns(stored) if stored is not None else {}),
                           "val_acc": r.val_acc, "macro_f1": r.macro_f1, "seconds": r.seconds})
    st.caption("Numbers sort as numbers: click a column's header, click again to reverse.")
    st.dataframe(pd.DataFrame(class_rows).drop(columns=["lesson"]), hide_index=True, key="cmp-class",
                 column_config={"val_acc": st.column_config.NumberColumn(format="%.3f"),
                                "macro_f1": st.column_config.NumberColumn(format="%.3f"),
                                "seconds": st.column_config.NumberColumn(format="%.1f")})

with st.expander("Delete runs"):
    me = services.owner()
    mine = [r.id for r in runs if r.owner == me]
    doomed = st.multiselect("Your runs to delete", mine, format_func=labels.get,
                            placeholder="Choose any of your runs" if mine else "You have no runs yet")
    st.caption("You can delete only your own runs. A run that is still queued or training is stopped first.")
    if st.button("Delete selected runs", disabled=not doomed):
        st.session_state.compare_notes = widgets.delete_runs(doomed)
        st.rerun()
