import streamlit as st

from tlcore.errors import TLCoreError
from tlcore.labs import forgetting as fg
from tlcore.labs import forgetting_figures as figs
from tlcore.labs import old_skill
from ui import state, widgets

D = fg.DEFAULTS
state.start_page()
st.title("Catastrophic forgetting: what fine-tuning costs")
st.markdown(f"""
**The rule (lecture notes):** fine-tune too aggressively and the network forgets what pretraining
taught it (*catastrophic forgetting*); fine-tune too cautiously and it learns the new task slowly and
overfits. Gradual unfreezing and lower rates for the lower layers are the usual remedies.

**Try it.** The same pretrained EfficientNet-Lite0 gets a new head and learns the digits
({D['per_class']} images per class, {D['image_size']} px) in five ways, on the same batches. After every
epoch we score the digits, and we ask the network what it still knows: on
{len(old_skill.PHOTOS) * old_skill.CROPS_PER_PHOTO} crops of the photos that ship with scikit-image and
scikit-learn, read through its *original* ImageNet classifier, on how many does it still give the
answer it gave before fine-tuning? Up and to the right on the first chart is learning the digits
without forgetting.

**BatchNorm** decides much of it. Its layers keep running statistics of what they have seen; "frozen"
keeps ImageNet's, "updated" lets the layers that train follow the digits' (PyTorch's default). The
last arm changes no weight of the network at all: only the head learns, while every BatchNorm layer
follows the digits' statistics.
""")
widgets.seed_controls("forgetting", {"fg_bn": D["bn_stats"], "fg_epochs": D["epochs"], "fg_measure": D["measure"]},
                      lambda p: {"fg_bn": p.option("bn_stats", D["bn_stats"]), "fg_epochs": p.epochs,
                                 "fg_measure": p.option("measure", D["measure"])} if p.epochs <= 8 else {})
measure = st.radio("What it knew before", fg.MEASURES, horizontal=True, key="fg_measure",
                   format_func={"imagenet": "its ImageNet answers on photos",
                                "sequential": f"digits, learned first in the run (then {fg.SECOND})"}.get,
                   help="Sequential: the network first learns the digits (every group, discriminative rates, "
                        f"{fg.FIRST_EPOCHS} epochs), then each arm learns the digits on photos from there, and the "
                        "skill kept is its accuracy on the first task's validation images, through the first task's head.")
c = st.columns(2)
bn = c[0].radio("BatchNorm statistics while fine-tuning", fg.BN_STATS, horizontal=True, key="fg_bn",
                format_func={"frozen": "frozen (ImageNet's)", "updated": "updated on the digits"}.get)
epochs = c[1].slider("Epochs per arm", 1, 8, key="fg_epochs")
try:
    plan = fg.make_plan(bn_stats=bn, epochs=int(epochs), seed=state.plan().seed, measure=measure)
except TLCoreError as e:
    st.error(str(e))
    st.stop()
run_id = widgets.queue_button("Fine-tune five ways", plan, "fg_runs", type="primary", disabled=state.locked())


def draw(run) -> None:
    curves = fg.curves(run)
    if not curves:
        return
    sequential = run.plan.option("measure", D["measure"]) == "sequential"
    label = "first-task accuracy" if sequential else "ImageNet answers kept"
    start = run.metrics.get("first_task_acc", 1.0) if sequential else 1.0
    if sequential:
        st.caption(f"After the first task (digits) the network scored {start:.3f} on it: every arm starts there.")
    left, right = st.columns(2)
    left.plotly_chart(figs.trade_off(curves, label), key=f"fg-trade-{run.id}")
    right.plotly_chart(figs.kept_by_epoch(curves, label, start), key=f"fg-kept-{run.id}")
    st.dataframe([{"arm": fg.TITLES[a], **{f"epoch {r['epoch'] + 1}": f"{r['target_acc']:.3f} / {r['skill_kept']:.0%}"
                                            for r in rows}} for a, rows in curves.items()], hide_index=True)
    st.caption(f"Each cell: target accuracy / {label}.")
    if run.status == "finished":
        st.subheader("What your run showed")
        for line in fg.findings(fg.finals(run), run.plan.option("measure", D["measure"])):
            st.markdown(f"- {line}")


if run_id:
    widgets.live(run_id, draw, what="The comparison", stop="Stop")
else:
    st.caption(f"Press the button: {len(fg.ARMS)} arms of {epochs} epoch{'s' if epochs != 1 else ''} each, one after "
               "another.")
