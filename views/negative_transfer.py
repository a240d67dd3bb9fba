import streamlit as st

from tlcore.errors import TLCoreError
from tlcore.labs import negative_transfer as nt
from ui import state, widgets

D = nt.DEFAULTS
state.start_page()
st.title("Negative transfer: when a source hurts")
st.markdown(f"""
**The rule (lecture notes):** if the source and your task have little in common, or look alike for
the wrong reasons, transfer can fail: what the source taught makes learning your task *worse* than
learning from your data alone. That is **negative transfer**. Wang et al. (2019) measure it as the
**gap**: target error with the source minus target error without it. Above zero the source hurt;
below zero it helped.

Here the same target (scikit-learn's 8×8 digits, {D['per_class']} images per class by default) is learned
with and without each source, once per seed (each seed draws its own target sample). Half of the
digits are set aside for the sources, blended onto photos: the same ten classes in another look; the
target only ever sees the other half. With a source, a network gives features and a logistic
regression learns the digits from them. The sources: a small CNN **taught the digits** on those photos
(a **related** source); the **same CNN on the same images, taught which photo is behind each digit**
(a **misleading** source: it learns to look at the background, not the shape); the same CNN
**untrained** (the architecture without any source); and EfficientNet-Lite0 with its **ImageNet**
weights, fed at {D['image_size']} px and read at its middle layer group ({nt.CUT}: the Where-to-transfer
probe finds it suits digits). Without a source: a small CNN trained from scratch on the target, and a
linear SVM on the raw pixels. A source's verdict is against the **stronger** of the two, seed by seed,
and counts only when the mean gap is larger than its spread over the seeds (largest minus smallest).
""")
widgets.seed_controls("negative_transfer", {"nt_per_class": D["per_class"], "nt_seeds": D["seeds"]},
                      lambda p: {"nt_per_class": p.per_class, "nt_seeds": p.option("seeds", D["seeds"])}
                      if p.per_class in range(5, nt.MAX_PER_CLASS + 1, 5) and p.option("seeds", D["seeds"]) <= 5 else {})
c = st.columns(2)
per_class = c[0].slider("Images per class", 5, nt.MAX_PER_CLASS, step=5, key="nt_per_class")
seeds = c[1].slider("Seeds (runs per arm)", 1, 5, key="nt_seeds")
base = state.plan()
try:
    plan = nt.make_plan(base.dataset if base.dataset == "digits" else "digits", per_class=per_class, seeds=seeds,
                        seed=base.seed)
except TLCoreError as e:
    st.error(str(e))
    st.stop()
run_id = widgets.queue_button("Run the comparison", plan, "nt_runs", type="primary", disabled=state.locked())


def _size_sentence() -> str:
    def word(gap: float, spread: float) -> str:
        return "within spread" if abs(gap) <= spread else "helped" if gap < 0 else "hurt"
    gaps = ", ".join(f"{px} px {word(g, s)} ({g:+.3f}, spread {s:.3f})" for px, (g, s) in sorted(nt.SIZE_GAPS.items()))
    return (f"The image size moves ImageNet's sign too (measured once, not in your run: {nt.SIZE_GAPS_AT}, "
            f"ImageNet's {nt.CUT} against the pixel SVM): {gaps}. The digits are 8×8 images "
            f"blown up; Lite0 learned from 224 px photos, and at 32 px its {nt.CUT} map is only 2×2.")


def draw(run) -> None:
    """The page's own part of the live view: per-seed accuracies, the gaps, what the run showed."""
    accs = nt.per_seed(run)
    if accs:
        st.dataframe([{"arm": nt.TITLES.get(a, a), **{f"seed {s}": round(v, 3) for s, v in sorted(accs[a].items())}}
                      for a in nt.ARMS if a in accs], hide_index=True)
    gaps = [r.values for r in run.results if r.schema == nt.GAP]
    if gaps:
        st.subheader("The gap, per source")
        st.dataframe([{"source": nt.TITLES[g["source"]], "accuracy (mean ± sd)": f"{g['acc_mean']:.3f} ± {g['acc_std']:.3f}",
                       "gap vs scratch": round(g["gap_vs_scratch"], 3), "gap vs pixel SVM": round(g["gap_vs_pixel_svm"], 3),
                       "sd of the gap vs scratch": round(g["gap_std"], 3)} for g in gaps], hide_index=True)
    baseline, rows = nt.verdicts(accs)
    if run.status == "finished" and rows:
        st.subheader("What your run showed")
        n = len(next(iter(rows))["gaps"])
        st.markdown(f"Against the stronger arm without a source, **{nt.TITLES[baseline]}** "
                    f"({n} seed{'s' if n != 1 else ''}):")
        for r in rows:
            what = {"helped": "helped", "hurt": "hurt",
                    "within spread": "neither helped nor hurt beyond the spread over seeds"}[r["verdict"]]
            st.markdown(f"- **{nt.TITLES[r['source']]}** {what}: mean gap {r['gap']:+.3f}, spread {r['spread']:.3f} "
                        f"(per seed: {', '.join(f'{g:+.3f}' for g in r['gaps'].values())}).")
        if n == 1:
            st.caption("With one seed there is no spread: every difference counts. Use 3 seeds or more.")
        st.markdown("**Where the sign flips with the amount of target data** (your run, every source against "
                    "the pixel SVM, the same seeds):")
        for source, flips in nt.sweep(run).items():
            st.markdown("- " + nt.flip_sentence(source, flips))
        st.markdown(_size_sentence())
    elif gaps and run.status == "finished":   # a run recorded before the verdicts: its gaps against the scratch CNN
        for g in gaps:
            word = "hurt" if g["gap_vs_scratch"] > 0 else "helped"
            st.markdown(f"- **{nt.TITLES[g['source']]}** {word} against the small CNN from scratch "
                        f"(gap {g['gap_vs_scratch']:+.3f}, {g['seeds']} seeds, sd {g['gap_std']:.3f}); against the "
                        f"pixel SVM the gap is {g['gap_vs_pixel_svm']:+.3f}.")


if run_id:
    widgets.live(run_id, draw, what="The comparison", stop="Stop")
else:
    st.caption(f"Press the button: each seed runs {len(nt.ARMS)} arms, one after another "
               f"({len(nt.ARMS)} × seeds in all).")
