import streamlit as st

from tlcore.data import DATASETS
from tlcore.device import describe
from tlcore.models import MODELS, weights_status
from tlcore.paths import data_dir
from ui import state

state.start_page()
st.title("Transfer Learning Lab")
st.markdown("""
Training a deep network from nothing needs a huge labelled dataset, expensive hardware and a lot of
time. **Transfer learning** side-steps that: take a network that already learned to see on a big
dataset (ImageNet: 1.2 million photos, 1,000 classes), keep what it learned, and adapt it to your task.

How much to keep is the whole question. You can freeze the pretrained layers and only train a new
head on top (a *fixed feature extractor*), fine-tune some or all of the layers, or unfreeze them
gradually from the top. This lab lets you run each of those choices on real data and see what happens.
""")

st.subheader("The path through the lab")
st.markdown("""
1. **Data** — pick a dataset (or upload your own images), see samples and class counts, make it small or imbalanced.
2. **Model** — pick a pretrained CNN and see its layer groups.
3. **Train** — choose what to freeze and how to schedule the learning rate; watch loss, accuracy and the confusion matrix live.
4. **Results** — precision, recall, F1 per class and the images the model got wrong.
5. **Compare** — put frozen, fine-tuned, gradually unfrozen and from-scratch runs side by side.

Or all of it on one screen: the **Webcam classifier** — show your camera a few classes, train, and watch it name what it sees live.
""")
st.markdown("Then the **labs**, each answering one question from the lecture notes:")
# One link per lab page of app.py's "Labs" section (tests/test_nav.py keeps the two lists in step).
LABS = [
    ("views/where_to_transfer.py", "Where to transfer", "which layer group's features serve your task best"),
    ("views/inside.py", "Inside the CNN", "filters, activation maps and Grad-CAM: what a layer responds to"),
    ("views/domain_adaptation.py", "Domain adaptation", "training on one domain for another, by gradient reversal"),
    ("views/negative_transfer.py", "Negative transfer", "when a pretrained start does worse than none"),
    ("views/multitask.py", "Multi-task lab", "two tasks sharing one trunk, one of them with few labels"),
    ("views/forgetting.py", "Forgetting", "what fine-tuning makes a network forget, and how to keep it"),
    ("views/few_shot.py", "Few-shot", "learning a class from one image, or a few"),
    ("views/zero_shot.py", "Zero-shot", "recognising classes never seen, from a description"),
    ("views/depth.py", "Why depth was hard", "vanishing gradients, and what ResNet's shortcuts changed"),
]
for path, title, question in LABS:
    st.page_link(path, label=f"{title}: {question}", icon=":material/science:")
st.markdown("""
And two guides: the **Metrics lab** (why F1 uses the harmonic mean) and the **Strategy guide** (where
your dataset sits on the size × similarity grid, and what to try first).
""")

c1, c2 = st.columns(2)
c1.metric("Device for training", describe())
root = data_dir()
offline_data = [s.title for s in DATASETS.values() if s.source != "folder" and s.available_offline(root)]
offline_models = [MODELS[n].title for n in MODELS if weights_status(n) != "needs download"]
c2.metric("Ready offline", f"{len(offline_data)} dataset{'s' * (len(offline_data) != 1)} · "
                           f"{len(offline_models)} model{'s' * (len(offline_models) != 1)}")
with st.expander("What works without a network connection"):
    st.write("Datasets:", ", ".join(offline_data) + ", and your own images.")
    st.write("Models:", ", ".join(offline_models) + ".")
    st.caption("Everything else downloads on first use through torchvision into its usual cache; "
               "offline, the lab says which file is missing instead.")
st.page_link("views/data.py", label="Start with the data →", icon=":material/image:")
