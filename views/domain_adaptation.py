import streamlit as st

from tlcore.errors import TLCoreError
from tlcore.labs import dann, dann_figures
from tlcore.models import MODELS
from ui import services, state, widgets

state.start_page()
st.title("Domain adaptation: gradient reversal")
st.markdown("""
Sometimes the task stays the same but the pictures change: digits written on paper, then the same
digits printed over photos. The label space and the feature space are shared; only the
distribution of the images moves. A network trained on the first kind often fails on the second.

**DANN** (Ganin & Lempitsky, 2015) trains on the labelled source *and* on target images whose labels
it never sees. Beside the digit classifier sits a second head that guesses which domain an image
came from. Between that head and the features sits a **gradient reversal layer**: on the way
forward it does nothing, on the way back it flips the sign of the gradient. So the domain head gets
better at telling the domains apart, while the features below it learn to make that impossible.
Features that cannot tell source from target, yet still tell the digits apart, work on both.
The reversed gradient's weight starts at 0 and grows towards 1 as training goes on
(λ(p) = 2/(1+e^(-10p)) − 1), because at first the domain head's advice is noise.

**The rule to check in your own run:** if the features stop telling the domains apart (the domain
classifier falls towards 0.5), target accuracy rises above the source-only network's, without a
single target label.
""")
st.markdown("""
We train the network three times on the same data: **source only** (the floor), **DANN**,
and **with the target's labels** (the ceiling, for reference: DANN never sees them). The network is
the paper's small CNN, or the model you chose on the Model page with its lower groups frozen and
one group trained under the two heads. The target here
is the bundled digits blended onto patches of photos, the way MNIST-M is made from MNIST; the target's
test images use other photos than its training images.
""")

spec = MODELS[state.plan().model]


def _controls_of(p) -> dict:
    on_backbone = p.option("network") == "backbone" and p.model == spec.name
    per_class = p.per_class if p.per_class in range(10, 141, 10) else dann.PAGE_PER_CLASS
    return {"dann_source": p.dataset, "dann_epochs": min(p.epochs, 30), "dann_per_class": per_class,
            "dann_network": "backbone" if on_backbone else "small_cnn",
            **({"dann_head_at": p.option("head_at")} if on_backbone else {})}


widgets.seed_controls("dann", {"dann_source": "digits", "dann_epochs": dann.PAGE_EPOCHS,
                               "dann_per_class": dann.PAGE_PER_CLASS, "dann_network": "small_cnn"}, _controls_of)
c = st.columns(4)
source = c[0].selectbox("Source (labelled)", ["digits", "mnist"], key="dann_source")
target = c[1].selectbox("Target (labels hidden)", ["digits_m"] if source == "digits" else ["mnist_m"],
                        key="dann_target")
epochs = c[2].slider("Epochs", 1, 30, key="dann_epochs")
per_class = c[3].slider("Images per class", 10, 140, step=10, key="dann_per_class")

# The network: the paper's own, or the model chosen on the Model page with its lower groups frozen.
n = st.columns([2, 2])
network = n[0].radio("Network", ["small_cnn", "backbone"], horizontal=True, key="dann_network",
                     format_func={"small_cnn": "The paper's small CNN",
                                  "backbone": f"Your model: {spec.title}"}.get)
backbone = head_at = None
if network == "backbone":
    names = list(spec.group_names)
    if st.session_state.get("dann_head_at") not in names:      # another model was chosen since
        st.session_state.dann_head_at = dann.default_head_at(spec.name)
    head_at = n[1].selectbox("Heads on group", names, key="dann_head_at",
                             help="The groups below it stay frozen (computed once for both domains); this group "
                                  "trains, and the digit and domain heads read its pooled output.")
    backbone = spec.name
try:
    plan = dann.make_plan(source, target, epochs=epochs, per_class=per_class, seed=state.plan().seed,
                          backbone=backbone, head_at=head_at,
                          image_size=max(dann.DEFAULT_SIZE, spec.min_input_size) if backbone else dann.DEFAULT_SIZE)
except TLCoreError as e:
    st.error(str(e))
    st.stop()

weight = plan.option("domain_weight")
st.plotly_chart(dann_figures.lambda_figure(weight, plan.epochs), key="dann-lambda-planned")
st.caption(f"What DANN's training applies: {weight:g} × λ(p), with p the share of its steps done (the learning "
           f"rate anneals alongside, {plan.lr:g} / (1 + 10p)^0.75). The other two arms apply 0: their domain "
           "head only measures.")
run_id = widgets.queue_button("Run the three trainings", plan, "dann_runs", type="primary", disabled=state.locked())


def draw(run) -> None:
    """The page's own part of the live view: the three arms' curves and their final scores."""
    rows = [r.values for r in run.results if r.schema == dann.EPOCH]
    if rows:
        st.plotly_chart(dann_figures.dann_curves(rows), key=f"dann-curves-{len(rows)}")
    finals = [r.values for r in run.results if r.schema == dann.FINAL]
    if finals:
        st.dataframe(dann_figures.final_table(finals), hide_index=True)


if run_id:
    widgets.live(run_id, draw, what="The run", stop="Stop")
    done = services.store().load(run_id, with_steps=False)
    finals = {r.values["arm"]: r.values for r in done.results if r.schema == dann.FINAL}
    emb = services.store().artifact(run_id, "embedding.pt") if not done.active else None
    if emb:
        st.subheader("What the features look like")
        st.plotly_chart(dann_figures.embedding_view(emb), key="dann-embedding")
        told = " ".join(f"{dann.ARM_TITLES[a]}: the domain classifier tells them apart "
                        f"{finals[a]['domain_acc']:.2f} of the time." for a in ("source_only", "dann") if a in finals)
        st.caption("Held-out source images (grey) and target images (orange), their features squashed to two "
                   f"dimensions (PCA). The closer to 0.5, the less the features tell the domains apart. {told}")
    if "source_only" in finals and "dann" in finals:
        st.info(dann_figures.lesson_text(finals)[1])
        rows = [r.values for r in done.results if r.schema == dann.EPOCH]
        if rows:
            st.plotly_chart(dann_figures.lambda_figure(done.plan.option("domain_weight"), done.plan.epochs, rows),
                            key="dann-lambda-applied")
        st.caption("The paper's own figures, for scale (MNIST → MNIST-M, 60,000 digits): source only 0.52, "
                   "DANN 0.77. Your run is far smaller; the sentence above is what it showed.")
else:
    st.caption("Press the button to train; the curves fill in live, one training after another.")
