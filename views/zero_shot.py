import pandas as pd
import streamlit as st

from tlcore.data.registry import DATASETS
from tlcore.errors import TLCoreError
from tlcore.labs import zero_shot as zs
from tlcore.labs import zero_shot_figures as figs
from ui import state, widgets

state.start_page()
st.title("Zero-shot learning: classes never seen")
st.markdown("""
**The idea (lecture notes).** Zero-shot learning is transfer at its most extreme: a task with *no*
labelled examples at all. Can you recognise an object you have never seen? People can, from a
description: "a zebra is a horse with black and white stripes".

**How a network does it here** (direct attribute prediction, Lampert et al. 2009). Every class is
described by a row of yes/no **attributes** in the table below. A few classes are held out as
**unseen**: none of their images is ever used for training. For each attribute, a classifier learns
from the images of the *seen* classes (their rows say which have it), on the pretrained network's CNN
codes. An image of an unseen class then gets the unseen class whose description best matches the
attributes predicted for it.

**Edit the table** and see what happens. The run also scores a **scrambled** copy of your table (each
class gets another class's row), so you see how much the descriptions themselves carry.
""")

def _available() -> list[str]:
    from tlcore.paths import data_dir
    return [n for n in zs.TABLES if DATASETS[n].available_offline(data_dir())]


def _controls_of(plan) -> dict:
    if plan.dataset not in zs.TABLES:
        return {}
    o = zs.options(plan)
    classes = DATASETS[plan.dataset].classes
    return {"zs_dataset": plan.dataset, f"zs_unseen:{plan.dataset}": [classes[u] for u in o["unseen"]],
            f"zs_table:{plan.dataset}": {"attributes": list(o["attributes"]), "table": [list(r) for r in o["table"]]}}


names = _available()
widgets.seed_controls(zs.KIND, {"zs_dataset": "digits"}, _controls_of)
if st.session_state.get("zs_dataset") not in names:
    st.session_state.zs_dataset = "digits"
dataset = st.radio("Classes", names, key="zs_dataset", horizontal=True,
                   format_func=lambda n: DATASETS[n].title)
if len(names) < len(zs.TABLES):
    st.caption("Fashion-MNIST has a table too: it appears here once it is on disk (Data page).")
classes = list(DATASETS[dataset].classes)
defaults = zs.default_options(dataset)
table_key, unseen_key, version_key = f"zs_table:{dataset}", f"zs_unseen:{dataset}", f"zs_version:{dataset}"
st.session_state.setdefault(table_key, {"attributes": defaults["attributes"], "table": defaults["table"]})
st.session_state.setdefault(unseen_key, [classes[u] for u in defaults["unseen"]])
st.session_state.setdefault(version_key, 0)

unseen = st.multiselect("Unseen classes (never trained on)", classes, key=unseen_key,
                        help="At least two; the rest are the seen classes the attribute classifiers learn from.")
saved = st.session_state[table_key]
frame = pd.DataFrame([[bool(v) for v in row] for row in saved["table"]], index=classes, columns=saved["attributes"])
frame.index.name = "class"
st.markdown("**The attribute table** (tick what each class has; unseen classes are described here too, "
            "which is all the model ever learns about them):")
edited = st.data_editor(frame, key=f"zs_editor:{dataset}:{st.session_state[version_key]}", width="stretch",
                        disabled=state.locked())


def _save(attributes: list[str], table: list[list[int]]) -> None:
    st.session_state[table_key] = {"attributes": attributes, "table": table}
    st.session_state[version_key] += 1   # a new editor, drawn from the saved table
    st.rerun()


current = [[int(bool(v)) for v in row] for row in edited.to_numpy().tolist()]
a, b, c = st.columns([2, 2, 1])
if st.session_state.pop("zs_added", False):
    st.session_state.zs_new = ""   # the name went into the table: an empty box for the next one
new_name = a.text_input("New attribute", key="zs_new", placeholder="e.g. thick stroke", max_chars=zs.MAX_NAME)
taken = new_name.strip().lower() in {n.lower() for n in saved["attributes"]}
if taken:
    a.caption("The table already has that attribute.")
if a.button("Add the attribute", disabled=not new_name.strip() or taken or state.locked()):
    st.session_state.zs_added = True
    _save(saved["attributes"] + [new_name.strip()], [row + [0] for row in current])
drop = b.multiselect("Remove attributes", saved["attributes"], key=f"zs_drop:{dataset}")
if b.button("Remove them", disabled=not drop or state.locked()):
    keep = [i for i, n in enumerate(saved["attributes"]) if n not in drop]
    _save([saved["attributes"][i] for i in keep], [[row[i] for i in keep] for row in current])
if c.button("Reset the table", disabled=state.locked()):
    _save(defaults["attributes"], defaults["table"])

try:
    plan = zs.lab_plan(dataset=dataset, seed=state.plan().seed, attributes=list(saved["attributes"]), table=current,
                       unseen=[classes.index(u) for u in unseen])
except TLCoreError as e:
    st.error(str(e))
    st.stop()
run_id = widgets.queue_button("Recognise the unseen classes", plan, "zs_runs", type="primary",
                              disabled=state.locked())


def draw(run) -> None:
    """The page's own part of the live view: both tables' accuracy, each attribute, what the run showed."""
    if not zs.outcome(run.results):
        return
    left, right = st.columns(2)
    left.plotly_chart(figs.unseen_accuracy(run.results), key=f"zs-acc-{run.id}")
    right.plotly_chart(figs.attribute_accuracy(run.results), key=f"zs-attr-{run.id}")
    if run.status == "finished":
        st.subheader("What your run showed")
        for line in zs.findings(run.results):
            st.markdown(f"- {line}")


if run_id:
    widgets.live(run_id, draw, what="The zero-shot run", stop="Stop")
else:
    st.caption("Press the button: the attribute classifiers train in seconds once the features are cached.")
