import numpy as np
import streamlit as st
import torch

from tlcore import inspect as insp, runlist
from tlcore.artifacts import NoNetwork, load_network
from tlcore.inspect import figures as fig
from tlcore.models import MODELS, build_network
from tlcore.train.pipeline import Preprocess
from tlcore.device import pick
from tlcore.errors import TLCoreError
from ui import data as ui_data, results as ui_results, services, state, widgets

state.start_page()
st.title("Inside the CNN")
st.markdown("""
What does a pretrained network actually compute, and what does fine-tuning change? This page opens it
up: the first layer's filters, what each layer group responds to in one image, how the validation
images sit in the network's feature space, and where a trained model looks when it decides.
""")

plan = state.plan()
data = widgets.data_or_stop(plan)
CODES_MAX = 300   # validation images on the CNN-codes map: enough to see clusters, fast enough for t-SNE


@st.cache_resource(max_entries=4)
def pretrained(model: str, n_classes: int):
    return build_network(model, n_classes, pretrained=True).eval()


@st.cache_resource(max_entries=4)
def trained(run_id: str):
    return load_network(services.store(), run_id)


def _prep(model: str, size: int) -> Preprocess:
    spec = MODELS[model]
    return Preprocess(size, spec.mean, spec.std, pick("cpu"))


# A trained run of the current model (a network the engine saved) to compare against, trained on this
# dataset: a digits run asked about an ant photo answers "9" with a flat map, which explains nothing.
trained_runs = [s for s in widgets.runs_mine_first() if s.kind == "train" and s.status == "finished"
                and s.model == plan.model and s.strategy != "pixel_svm"]
candidates = [s for s in trained_runs if runlist.same_dataset(s, plan)]
elsewhere = sorted({widgets.summary_dataset(s) for s in trained_runs if not runlist.same_dataset(s, plan)})
if elsewhere:
    st.caption(f"Only runs trained on {ui_data.dataset_title(plan)} are offered: a network trained on other "
               f"data ({', '.join(elsewhere[:4])}{'…' if len(elsewhere) > 4 else ''}) knows none of these classes. "
               "Pick that dataset on the Data page to look inside those runs.")
labels = {s.id: widgets.run_label(s) for s in candidates}
choice = st.selectbox("A trained run to compare with the pretrained network", [None, *labels],
                      format_func=lambda r: "none: the pretrained network only" if r is None else labels[r])
run_net = run_plan = run_classes = None
if choice is not None:
    try:
        run_net, run_plan, run_classes = trained(choice)
    except NoNetwork as e:
        st.info(f"{e}. Pick a run whose head is a network layer (linear or mlp).")
try:
    base = pretrained(plan.model, data.num_classes)
except TLCoreError as e:   # weights not downloaded on an offline host, say so and stop
    st.error(str(e))
    st.stop()
size = plan.resolved_image_size()
prep = _prep(plan.model, size)

tab_f, tab_a, tab_c, tab_g = st.tabs(["Filters", "Activations", "CNN codes", "Grad-CAM"])
with tab_f:
    st.markdown("The first convolution's kernels, shown as tiny RGB images: pretrained networks learn edge "
                "detectors at several angles and colour-contrast blobs here, whatever the task.")
    cols = st.columns(2 if run_net is not None else 1)
    cols[0].plotly_chart(fig.filter_grid(insp.filters(base).numpy(), "Pretrained (ImageNet)"), key="f-pre")
    if run_net is not None:
        cols[1].plotly_chart(fig.filter_grid(insp.filters(run_net).numpy(), "After this run"), key="f-run")
        change = insp.filter_change(base, run_net).numpy()
        if float(change.max()) == 0:
            st.caption("This run never trained the first layer (its frozen groups kept the pretrained weights), so "
                       "the filters are identical.")
        else:
            st.plotly_chart(fig.filter_change_bars(change), key="f-change")

with tab_a:
    st.markdown("Pick an image: each row is one layer group, showing the channels that respond most. Low "
                "groups light up on edges and strokes; higher ones on larger parts, at coarser resolution.")
    source = st.radio("Image", ["from the validation set", "upload one", "take one with the webcam"],
                      horizontal=True)
    img = None
    if source == "from the validation set":
        i = st.slider("Validation image", 0, len(data.val_y) - 1, 0)
        img = data.val_x[i:i + 1]
        st.caption(f"class: {data.classes[int(data.val_y[i])]}")
    else:
        f = st.file_uploader("An image", type=["png", "jpg", "jpeg"]) if source == "upload one" else \
            st.camera_input("A photo")
        if f is not None:
            from tlcore.data.images import BadImage, read_checked
            try:   # the one checked decoder for a person's image: caps read from its header, one line if bad
                img = read_checked(f.getvalue(), size, getattr(f, "name", None) or "the photo")[None]
            except BadImage as e:
                st.error(str(e))
    if img is not None:
        st.session_state["inside_image"] = img
        maps = insp.activations(run_net if run_net is not None else base, prep(img), top=8)
        st.plotly_chart(fig.activation_grid(maps), key="acts")


@st.cache_data(max_entries=8, show_spinner="Computing the CNN codes…")
def codes_xy(key: str, method: str, _net, _images) -> np.ndarray:
    return insp.embed_2d(insp.cnn_codes(_net, _images, prep), method)


with tab_c:
    st.markdown("Every validation image's pooled output of the backbone (its \"CNN code\"), squashed to two "
                "dimensions. Classes that form separate clouds are easy for a linear head; fine-tuning should "
                "pull them further apart.")
    method = st.radio("Map", ["pca", "tsne"], format_func={"pca": "PCA", "tsne": "t-SNE"}.get, horizontal=True)
    n = min(CODES_MAX, len(data.val_y))
    images, labels_y = data.val_x[:n], data.val_y[:n].numpy()
    st.caption("Hover a point for its class; click one to see its image.")
    cols = st.columns(2 if run_net is not None else 1)
    xy = codes_xy(f"pre|{plan.model}|{data.fingerprint}|{size}|{n}", method, base, images)
    picked = ui_results.selected_points(cols[0].plotly_chart(
        fig.codes_map(xy, labels_y, tuple(data.classes), "Pretrained backbone"), key="c-pre",
        on_select="rerun", selection_mode="points"))
    if run_net is not None:
        xy = codes_xy(f"{choice}|{data.fingerprint}|{size}|{n}", method, run_net, images)
        picked += ui_results.selected_points(cols[1].plotly_chart(
            fig.codes_map(xy, labels_y, tuple(data.classes), "This run's backbone"), key="c-run",
            on_select="rerun", selection_mode="points"))
    present = [c for c in range(data.num_classes) if (labels_y == c).any()]

    def image_of(point: dict) -> int | None:
        if point.get("customdata") is not None:
            cd = point["customdata"]
            return int(cd[0] if isinstance(cd, (list, tuple)) else cd)
        curve, idx = point.get("curve_number"), point.get("point_index")
        if curve is None or idx is None or curve >= len(present):
            return None
        return int(np.nonzero(labels_y == present[curve])[0][idx])
    shown_ids = [i for i in (image_of(p) for p in picked) if i is not None][:8]
    if shown_ids:
        st.image([images[i].permute(1, 2, 0).numpy() for i in shown_ids], width=96,
                 caption=[f"{data.classes[int(labels_y[i])]} · image {i}" for i in shown_ids])

with tab_g:
    st.markdown("Grad-CAM: how much each channel of the last convolutional group pushes the predicted class "
                "up (the gradient, averaged over the map), summed over channels into one heat map. Red is "
                "where the network looked.")
    img = st.session_state.get("inside_image")
    if run_net is None:
        st.info("Pick a trained run above: Grad-CAM explains a trained model's prediction.")
    elif img is None:
        st.info("Pick an image on the Activations tab first.")
    else:
        cam, target, probs = insp.grad_cam(run_net, prep(img))
        shown = img[0]
        if shown.shape[-1] != size:
            shown = torch.nn.functional.interpolate(img.float(), size=(size, size), mode="bilinear")[0].byte()
        name = run_classes[target] if run_classes else str(target)
        known = ", ".join(map(str, run_classes[:10])) + ("…" if len(run_classes) > 10 else "") if run_classes else ""
        st.caption(f"The run was trained on {ui_data.dataset_title(run_plan)}: it answers with one of its own "
                   f"classes ({known}), whatever the image shows.")
        st.plotly_chart(fig.cam_overlay(shown.permute(1, 2, 0).numpy(), cam,
                                        f"predicted {name} ({probs[target]:.0%})"), key="cam")
