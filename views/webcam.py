import re

import streamlit as st

from tlcore import export, uploads
from tlcore.data.images import BadImage, read_checked
from tlcore.errors import TLCoreError
from tlcore.runs import RunNotFound
from tlcore.train.plan import Plan, default_image_size
from ui import services, state, webcam, widgets

state.start_page()
st.title("Webcam classifier")
st.markdown("""
The whole idea of transfer learning on one screen. Name a few classes, show each one to your camera
for a couple of seconds, and train: a network pretrained on ImageNet already turns every frame into
a useful description (its "CNN code"), so only a small new head has to learn your classes, from a
few dozen frames, in seconds. Then the camera keeps running and the network names what it sees.
""")
owner = services.owner()
SHOTS = 10        # frames per click of a class's record button
MIN_SHOTS = 4     # per class before training: the folder dataset keeps some of each class for validation
EPOCHS = 5

text = st.text_input("Your classes, separated by commas", value="hand up, hand down", max_chars=200, key="wc_classes")
classes = list(dict.fromkeys(c.strip() for c in text.split(",") if c.strip()))[:6]
bad = [c for c in classes if not re.fullmatch(r"[A-Za-z0-9 _-]{1,40}", c)]
if bad:   # a class is a folder of shots: letters, digits, spaces, _ and - keep its name as typed
    st.error(f"Class names take letters, digits, spaces, _ and - only (up to 40): not {', '.join(bad)}.")
    st.stop()
if len(classes) < 2:
    st.info("Name at least two classes, e.g. `hand up, hand down`.")
    st.stop()
camera_box = st.container()

# --- 2. train: a frozen pretrained backbone and a new head on the frames -------------------------------
st.subheader("2. Train")
counts = uploads.webcam_counts(owner)
shots = {c: counts.get(c, 0) for c in classes}
cols = st.columns(len(classes))
for col, c in zip(cols, classes):
    col.metric(c, f"{shots[c]} frame{'s' * (shots[c] != 1)}")
others = sorted(set(counts) - set(classes))
if others:
    st.caption(f"Your webcam set also holds {', '.join(others)} (from earlier shots): those train as classes too. "
               "The Data page lists your webcam set.")
ready = all(n >= MIN_SHOTS for n in shots.values())
run_id = None
if counts:
    u = uploads.resolve(uploads.WEBCAM, owner)
    plan = Plan(dataset="folder", dataset_path=str(u.path), dataset_name=u.name, strategy="feature_extractor",
                image_size=default_image_size(), epochs=EPOCHS)
    run_id = widgets.queue_button("Train on these frames", plan, "webcam_runs", type="primary", disabled=not ready)
if not ready:
    st.caption(f"Record at least {MIN_SHOTS} frames of every class first.")
if run_id:
    widgets.live(run_id, lambda run: st.caption(
        f"Validation accuracy {run.last_epoch.val_acc:.0%} on the frames it did not train on."
        if run.last_epoch else ""), what="Training", stop="Stop")


def finished(run_id: str | None) -> bool:
    try:
        return bool(run_id) and services.store().status(run_id) == "finished"
    except RunNotFound:
        return False


@st.cache_resource(max_entries=4, show_spinner="Loading the trained network…")
def trained(run_id: str) -> export.Loaded:
    return export.load(services.store(), run_id)


# --- 1 and 3: the camera, recording each class and then predicting live ---------------------------------
@st.fragment
def camera(run_id: str | None) -> None:
    # Each frame reruns this fragment on the server: a switch to pause it (it starts on).
    predicting = finished(run_id) and st.toggle("Predict live", value=True, key="wc_live")
    st.subheader("1. Show each class to the camera" + (" · 3. Live prediction" if predicting else ""))
    left, right = st.columns(2)
    got = webcam.sent("wc_camera")   # handled before the camera is drawn: it then asks for the next frame
    fresh = got is not None and got["seq"] > st.session_state.get("wc_ack", 0)
    if fresh:
        st.session_state.wc_ack = got["seq"]
    with left:
        webcam.camera(classes, count=SHOTS, predict=predicting, ack=st.session_state.get("wc_ack", 0),
                      key="wc_camera")
    with right:
        if fresh and got["kind"] == "error":
            st.error(f"The browser gave no camera ({got['error']}). Allow this page to use it and reload.")
        if fresh and got["kind"] == "shots":
            try:
                for jpeg in got["frames"]:
                    uploads.save_shot(owner, got["label"], jpeg)
            except BadImage as e:
                st.warning(str(e))
            st.rerun()   # the whole page: the counts and the Train button follow
        if not predicting:
            st.caption("Press a class's button while you show that class; record each class a few times, "
                       "from slightly different angles and distances.")
            return
        loaded = trained(run_id)
        last = st.session_state.get("wc_prediction")
        if fresh and got["kind"] == "frame":
            try:
                image = read_checked(got["frame"], loaded.size, "the webcam frame")
            except (BadImage, TLCoreError) as e:
                st.warning(str(e))
                return
            top = export.predict(loaded, image[None], k=len(loaded.classes))[0]
            last = st.session_state.wc_prediction = {"top": top, "n": (last or {}).get("n", 0) + 1}
        if last is None:
            st.caption("Waiting for the first frame…")
            return
        name, p = last["top"][0]
        st.metric("The network sees", f"{name} ({p:.0%})")
        for label, prob in last["top"]:
            st.progress(prob, text=f"{label}: {prob:.0%}")
        st.caption(f"Frame {last['n']} predicted live, one after another, by the run's network.")


with camera_box:
    camera(run_id if finished(run_id) else None)
