import streamlit as st

from tlcore import downloads, plots
from tlcore.errors import DownloadRequired
from tlcore.models import MODELS, download_weights, model_card, weights_status
from tlcore.train.strategies import lowest_trained, toggle_group
from ui import controls, state, widgets

state.start_page()
st.title("Model")
st.markdown("""
A CNN is a stack of layers. The bottom ones detect edges and colour blobs, which are useful for
almost any image; the top ones respond to ImageNet's own classes (dog breeds, cars, cups). We cut
each network into **layer groups** — the stem, then its stages — and decide group by group what to
freeze and what to train. The last layer is always replaced by a new **head** for your classes.
""")
plan = state.plan()
STATUS = {"bundled": "available offline (shipped)", "cached": "downloaded", "needs download": "needs a download"}
WEIGHTS = {"bundled": "Offline", "cached": "Downloaded", "needs download": "Download first"}
names = list(MODELS)
if not state.hidden("model"):
    spec = controls.Control("model", "Pretrained CNN", "selectbox", choices=tuple(names),
                            labels={n: f"{MODELS[n].title} — {STATUS[weights_status(n)]}" for n in names})
    widgets.apply(model=state.control("model", spec=spec))
plan = state.plan()
card = model_card(plan.model)
# Two rows of three: in one row of six, long values such as the weights' status were cut off.
c = [*st.columns(3), *st.columns(3)]
c[0].metric("Parameters", f"{card['params'] / 1e6:.1f} M")
c[1].metric("Depth (conv + linear layers)", card["depth"])
c[2].metric("ImageNet top-1", f"{card['top1']:.1f} %" if card["top1"] else "—")
c[3].metric("Input size", f"{card['input_size']} px")
c[4].metric("File size", f"{card['size_mb']:.0f} MB" if card["size_mb"] else "—")
c[5].metric("Weights", WEIGHTS[card["status"]], help=STATUS[card["status"]].capitalize())
if card["status"] == "needs download":
    st.warning(f"Training with this model first downloads its weights from {card['source']} "
               "(into torch's usual cache). Offline, pick EfficientNet-Lite0.")
    if st.button(f"Download the weights now ({card['size_mb']:.0f} MB)" if card["size_mb"] else "Download the weights now"):
        bar = st.empty()
        try:
            with downloads.reporting(lambda done, total: widgets.download_bar(bar, f"Downloading {card['title']}",
                                                                              done, total)):
                download_weights(plan.model)
            st.rerun()   # the card now says "downloaded"
        except DownloadRequired as e:
            bar.empty()
            st.error(str(e))

left, right = st.columns([2, 3])
with right:
    # The same control as on the Train page, writing the same plan: the stack follows it.
    widgets.apply(**widgets.strategy_controls(plan))
    plan = state.plan()
    st.markdown(f"**Strategy now:** {widgets.STRATEGY_LABELS[plan.strategy]} (the Train page has the same choice, "
                "plus the head, epochs and learning rates).")
    st.markdown("""
- **frozen** — weights stay exactly as ImageNet left them; computed once and cached.
- **trained** — updated from the first epoch.
- **unfrozen later** — gradual unfreezing opens one more group from the top each epoch.
- **not used** — the SVM baseline works on raw pixels, without the network.
- **removed** — dropped with "Keep the layer groups up to": the head then sits on that group's pooled
  output, as the lecture notes advise for a small dataset that looks nothing like ImageNet (its higher
  groups hold ImageNet-specific features that do not carry over).
""")
    st.caption("Random-init (train from scratch) uses the same architecture with random weights: "
               "choose the *scratch* strategy above.")
def _switched(index: int) -> None:
    """A group's switch changed: the plan's strategy follows (before this rerun draws anything)."""
    # set_plan, not update: the strategy control must see a change from elsewhere and follow it.
    state.set_plan(state.plan().replace(**toggle_group(state.plan(), index, st.session_state[f"train_group.{index}"])))


with left:
    names_, states = widgets.group_states(plan)
    st.plotly_chart(plots.layer_stack(names_, states), key="stack")
    if plan.strategy in ("feature_extractor", "fine_tune_top", "fine_tune_all") and not state.hidden("strategy"):
        st.markdown("**Train this group?** Keras's `layer.trainable`, one switch per group. Transfer learning "
                    "trains a top block: switching a group on trains every group above it too; switching it off "
                    "freezes every group below it.")
        kept, low = plan.kept_groups, lowest_trained(plan)
        for i in reversed(range(len(kept))):
            st.session_state[f"train_group.{i}"] = low is not None and i >= low   # from the plan, every run
            st.toggle(kept[i], key=f"train_group.{i}", on_change=_switched, args=(i,), disabled=state.locked())
    elif plan.strategy == "gradual_unfreeze":
        st.caption("Gradual unfreezing switches the groups on itself, one more from the top each epoch.")
st.page_link("views/train.py", label="Next: train →", icon=":material/model_training:")
