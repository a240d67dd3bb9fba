import pandas as pd
import streamlit as st

from tlcore import plots
from tlcore.artifacts import saves_head_only, whole_network_bytes
from tlcore.metrics import most_confused, report
from ui import predict as ui_predict, results as ui_results, services, state, widgets

state.start_page()
st.title("Results")
st.markdown("""
Accuracy alone hides which classes suffer. **Precision** asks: of the images the model called *cat*,
how many were cats? **Recall** asks: of the real cats, how many did it find? **F1** combines them with
the *harmonic* mean, which stays low unless both are high — the arithmetic mean would let a strong
recall cover for a terrible precision. The gap between the two bars below shows how lopsided each
class is.
""")
store = services.store()
# Every finished run: a training run's confusion matrix below, a lab's declared results (any kind).
runs = [r for r in widgets.runs_mine_first() if r.val_acc is not None or (r.kind != "train" and r.status == "finished")]
if not runs:
    st.info("No finished runs yet: start one on the Train page.")
    st.stop()
ids = [r.id for r in runs]
default = st.session_state.get("run_id")
labels = {r.id: widgets.run_label(r) for r in runs}
chosen = st.selectbox("Run", ids, index=ids.index(default) if default in ids else 0, format_func=labels.get)
run = store.load(chosen, with_steps=False)
last = run.last_epoch
if last is None:   # a lab's run: no confusion matrix, but the results its kind declares
    widgets.lab_results(run)
    st.stop()
classes = run.started.classes
rep = report(last.confusion, classes)

m = st.columns(4)
m[0].metric("Validation accuracy", f"{rep.accuracy:.3f}")
m[1].metric("Macro F1", f"{rep.macro['f1']:.3f}")
m[2].metric("Weighted F1", f"{rep.weighted['f1']:.3f}")
m[3].metric("Validation images", f"{int(rep.support.sum()):,}")
for note in rep.notes:
    st.caption("ℹ️ " + note)

left, right = st.columns(2)
with left:
    normalise = st.toggle("Row-normalised (each true class sums to 1)")
    event = st.plotly_chart(plots.confusion_heatmap(last.confusion, classes, normalise, clickable=True),
                            key=f"cm-{run.id}", on_select="rerun", selection_mode="points")
    st.caption("Click a cell to see the validation images behind it (or pick the classes below).")
with right:
    st.plotly_chart(plots.f1_vs_mean(rep), key="f1mean")

st.subheader("Per class")
table = pd.DataFrame(rep.rows())
table["gap (mean − F1)"] = table["pr_mean"] - table["f1"]
# Redder = a bigger gap between the arithmetic mean and F1 = a more lopsided class.
st.dataframe(table.style.format(precision=3).map(lambda v: f"background-color: rgba(235, 87, 87, {min(max(v, 0) * 3, 1):.2f})",
                                                 subset=["gap (mean − F1)"]), hide_index=True)
st.dataframe(pd.DataFrame(rep.averages()).T.style.format(precision=3), key="averages")
pairs = most_confused(last.confusion, classes, k=5)
if pairs:
    st.markdown("**Most confused pairs:** " + "; ".join(f"{t} → {p} ({n})" for t, p, n in pairs))

st.subheader("Images behind a cell")
clicked = plots.cell_from_selection(ui_results.selected_points(event), classes)
if clicked is not None:
    t_sel, p_sel = clicked
else:
    first = pairs[0] if pairs else (classes[0], classes[0], 0)
    t_sel, p_sel = classes.index(first[0]), classes.index(first[1])
c1, c2 = st.columns(2)
t = c1.selectbox("True class", range(len(classes)), index=t_sel, format_func=lambda i: classes[i])
p = c2.selectbox("Predicted class", range(len(classes)), index=p_sel, format_func=lambda i: classes[i])
preds = ui_results.predictions(store, run)
if preds is None:
    st.info(ui_results.no_predictions_reason(run))
else:
    try:
        images, conf = ui_results.cell_images(run, preds, t, p, owner=services.owner())
    except ui_results.ImagesUnavailable as e:
        st.info(str(e))
    else:
        if len(images):
            caps = [f"{classes[t]}→{classes[p]} {c:.0%}" for c in conf.tolist()]
            st.plotly_chart(plots.image_grid(images.numpy(), [p] * len(images), classes, cols=8, captions=caps),
                            key="cell-images")
        else:
            st.caption(f"No validation image of class {classes[t]} was predicted as {classes[p]}.")

d1, d2 = st.columns(2)
d1.download_button("Download metrics (CSV)", ui_results.metrics_csv(rep), file_name=f"{run.id}-metrics.csv",
                   mime="text/csv", on_click="ignore")
model_file = ui_results.model_file(store, run)
if model_file is not None:
    # A callable: the file is read only when someone clicks, not on every rerun (VGG is over 500 MB).
    # on_click="ignore": a click that also reran the page would replace the file's one-time link
    # while the browser was still fetching it ("Deferred file not found": nothing downloaded).
    mb = model_file.stat().st_size / 2**20
    if saves_head_only(store, run.id):
        # The backbone never trained, so the run kept only its head: say so, and offer the whole network.
        d2.download_button(f"Download the trained head only (.pt, {mb:,.2f} MB)", model_file.read_bytes,
                           file_name=f"{run.id}-head.pt", mime="application/octet-stream", on_click="ignore",
                           key="download-model",
                           help="This run trained the head alone: its backbone is the published pretrained one, "
                                "unchanged, so the file keeps only the head's weights.")
        d2.download_button("Download the whole network (.pt: pretrained backbone + this head)",
                           lambda: whole_network_bytes(store, run.id), file_name=f"{run.id}-model.pt",
                           mime="application/octet-stream", on_click="ignore", key="download-network")
    else:
        d2.download_button(f"Download the trained model (.pt, {mb:,.1f} MB)", model_file.read_bytes,
                           file_name=f"{run.id}-model.pt", mime="application/octet-stream", on_click="ignore",
                           key="download-model")
else:
    d2.caption(ui_results.no_model_reason(run))

# --- export and predict ---------------------------------------------------------------------------
ui_predict.export_box(run)
ui_predict.predict_box(run)
