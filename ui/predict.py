"""The Results page's Export and Predict boxes for the chosen run (tlcore.export does the work)."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from tlcore import export
from tlcore.data.images import BadImage, read_checked
from tlcore.runs import Run

from . import services

TOP_K = 3
MAX_IMAGES = 12


@st.cache_resource(max_entries=2, show_spinner=False)
def _loaded(run_id: str) -> export.Loaded:
    return export.load(services.store(), run_id)


@st.cache_resource(max_entries=2, show_spinner=False)
def _network(run_id: str):
    from tlcore.artifacts import load_network
    return load_network(services.store(), run_id)


def _grad_cam(run: Run, img, name: str, i: int) -> None:
    """Inside the CNN's Grad-CAM for this prediction: where the last convolutional group looked."""
    from tlcore.artifacts import NoNetwork
    from tlcore.device import pick
    from tlcore.inspect import core as insp
    from tlcore.inspect import figures as fig
    from tlcore.models import MODELS
    from tlcore.train.pipeline import Preprocess
    try:
        net, _, classes = _network(run.id)
    except NoNetwork as e:
        st.caption(f"No Grad-CAM: {e}")
        return
    spec = MODELS[run.plan.model]
    prep = Preprocess(img.shape[-1], spec.mean, spec.std, pick("cpu"))
    cam, target, probs = insp.grad_cam(net, prep(img[None]))
    label = classes[target] if target < len(classes) else str(target)
    st.plotly_chart(fig.cam_overlay(img.permute(1, 2, 0).numpy(), cam, f"{name}: {label} ({probs[target]:.0%})"),
                    key=f"predict-cam-{i}")


def export_box(run: Run) -> None:
    st.subheader("Export the trained model")
    reason = export.exportable_reason(run.plan)
    if reason:
        st.info(reason)
        return
    if run.active:
        st.caption("The model can be exported once this run has ended.")
        return
    st.caption(f"The file takes uint8 RGB images of {run.plan.resolved_image_size()} × "
               f"{run.plan.resolved_image_size()} px and returns class probabilities: the normalisation is inside. "
               "Each export is loaded back and checked against this lab's own predictions on validation images "
               "before it is offered; a JSON file names the classes and the plan.")
    c1, c2 = st.columns([1, 3])
    fmt = c1.radio("Format", export.FORMATS, key="export-format", horizontal=True,
                   format_func={"torchscript": "TorchScript", "onnx": "ONNX"}.get)
    done_key = f"export:{run.id}:{fmt}"
    if c2.button(f"Export as {fmt}", key="export-start"):
        with st.spinner("Exporting and checking…"):
            try:
                st.session_state[done_key] = export.export(services.store(), run.id, fmt)
            except (export.ExportError, export.NotExportable) as e:
                st.session_state.pop(done_key, None)
                st.error(f"Export failed: {e}")
    done = st.session_state.get(done_key)
    if done is not None and done.path.exists():
        # An exact match printed as "within 0", which reads as a broken number: say "identical" instead.
        close = ("identical to the lab's" if done.max_difference == 0
                 else f"within {done.max_difference:.1g} of the lab's")
        st.success(f"Checked on {done.checked_on} validation images: probabilities {close}, "
                   f"top class the same on {done.agreement:.0%}.")
        d1, d2 = st.columns(2)
        d1.download_button(f"Download {done.path.name} ({done.path.stat().st_size / 2**20:,.1f} MB)",
                           done.path.read_bytes, file_name=done.path.name, mime="application/octet-stream",
                           on_click="ignore", key=f"download-export-{fmt}")
        d2.download_button(f"Download {done.meta_path.name} (classes and plan)", done.meta_path.read_bytes,
                           file_name=done.meta_path.name, mime="application/json", on_click="ignore",
                           key=f"download-export-meta-{fmt}")


def predict_box(run: Run) -> None:
    st.subheader("Predict on new images")
    reason = export.exportable_reason(run.plan)
    if reason or run.active:
        st.caption("Predicting needs a finished run with a trained network." if not reason else
                   "This run has no network to predict with: " + reason.split(". ", 1)[0].lower() + ".")
        return
    try:
        loaded = _loaded(run.id)
    except export.NotExportable as e:
        st.info(str(e))
        return
    files = st.file_uploader("Images to classify", accept_multiple_files=True, key=f"predict-files-{run.id}",
                             help="JPEG, PNG, WebP, BMP, GIF or TIFF; greyscale, CMYK and 16-bit files are converted")
    shots = []
    if st.toggle("Take a photo with the webcam", key="predict-camera"):
        shot = st.camera_input("Photo", key=f"predict-shot-{run.id}")
        if shot is not None:
            shots.append(shot)
    items = [*(files or []), *shots]
    cam = st.toggle("Show where the network looked (Grad-CAM, as on Inside the CNN)", key="predict-cam") if items else False
    if len(items) > MAX_IMAGES:
        st.warning(f"Showing the first {MAX_IMAGES} of {len(items)} images.")
    for i, f in enumerate(items[:MAX_IMAGES]):
        name = getattr(f, "name", "photo")
        try:
            img = read_checked(f.getvalue(), loaded.size, name)   # the one checked decoder for a person's image
        except BadImage as e:
            st.error(str(e))
            continue
        top = export.predict(loaded, img[None], TOP_K)[0]
        c1, c2 = st.columns([1, 3])
        c1.image(img.permute(1, 2, 0).numpy(), caption=f"{name} as the model sees it", width=120)
        c2.markdown(f"**{top[0][0]}** ({top[0][1]:.0%})")
        c2.dataframe(pd.DataFrame({"class": [c for c, _ in top], "probability": [p for _, p in top]}),
                     hide_index=True, key=f"predict-top-{i}",
                     column_config={"probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0,
                                                                                   format="percent")})
        if cam:
            _grad_cam(run, img, name, i)
