import streamlit as st

from tlcore.errors import TLCoreError
from tlcore.labs import negative_transfer as nt
from ui import services, state, widgets

state.start_page()
st.title("Negative transfer: when a source hurts")
st.markdown("""
Transfer is not free. If the source task has little in common with yours, or looks similar for the
wrong reasons, the features it taught can be *worse* than learning from your data alone. Wang et al.
(2019) put a number on it: the **negative transfer gap** is the target error with the source minus
the target error without it. Above zero, the source hurt; below zero, it helped.

Here the same target data is learned with and without each source, several times with different
seeds, so one lucky run does not decide. With a source, a frozen EfficientNet-Lite0 gives the
features and a logistic regression learns the classes: as it ships (ImageNet), after we first
fine-tune it on random labels of photo patches (a **misleading** source: it was trained, but on
nonsense), or with random weights. Without a source: a small CNN from scratch, and an SVM on the raw
pixels. Move the slider: with few images a poor source can still beat nothing; with more, learning
from the target alone catches up, and the gap can change sign.
""")
widgets.seed_controls("negative_transfer", {"nt_per_class": 20, "nt_seeds": 3},
                      lambda p: {"nt_per_class": p.per_class, "nt_seeds": p.option("seeds", 3)}
                      if p.per_class in range(5, 101, 5) and p.option("seeds", 3) <= 5 else {})
c = st.columns(2)
per_class = c[0].slider("Images per class", 5, 100, step=5, key="nt_per_class")
seeds = c[1].slider("Seeds (runs per arm)", 1, 5, key="nt_seeds")
base = state.plan()
try:
    plan = nt.make_plan(base.dataset if base.dataset == "digits" else "digits", per_class=per_class, seeds=seeds,
                        seed=base.seed)
except TLCoreError as e:
    st.error(str(e))
    st.stop()
run_id = widgets.queue_button("Run the comparison", plan, "nt_runs", type="primary", disabled=state.locked())


@st.fragment(run_every=widgets.refresh_while_active(run_id))
def live(run_id: str) -> None:
    run = services.store().load(run_id, with_steps=False)
    widgets.progress(run)
    if run.status == "failed":
        st.error(f"The comparison failed: {run.message}")
    singles = [r.values for r in run.results if r.schema == nt.RUN]
    if singles:
        st.dataframe([{"arm": nt.TITLES[v["arm"]], "seed": v["seed"], "target accuracy": round(v["target_acc"], 3)}
                      for v in singles], hide_index=True)
    gaps = [r.values for r in run.results if r.schema == nt.GAP]
    if gaps:
        st.subheader("The gap, per source")
        st.dataframe([{"source": nt.TITLES[g["source"]], "accuracy (mean ± sd)": f"{g['acc_mean']:.3f} ± {g['acc_std']:.3f}",
                       "gap vs scratch": round(g["gap_vs_scratch"], 3), "gap vs pixel SVM": round(g["gap_vs_pixel_svm"], 3),
                       "sd of the gap": round(g["gap_std"], 3)} for g in gaps], hide_index=True)
        for g in gaps:
            word = "hurt" if g["gap_vs_scratch"] > 0 else "helped"
            st.markdown(f"- **{nt.TITLES[g['source']]}** {word}: its target error is "
                        f"{abs(g['gap_vs_scratch']) * 100:.1f} points {'higher' if word == 'hurt' else 'lower'} than the "
                        f"small CNN's from scratch (gap {g['gap_vs_scratch']:+.3f}, {g['seeds']} seeds, spread "
                        f"± {g['gap_std']:.3f}); against the pixel SVM the gap is {g['gap_vs_pixel_svm']:+.3f}.")


if run_id:
    live(run_id)
else:
    st.caption("Press the button: each seed trains five arms, one after another.")
