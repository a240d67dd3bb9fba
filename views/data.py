import streamlit as st

from tlcore import plots, uploads
from tlcore.data import DATASETS, class_counts, sample_grid
from tlcore.errors import DatasetError, DownloadRequired
from tlcore.paths import data_dir
from ui import controls, data as ui_data, services, state, widgets

state.start_page()
st.title("Data")
st.markdown("""
A pretrained network brings what it learned on ImageNet; your data decides how much of it to trust.
Two things matter most: **how many images per class** you have (few → little room to fine-tune
without overfitting) and **how similar** they are to ImageNet photos. Use the controls to make the
dataset small or imbalanced and watch what that does to each strategy later.
""")
plan = state.plan()
owner = services.owner()
root = data_dir()
names = sorted((n for n in DATASETS), key=lambda n: (DATASETS[n].source == "folder",
                                                     not DATASETS[n].available_offline(root), n))


def label(n: str) -> str:
    s = DATASETS[n]
    return s.title if s.source == "folder" or s.available_offline(root) else f"{s.title} (needs download)"


def use(upload) -> None:
    widgets.apply(dataset="folder", dataset_path=str(upload.path), dataset_name=upload.name)


def your_images() -> None:
    """Upload a zip, take webcam shots, or pick one of this browser's earlier uploads."""
    earlier = uploads.mine(owner)
    tabs = st.tabs(["Upload a zip", "Webcam"] + (["Your uploads"] if earlier else []))
    with tabs[0]:
        up = st.file_uploader("Zip of class folders (one sub-folder per class, or train/ and val/)", type=["zip"])
        # The uploader hands back the same file on every rerun: keep and select it once only.
        if up is not None and st.session_state.get("last_upload") != up.file_id:
            try:
                use(ui_data.save_upload(up.getvalue(), up.name, owner))
                st.session_state.last_upload = up.file_id
            except DatasetError as e:
                st.error(str(e))
    with tabs[1]:
        cls = st.text_input("Class name for the next shots", value="class_a")
        shot = st.camera_input("Take a photo for this class")
        if shot is not None and cls:
            # The camera keeps showing its last photo on every rerun: save each photo once only.
            try:
                n = ui_data.save_new_shot(shot.getvalue(), cls, owner, st.session_state)
            except DatasetError as e:   # not a photo the checked decoder reads: one line, nothing kept
                st.error(str(e))
                n = False
            if n:
                st.success(f"Saved. Class {cls!r} now has {n} shot(s).")
            elif n is None:
                st.caption("This photo is saved already. Clear it and take another one for the next shot.")
        counts = ui_data.webcam_counts(owner)
        if counts:
            st.write(counts)
            set_name = st.text_input("Name of this set of shots", value="my webcam shots", max_chars=60)
            if st.button("Use my webcam shots as the dataset", disabled=len(counts) < 2):
                uploads.name_webcam_set(owner, set_name)
                use(uploads.resolve(uploads.WEBCAM, owner))
    if earlier:
        with tabs[2]:
            by_ref = {u.reference: u for u in earlier}
            current = uploads.reference_of(plan.dataset_path, owner)
            refs = list(by_ref)
            pick = st.radio("Your datasets (only this browser can see them)", refs,
                            index=refs.index(current) if current in refs else None,
                            format_func=lambda r: by_ref[r].name, key=f"mine-{current}")
            if pick is not None and pick != current:
                use(by_ref[pick])
            manage_uploads(earlier, current)


def manage_uploads(earlier, current) -> None:
    """Take back what you shared, or delete an upload (its file, its share link, its cached images and features)."""
    live = uploads.shares(owner)
    st.caption("Deleting an upload also withdraws its share link and the images and features the server "
               "cached from it; runs trained on it keep their results.")
    for u in earlier:
        c1, c2, c3 = st.columns([3, 2, 1])
        c1.write(f"**{u.name}**" + (" · shared by link" if u.reference in live else ""))
        if u.reference in live and c2.button("Revoke its share link", key=f"revoke-{u.reference}",
                                             help="The link's token opens nothing any more"):
            uploads.revoke(u.reference, owner)
            st.rerun()
        if c3.button("Delete", key=f"delete-{u.reference}", type="secondary"):
            uploads.delete(u.reference, owner)
            if u.reference == current:   # the plan pointed at it: back to the offline default
                widgets.apply(dataset=state.default_plan().dataset, dataset_path="", dataset_name="")
            st.rerun()


if not state.hidden("dataset"):
    spec = controls.Control("dataset", "Dataset", "selectbox", choices=tuple(names),
                            labels={n: label(n) for n in names})
    choice = state.control("dataset", spec=spec)
    st.caption(DATASETS[choice].description + f" Licence: {DATASETS[choice].licence}.")
    if choice != plan.dataset and choice != "folder":
        widgets.apply(dataset=choice, dataset_path="", dataset_name="")
    elif choice == "folder":
        your_images()
        if state.plan().dataset != "folder":
            st.info("**No images yet.** Upload a .zip with one folder of images per class (for example "
                    "`cats/…` and `dogs/…`; or `train/` and `val/` folders that each hold the class folders), "
                    "or take webcam shots of at least two classes. At least two images per class; JPEG, PNG, "
                    "BMP, GIF or WebP.")
            st.stop()

plan = state.plan()
c1, c2, c3 = st.columns(3)
sizing: dict = {}
for name, where in (("per_class", c1), ("imbalance", c2), ("image_size", c3)):
    if not state.hidden(name):
        sizing[name] = state.control(name, where)
widgets.apply(**sizing)
if not state.hidden("image_size"):
    st.caption("Smaller images train much faster on a CPU; the images are stored once at their own size and "
               "scaled on the fly.")
plan = state.plan()
state.share_link_hint()

title = ui_data.dataset_title(plan)
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
