import streamlit as st

from tlcore import plots
from tlcore.data import DATASETS, class_counts, sample_grid
from tlcore.errors import DatasetError, DownloadRequired
from tlcore.paths import data_dir
from ui import data as ui_data, services, state, widgets

state.start_page()
st.title("Data")
st.markdown("""
A pretrained network brings what it learned on ImageNet; your data decides how much of it to trust.
Two things matter most: **how many images per class** you have (few → little room to fine-tune
without overfitting) and **how similar** they are to ImageNet photos. Use the controls to make the
dataset small or imbalanced and watch what that does to each strategy later.
""")
plan = state.plan()
root = data_dir()
names = sorted((n for n in DATASETS), key=lambda n: (DATASETS[n].source == "folder",
                                                     not DATASETS[n].available_offline(root), n))


def label(n: str) -> str:
    s = DATASETS[n]
    return s.title if s.source == "folder" or s.available_offline(root) else f"{s.title} (needs download)"


if not state.hidden("dataset"):
    choice = st.selectbox("Dataset", names, index=names.index(plan.dataset), format_func=label,
                          disabled=state.locked())
    st.caption(DATASETS[choice].description + f" Licence: {DATASETS[choice].licence}.")
    if choice != plan.dataset and choice != "folder":
        widgets.apply(dataset=choice, dataset_path="")
    elif choice == "folder":
        tab_zip, tab_cam = st.tabs(["Upload a zip", "Webcam"])
        with tab_zip:
            up = st.file_uploader("Zip of class folders (one sub-folder per class, or train/ and val/)", type=["zip"])
            if up is not None:
                try:
                    path = ui_data.save_upload(up.getvalue(), up.name, services.owner())
                    widgets.apply(dataset="folder", dataset_path=str(path))
                except DatasetError as e:
                    st.error(str(e))
        with tab_cam:
            cls = st.text_input("Class name for the next shots", value="class_a")
            shot = st.camera_input("Take a photo for this class")
            if shot is not None and cls:
                # The camera keeps showing its last photo on every rerun: save each photo once only.
                n = ui_data.save_new_shot(shot.getvalue(), cls, services.owner(), st.session_state)
                if n is not None:
                    st.success(f"Saved. Class {cls!r} now has {n} shot(s).")
                else:
                    st.caption("This photo is saved already. Clear it and take another one for the next shot.")
            counts = ui_data.webcam_counts(services.owner())
            if counts:
                st.write(counts)
                if st.button("Use my webcam shots as the dataset", disabled=len(counts) < 2):
                    widgets.apply(dataset="folder", dataset_path=str(ui_data.webcam_dir(services.owner())))

plan = state.plan()
c1, c2, c3 = st.columns(3)
sizing: dict = {}
if not state.hidden("per_class"):
    per = c1.number_input("Images per class for training (0 = all)", min_value=0, max_value=10000,
                          value=plan.per_class or 0, step=10, disabled=state.locked())
    sizing["per_class"] = per or None
if not state.hidden("imbalance"):
    sizing["imbalance"] = float(c2.slider("Class imbalance (largest ÷ smallest class)", 1.0, 20.0,
                                          float(plan.imbalance), 0.5, disabled=state.locked()))
if not state.hidden("image_size"):
    sizes = [0, 32, 64, 96, 128, 160, 224]
    sizing["image_size"] = int(c3.selectbox("Image size fed to the model (px)", sizes,
                                            index=sizes.index(plan.image_size) if plan.image_size in sizes else 0,
                                            format_func=lambda s: "model default" if s == 0 else f"{s} px",
                                            disabled=state.locked()))
widgets.apply(**sizing)
if not state.hidden("image_size"):
    st.caption("Smaller images train much faster on a CPU; the images are stored once at their own size and "
               "scaled on the fly.")
plan = state.plan()
state.share_link_hint()

if plan.dataset == "folder" and not plan.dataset_path:
    st.info("Upload a zip or take webcam shots to use your own images.")
    st.stop()
title = DATASETS[plan.dataset].title
try:
    with st.status(f"Loading {title}…", expanded=True) as status:
        bar = st.empty()   # filled only while a first use downloads the dataset
        data = ui_data.load(plan, lambda done, total: widgets.download_bar(bar, f"Downloading {title}", done, total))
        bar.empty()
        status.update(label=f"{title}: {len(data.train_y):,} training and {len(data.val_y):,} validation images",
                      state="complete", expanded=False)
except (DownloadRequired, DatasetError) as e:
    st.error(str(e))
    st.stop()

if data.notes:
    st.warning("While reading your images: " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in data.notes.items()))
st.session_state.data_summary = {"dataset": plan.dataset, "train": len(data.train_y),
                                 "classes": data.num_classes}
left, right = st.columns([3, 2])
with left:
    imgs, labels = sample_grid(data, per_class=min(6, max(1, 48 // data.num_classes)), seed=plan.seed)
    st.plotly_chart(plots.image_grid(imgs.numpy(), labels.tolist(), data.classes, cols=8), key="grid")
with right:
    st.plotly_chart(plots.class_counts_bar(class_counts(data.train_y, data.num_classes), data.classes), key="counts")
st.page_link("views/model.py", label="Next: choose a model →", icon=":material/layers:")
