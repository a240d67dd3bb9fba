import streamlit as st

from tlcore import plots
from tlcore.metrics import arithmetic_mean, f1_score
from ui import state

state.start_page()

st.title("Metrics lab")
st.markdown("""
Why does F1 use the **harmonic** mean of precision and recall rather than the ordinary average?
Because a classifier can cheat the average. Say it labels almost everything *positive*: it finds
nearly every positive (recall 0.95) but most of its alarms are false (precision 0.1). The
arithmetic mean still gives it 0.525, as if it were half-decent; the harmonic mean gives about
0.18, which is closer to the truth. The harmonic mean is pulled towards the *smaller* of the two.
""")
c1, c2 = st.columns(2)
p = c1.slider("Precision", 0.0, 1.0, 0.10, 0.01)
r = c2.slider("Recall", 0.0, 1.0, 0.95, 0.01)
m1, m2, m3 = st.columns(3)
m1.metric("Arithmetic mean (P+R)/2", f"{arithmetic_mean(p, r):.3f}")
m2.metric("F1 = 2PR/(P+R)", f"{f1_score(p, r):.3f}")
m3.metric("Gap", f"{arithmetic_mean(p, r) - f1_score(p, r):.3f}")
st.markdown(f"In words: the average says **{arithmetic_mean(p, r):.3f}**, F1 says **{f1_score(p, r):.2f}**.")
st.plotly_chart(plots.pr_heatmap(), key="pr-square")
st.caption("Along the diagonal (P = R) both means agree; near the edges, where one of them is small, "
           "F1 collapses while the arithmetic mean stays high.")

st.subheader("A worked example: the classifier that always says “positive”")
neg = st.slider("Negatives in the test set", 10, 990, 95, 5)
pos = st.slider("Positives in the test set", 1, 100, 5, 1)
tp, fp = pos, neg
prec, rec = tp / (tp + fp), 1.0
acc = pos / (pos + neg)
e = st.columns(4)
e[0].metric("Accuracy", f"{acc:.2f}")
e[1].metric("Precision", f"{prec:.2f}")
e[2].metric("Recall", f"{rec:.2f}")
e[3].metric("Arithmetic mean vs F1", f"{arithmetic_mean(prec, rec):.2f} vs {f1_score(prec, rec):.2f}")
st.caption(f"It finds all {pos} positives, so recall is perfect, but {neg} of its {pos + neg} alarms are false. "
           "The arithmetic mean never drops below 0.5 however useless the classifier is; F1 does.")
